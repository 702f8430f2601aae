"""Helpers shared by the attention algorithms: masks and biases sliced by blocks, and a softmax that gives
empty rows zero weights.

Conventions, as in :mod:`tformer.nn.masks`: masks are boolean, True = may attend, broadcastable to
(B, H, Tq, Tk). A query that may attend to nothing gets output 0, as PyTorch's SDPA gives and the model uses
(the written-out :func:`~tformer.nn.attention_algorithms.reference.attention_reference` gives NaN there).

Shape legend: B batch, H heads, Tq queries, Tk keys.
"""

from __future__ import annotations

from torch import Tensor

from tformer.config import ConfigError


def as_4d(t: Tensor | None) -> Tensor | None:
    """A mask or bias broadcastable to (B, H, Tq, Tk) with exactly four dims (leading 1s added)."""
    return None if t is None else t.reshape((1,) * (4 - t.dim()) + tuple(t.shape))


def query_rows(t: Tensor | None, start: int, end: int) -> Tensor | None:
    """Query rows start:end of a 4-d mask or bias; a broadcast (size 1) row dim stays as it is."""
    return t if t is None or t.shape[-2] == 1 else t[..., start:end, :]


def key_columns(t: Tensor | None, start: int, end: int) -> Tensor | None:
    """Key columns start:end of a 4-d mask or bias; a broadcast (size 1) column dim stays as it is."""
    return t if t is None or t.shape[-1] == 1 else t[..., start:end]


def key_padding(mask: Tensor | None, kind: str) -> Tensor | None:
    """A key-padding mask (B|1, H|1, 1, Tk|1) as (B|1, H|1, Tk|1); any other shape is an error."""
    mask = as_4d(mask)
    if mask is not None and mask.shape[-2] != 1:
        raise ConfigError(f"{kind} attention takes key-padding masks (B, 1, 1, Tk) only, got {tuple(mask.shape)}")
    return None if mask is None else mask[..., 0, :]


def safe_softmax(s: Tensor, allowed: Tensor) -> Tensor:
    """softmax over the last dim of ``s`` where ``allowed``; rows with nothing allowed get weights 0."""
    weights = s.masked_fill(~allowed, float("-inf")).softmax(dim=-1)  # NaN in empty rows...
    return weights.masked_fill(~allowed.any(dim=-1, keepdim=True), 0.0)  # ...replaced (their gradient stops at -inf)


def refuse_score_bias(score_bias: Tensor | None, kind: str) -> None:
    """A one-line error when an algorithm without a score bias is given one (relative positions)."""
    if score_bias is not None:
        raise ConfigError(f"relative positions need full or chunked attention, got {kind!r}")
