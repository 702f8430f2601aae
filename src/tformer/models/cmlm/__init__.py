"""The conditional masked language model (Mask-Predict, Ghazvininejad et al., 2019): a non-autoregressive
encoder-decoder whose decoder sees the whole, partly masked target."""

from tformer.models.cmlm.config import CMLMConfig
from tformer.models.cmlm.model import CMLM

__all__ = ["CMLM", "CMLMConfig"]
