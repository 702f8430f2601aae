"""The Swin Transformer (Liu et al., 2021): its configuration (``config``), windows (``windows``), parts
(``blocks``), their assembly (``builders``) and models (``model``)."""

from tformer.models.swin.config import SwinConfig
from tformer.models.swin.model import PatchEmbedding, SwinClassifier, SwinOutput, SwinTransformer

__all__ = ["PatchEmbedding", "SwinClassifier", "SwinConfig", "SwinOutput", "SwinTransformer"]
