"""The Transformer's parts, one file per concept (read them in this order):

masks -> attention -> embedding -> feedforward -> layers -> cache -> transformer
"""

from tformer.model.attention import MultiHeadAttention, attention_fast, attention_reference
from tformer.model.cache import DecoderCache, KVCache, StaticKV
from tformer.model.embedding import (
    Embeddings,
    LearnedPositionalEmbedding,
    SinusoidalPositionalEncoding,
    TokenEmbedding,
    sinusoidal_table,
)
from tformer.model.feedforward import PositionwiseFeedForward
from tformer.model.layers import DecoderLayer, EncoderLayer, Residual
from tformer.model.masks import causal_mask, combine, padding_mask
from tformer.model.transformer import AttentionMaps, Decoder, Encoder, Transformer

__all__ = [
    "AttentionMaps", "Decoder", "DecoderCache", "DecoderLayer", "Embeddings", "Encoder", "EncoderLayer", "KVCache",
    "LearnedPositionalEmbedding", "MultiHeadAttention", "PositionwiseFeedForward", "Residual",
    "SinusoidalPositionalEncoding", "StaticKV", "TokenEmbedding", "Transformer", "attention_fast",
    "attention_reference", "causal_mask", "combine", "padding_mask", "sinusoidal_table",
]
