"""The paper's encoder-decoder (§3): its configuration with the presets of Table 3, and the model."""

from tformer.models.transformer.config import TransformerConfig
from tformer.models.transformer.model import AttentionMaps, Decoder, Encoder, Transformer

__all__ = ["AttentionMaps", "Decoder", "Encoder", "Transformer", "TransformerConfig"]
