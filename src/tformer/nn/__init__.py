"""The Transformer's parts, one file per concept (read them in this order):

masks -> attention -> embedding -> feedforward -> layers -> cache

The models that assemble them live in :mod:`tformer.models` (the paper's in :mod:`tformer.models.transformer`).
"""

from tformer.nn.attention import MultiHeadAttention, attention_fast, attention_reference
from tformer.nn.cache import DecoderCache, KVCache, StaticKV
from tformer.nn.embedding import (
    Embeddings,
    LearnedPositionalEmbedding,
    SinusoidalPositionalEncoding,
    TokenEmbedding,
    sinusoidal_table,
)
from tformer.nn.feedforward import PositionwiseFeedForward
from tformer.nn.layers import DecoderLayer, EncoderLayer, Residual
from tformer.nn.masks import causal_mask, combine, padding_mask

__all__ = [
    "DecoderCache", "DecoderLayer", "Embeddings", "EncoderLayer", "KVCache",
    "LearnedPositionalEmbedding", "MultiHeadAttention", "PositionwiseFeedForward", "Residual",
    "SinusoidalPositionalEncoding", "StaticKV", "TokenEmbedding", "attention_fast",
    "attention_reference", "causal_mask", "combine", "padding_mask", "sinusoidal_table",
]
