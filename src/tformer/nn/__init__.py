"""The Transformer's parts, one file per concept; each takes its parts built (read them in this order):

masks -> linear -> attention (over attention_algorithms, a registry) -> positional (a registry) -> embedding ->
feedforward -> norms (a registry) -> layers -> cache; and copy (the pointer-generator output), dropout,
gradient_checkpointing, quantize, modes.

The models that assemble them live in :mod:`tformer.models` (the paper's in :mod:`tformer.models.transformer`,
whose ``builders`` choose the parts from a config).
"""

from tformer.nn.attention import MultiHeadAttention
from tformer.nn.attention_algorithms import (
    ATTENTION_ALGORITHMS,
    AttentionAlgorithm,
    attention_fast,
    attention_reference,
    register_attention,
)
from tformer.nn.cache import DecoderCache, KVCache, StaticKV
from tformer.nn.embedding import Embeddings, TokenEmbedding
from tformer.nn.feedforward import PositionwiseFeedForward
from tformer.nn.layers import DecoderLayer, EncoderLayer, Residual
from tformer.nn.linear import Linear
from tformer.nn.masks import causal_mask, combine, padding_mask
from tformer.nn.norms import NORMS, build_norm
from tformer.nn.positional import (
    POSITIONAL_SCHEMES,
    LearnedPositionalEmbedding,
    RelativePositionBias,
    SinusoidalPositionalEncoding,
    build_positions,
    register_positional,
    sinusoidal_table,
)
from tformer.nn.relative_attention import RelativeMultiHeadAttention

__all__ = [
    "ATTENTION_ALGORITHMS", "AttentionAlgorithm", "DecoderCache", "DecoderLayer", "Embeddings", "EncoderLayer",
    "KVCache", "LearnedPositionalEmbedding", "Linear", "MultiHeadAttention", "NORMS", "POSITIONAL_SCHEMES",
    "PositionwiseFeedForward", "RelativeMultiHeadAttention", "RelativePositionBias", "Residual",
    "SinusoidalPositionalEncoding", "StaticKV", "TokenEmbedding", "attention_fast", "attention_reference",
    "build_norm", "build_positions", "causal_mask", "combine", "padding_mask", "register_attention",
    "register_positional", "sinusoidal_table",
]
