"""Eq. 1 (§3.2.1) written out as in the paper, the oracle of every other algorithm:

    Attention(Q, K, V) = softmax(Q Kᵀ / sqrt(d_k)) V                                  (Eq. 1)

It forms the (Tq, Tk) weights, so it is also the path that returns them (``need_weights``) for the algorithms
that compute the same weights another way (full, chunked, sliding). As kind "reference" it is the whole
model's attention: slow, exact, every option.

Two options serve T5 (Raffel et al., 2020): ``score_bias``, an additive float (1, H, Tq, Tk) added to the
scores before the mask (the relative position bias), and ``scale``, the factor of Q Kᵀ (default 1 / sqrt(d_k);
T5 uses 1).

Shape legend: B batch, H heads, Tq queries, Tk keys, Dh = d_k = d_v.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor

from tformer.nn.attention_algorithms.registry import AttentionAlgorithm, register_attention
from tformer.nn.masks import causal_mask, combine


def attention_reference(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, *, causal: bool = False,
    dropout_p: float = 0.0, score_bias: Tensor | None = None, scale: float | None = None,
) -> tuple[Tensor, Tensor]:
    """Eq. 1 written out. q (B, H, Tq, Dh), k/v (B, H, Tk, Dh), mask broadcasts to (B, H, Tq, Tk).

    Args:
        score_bias: float, broadcastable to (B, H, Tq, Tk), added to the scores (relative position bias).
        scale: the factor of Q Kᵀ; None = 1 / sqrt(d_k).

    Returns:
        output (B, H, Tq, Dh) and the attention weights (B, H, Tq, Tk).
    """
    weights = attention_weights(q, k, mask, causal=causal, score_bias=score_bias, scale=scale)  # (B, H, Tq, Tk)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ v, weights  # (B, H, Tq, Dh)


def attention_weights(
    q: Tensor, k: Tensor, mask: Tensor | None = None, *, causal: bool = False, score_bias: Tensor | None = None,
    scale: float | None = None,
) -> Tensor:
    """softmax(Q Kᵀ / sqrt(d_k)) of Eq. 1 alone, (B, H, Tq, Tk), rows summing to 1 (no dropout).

    Also the cheap side path of a layer whose output comes from a fast algorithm but whose weights are
    wanted for a few heads (the guided attention loss, the monotonic window): q, k of those heads only.
    """
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = q @ k.transpose(-2, -1) * scale  # (B, H, Tq, Tk)
    if score_bias is not None:
        scores = scores + score_bias
    if causal:
        mask = combine(mask, causal_mask(q.shape[-2], k.shape[-2], device=q.device))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(dim=-1)  # (B, H, Tq, Tk), rows sum to 1


@register_attention
class ReferenceAttention(AttentionAlgorithm):
    """Kind "reference": :func:`attention_reference` for every call."""

    name = "reference"
    same_as_full = True
    serves_cross_attention = True

    def forward(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, **options) -> Tensor:
        return attention_reference(q, k, v, mask, **options)[0]  # (B, H, Tq, Dh)

    def with_weights(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, **options) -> tuple[Tensor, Tensor]:
        return attention_reference(q, k, v, mask, **options)
