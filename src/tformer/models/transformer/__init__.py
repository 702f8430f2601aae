"""The paper's encoder-decoder (§3): its configuration with the presets of Table 3, and the model."""

from tformer.models.transformer.config import TransformerConfig
from tformer.models.transformer.model import AttentionMaps, Transformer
from tformer.models.transformer.stacks import Decoder, Encoder

__all__ = ["AttentionMaps", "Decoder", "Encoder", "Transformer", "TransformerConfig"]
