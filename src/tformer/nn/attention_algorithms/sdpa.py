"""Eq. 1 (§3.2.1) through PyTorch's fused ``scaled_dot_product_attention`` (flash / memory-efficient kernels
where the device has them): kind "full", the default and the paper's attention. Tested equal to the
written-out :func:`~tformer.nn.attention_algorithms.reference.attention_reference`, which also gives the
weights when they are asked for (the fused kernels never materialise them).

On this path the relative position bias (T5) and the boolean masks become one float ``attn_mask``
(-inf where a query may not attend).

Shape legend: B batch, H heads, Tq queries, Tk keys, Dh = d_k = d_v.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from tformer.nn.attention_algorithms.reference import attention_reference
from tformer.nn.attention_algorithms.registry import AttentionAlgorithm, register_attention
from tformer.nn.masks import causal_mask, combine


def attention_fast(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, *, causal: bool = False,
    dropout_p: float = 0.0, score_bias: Tensor | None = None, scale: float | None = None,
) -> Tensor:
    """Eq. 1 through ``torch.nn.functional.scaled_dot_product_attention``; the contract of
    :func:`~tformer.nn.attention_algorithms.reference.attention_reference`, without the weights."""
    if score_bias is not None:  # one additive float mask: the bias, -inf where the boolean masks forbid
        if causal:
            mask, causal = combine(mask, causal_mask(q.shape[-2], k.shape[-2], device=q.device)), False
        score_bias = score_bias.to(q.dtype)
        mask = score_bias if mask is None else score_bias.masked_fill(~mask, float("-inf"))  # (B|1, H, Tq, Tk)
    if causal and mask is not None:  # SDPA takes either a mask or is_causal, not both
        mask, causal = combine(mask, causal_mask(q.shape[-2], k.shape[-2], device=q.device)), False
    if causal and q.shape[-2] != k.shape[-2]:  # SDPA's is_causal aligns top-left; ours aligns bottom-right
        mask, causal = causal_mask(q.shape[-2], k.shape[-2], device=q.device), False
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=causal, scale=scale)


@register_attention
class FullAttention(AttentionAlgorithm):
    """Kind "full": :func:`attention_fast`; the weights, when asked for, from the reference path."""

    name = "full"
    same_as_full = True

    def forward(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, **options) -> Tensor:
        return attention_fast(q, k, v, mask, **options)  # (B, H, Tq, Dh)

    def with_weights(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, **options) -> tuple[Tensor, Tensor]:
        return attention_reference(q, k, v, mask, **options)
