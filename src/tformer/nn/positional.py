"""How a stack knows the order of its tokens: positional schemes, found by name (``TransformerConfig.positional``).

* "sinusoidal" (§3.5): fixed PE(pos) added to the token embeddings,

    PE(pos, 2i)   = sin(pos / 10000^(2i / d_model))
    PE(pos, 2i+1) = cos(pos / 10000^(2i / d_model))                                   (§3.5)

* "learned" (Table 3, row E): a learned vector per position added to the token embeddings;
* "relative" (T5, Raffel et al., 2020; Shaw et al., 2018): no vector is added; a learned scalar per head and per
  bucket of the distance key - query is added to the self-attention scores of every layer of a stack:

    scores = Q Kᵀ + b[bucket(j - i)]         (B, H, Tq, Tk), before the mask and the softmax

A scheme builds, for one stack, :class:`StackPositions`: the absolute part (for
:class:`~tformer.nn.embedding.Embeddings`) and the score bias (for the stack's layers), either of them None.
Adding a scheme: a function ``PositionSpec -> StackPositions`` decorated with :func:`register_positional`, and
the name in the configs' allowed values.

Shape legend: T length, D d_model, H heads, Tq/Tk query/key length, NB buckets.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from tformer.registry import Registry


def sinusoidal_table(max_len: int, d_model: int, layout: str = "interleaved") -> Tensor:
    """The §3.5 table, (max_len, d_model).

    Args:
        layout: "interleaved" puts sin on even and cos on odd dimensions, as the paper writes it;
            "halves" puts all sines first and all cosines second (Marian, fairseq): the same
            frequencies in another order.
    """
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]  # (T, 1)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)  # (D/2,) the values 2i
    angle = pos / torch.pow(10000.0, two_i / d_model)  # (T, D/2)
    table = torch.empty(max_len, d_model, dtype=torch.float64)
    if layout == "interleaved":
        table[:, 0::2], table[:, 1::2] = torch.sin(angle), torch.cos(angle)
    elif layout == "halves":
        table[:, : d_model // 2], table[:, d_model // 2 :] = torch.sin(angle), torch.cos(angle)
    else:
        raise ValueError(f"unknown sinusoidal layout {layout!r}")
    return table.float()


class SinusoidalPositionalEncoding(nn.Module):
    """Fixed sinusoids (§3.5): no parameters, any position below ``max_len``."""

    def __init__(self, max_len: int, d_model: int, layout: str = "interleaved") -> None:
        super().__init__()
        self.register_buffer("table", sinusoidal_table(max_len, d_model, layout), persistent=False)

    def forward(self, length: int, offset: int = 0) -> Tensor:
        """Encodings of positions offset .. offset+length-1, (length, D)."""
        return self.table[offset : offset + length]


class LearnedPositionalEmbedding(nn.Module):
    """Learned position embeddings (the paper's alternative in Table 3, row E)."""

    def __init__(self, max_len: int, d_model: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(max_len, d_model))
        nn.init.normal_(self.weight, std=d_model**-0.5)

    def forward(self, length: int, offset: int = 0) -> Tensor:
        return self.weight[offset : offset + length]  # (length, D)


def relative_position_bucket(
    relative_position: Tensor, *, bidirectional: bool, num_buckets: int, max_distance: int
) -> Tensor:
    """The bucket of each distance ``relative_position`` = key position - query position (int64, any shape).

    Half of the buckets (per direction, when ``bidirectional``) hold the exact distances 0, 1, ...;
    the other half cover larger distances in logarithmically growing bins up to ``max_distance``,
    beyond which all distances share the last bucket. Without ``bidirectional`` (causal self-attention)
    only keys at or before the query are told apart; later keys fall in bucket 0 (they are masked anyway).

    Returns:
        int64 buckets in [0, num_buckets), same shape.
    """
    buckets = torch.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets += (relative_position > 0).long() * num_buckets  # keys after the query: the upper half
        distance = relative_position.abs()
    else:
        distance = (-relative_position).clamp(min=0)  # how far back the key lies
    max_exact = num_buckets // 2
    log_ratio = torch.log(distance.float().clamp(min=1) / max_exact) / math.log(max_distance / max_exact)
    if_large = (max_exact + (log_ratio * (num_buckets - max_exact)).long()).clamp(max=num_buckets - 1)
    return buckets + torch.where(distance < max_exact, distance, if_large)


class RelativePositionBias(nn.Module):
    """A learned bias per head and relative-distance bucket (T5), shared by every layer of one stack.

    Its ``weight`` (NB, H) is Hugging Face T5's ``relative_attention_bias`` of the stack's first layer.
    """

    def __init__(self, num_buckets: int, max_distance: int, num_heads: int, *, bidirectional: bool,
                 std: float = 1.0) -> None:
        super().__init__()
        self.num_buckets, self.max_distance, self.bidirectional = num_buckets, max_distance, bidirectional
        self.weight = nn.Parameter(torch.empty(num_buckets, num_heads))
        nn.init.normal_(self.weight, std=std)

    def forward(self, t_q: int, t_k: int, offset: int = 0) -> Tensor:
        """The bias for queries at positions offset .. offset+t_q-1 and keys at 0 .. t_k-1, (1, H, Tq, Tk)."""
        device = self.weight.device
        query = torch.arange(offset, offset + t_q, device=device)[:, None]  # (Tq, 1)
        key = torch.arange(t_k, device=device)[None, :]  # (1, Tk)
        bucket = relative_position_bucket(key - query, bidirectional=self.bidirectional,
                                          num_buckets=self.num_buckets, max_distance=self.max_distance)  # (Tq, Tk)
        return nn.functional.embedding(bucket, self.weight).permute(2, 0, 1)[None]  # (Tq, Tk, H) -> (1, H, Tq, Tk)


# ---- the registry of schemes -------------------------------------------------------------------------
@dataclass(frozen=True)
class PositionSpec:
    """What a positional scheme may read to build one stack's parts.

    Attributes:
        max_len: the most positions; d_model: D; num_heads: H.
        sinusoidal_layout: "interleaved" (the paper) or "halves" (Marian, fairseq).
        relative_buckets, relative_max_distance: the relative bias's buckets and the distance they reach.
        bidirectional: the stack's self-attention sees both directions (an encoder) or only the past (a decoder).
        relative_std: std of the relative bias's initial values.
    """

    max_len: int
    d_model: int
    num_heads: int
    sinusoidal_layout: str = "interleaved"
    relative_buckets: int = 32
    relative_max_distance: int = 128
    bidirectional: bool = True
    relative_std: float = 1.0


class StackPositions(NamedTuple):
    """One stack's positional parts: ``absolute`` (positions -> (T, D), added to the token embeddings) and
    ``score_bias`` (a :class:`RelativePositionBias`, added to the self-attention scores); None where unused."""

    absolute: nn.Module | None
    score_bias: RelativePositionBias | None


POSITIONAL_SCHEMES: Registry[Callable[[PositionSpec], StackPositions]] = Registry("positional")


def register_positional(name: str) -> Callable:
    """Function decorator: make ``fn(spec) -> StackPositions`` the scheme ``name``."""
    return POSITIONAL_SCHEMES.decorator(name)


def build_positions(name: str, spec: PositionSpec) -> StackPositions:
    """The parts of scheme ``name`` for one stack."""
    return POSITIONAL_SCHEMES.lookup(name)(spec)


@register_positional("sinusoidal")
def sinusoidal(spec: PositionSpec) -> StackPositions:
    """Fixed sinusoids (§3.5)."""
    return StackPositions(SinusoidalPositionalEncoding(spec.max_len, spec.d_model, spec.sinusoidal_layout), None)


@register_positional("learned")
def learned(spec: PositionSpec) -> StackPositions:
    """Learned position embeddings (Table 3, row E)."""
    return StackPositions(LearnedPositionalEmbedding(spec.max_len, spec.d_model), None)


@register_positional("relative")
def relative(spec: PositionSpec) -> StackPositions:
    """A relative position bias per stack (T5): both directions in an encoder, only the past in a decoder."""
    bias = RelativePositionBias(spec.relative_buckets, spec.relative_max_distance, spec.num_heads,
                                bidirectional=spec.bidirectional, std=spec.relative_std)
    return StackPositions(None, bias)
