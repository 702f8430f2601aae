"""The Transformer's parts, one file per concept; each takes its parts built (read them in this order):

masks -> linear -> attention (over attention_algorithms, a registry) -> positional (a registry) -> embedding ->
feedforward -> norms (a registry) -> layers -> cache; cross_attention (a registry of encoder-decoder attentions:
the paper's, location_attention and monotonic_attention, over aligned_attention); and copy (the pointer-generator
output), dropout, gradient_checkpointing, quantize, modes.

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
from tformer.nn.cache import AlignedKV, DecoderCache, KVCache, StaticKV
from tformer.nn.cross_attention import CROSS_ATTENTIONS, build_cross_attention, register_cross_attention
from tformer.nn.embedding import Embeddings, TokenEmbedding
from tformer.nn.feedforward import PositionwiseFeedForward
from tformer.nn.layers import DecoderLayer, EncoderLayer, Residual
from tformer.nn.linear import Linear
from tformer.nn.location_attention import LocationAwareAttention
from tformer.nn.masks import causal_mask, combine, padding_mask
from tformer.nn.monotonic_attention import MonotonicAttention
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
    "ATTENTION_ALGORITHMS", "AlignedKV", "AttentionAlgorithm", "CROSS_ATTENTIONS", "DecoderCache", "DecoderLayer",
    "Embeddings", "EncoderLayer", "KVCache", "LearnedPositionalEmbedding", "Linear", "LocationAwareAttention",
    "MonotonicAttention", "MultiHeadAttention", "NORMS", "POSITIONAL_SCHEMES", "PositionwiseFeedForward",
    "RelativeMultiHeadAttention", "RelativePositionBias", "Residual", "SinusoidalPositionalEncoding", "StaticKV",
    "TokenEmbedding", "attention_fast", "attention_reference", "build_cross_attention", "build_norm",
    "build_positions", "causal_mask", "combine", "padding_mask", "register_attention", "register_cross_attention",
    "register_positional", "sinusoidal_table",
]
