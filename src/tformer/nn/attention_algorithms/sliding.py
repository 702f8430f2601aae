"""Sliding-window attention (kind "sliding"): each position attends only to the positions within ``window`` of
it (Longformer's local attention, Beltagy et al., 2020, §3.1), computed in blocks of ``window`` rows, each
against its own and the neighbouring key blocks: memory O(T · window).

Exact for a band mask, which is a restriction of the model, not an approximation of it: on random inputs
(``benchmarks/long_attention.py``, T = 2048, window 256) it is 1.84 away from full attention, relative.

Conventions: :mod:`tformer.nn.attention_algorithms.common`.

Shape legend: B batch, H heads, Tq queries, Tk keys, T = Tq = Tk, Dh = d_k = d_v, W window, N number of blocks.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from tformer.nn.attention_algorithms.common import key_padding, refuse_score_bias, safe_softmax
from tformer.nn.attention_algorithms.reference import attention_reference
from tformer.nn.attention_algorithms.registry import AttentionAlgorithm, register_attention
from tformer.nn.masks import combine


def sliding_window_mask(t_q: int, t_k: int | None = None, window: int = 256, *, causal: bool = False,
                        device: torch.device | None = None) -> Tensor:
    """The band a sliding window allows: (Tq, Tk) boolean, True where |i' - j| <= window (causal:
    0 <= i' - j <= window), i' = i + Tk - Tq the query's position (the last Tq of Tk, as ``causal_mask``)."""
    t_k = t_q if t_k is None else t_k
    i = torch.arange(t_q, device=device)[:, None] + (t_k - t_q)  # (Tq, 1)
    d = i - torch.arange(t_k, device=device)[None, :]  # (Tq, Tk) how far back key j is
    return (d >= 0 if causal else d >= -window) & (d <= window)


def attention_sliding(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, *, causal: bool = False, dropout_p: float = 0.0,
    score_bias: Tensor | None = None, scale: float | None = None, window: int = 256,
) -> Tensor:
    """Local attention: query i attends only to keys j with |i - j| <= window (causal: 0 <= i - j <= window).

    Self-attention (Tq = Tk) runs blockwise (Longformer's local attention, computed in blocks instead of
    its banded kernel): the T positions are cut into blocks of W = ``window`` rows, and each block attends to
    its own and the neighbouring key blocks (3 W keys; 2 W when causal) with the band applied inside, so the
    scores are (B, H, N, W, 3W): memory O(T · W). It equals ``attention_reference`` with the mask
    ``sliding_window_mask`` AND ``mask``. With Tq < Tk (incremental decoding: the last Tq of Tk positions)
    the band is a dense (Tq, Tk) mask for PyTorch's SDPA; Tq is small there.

    Args:
        mask: None or a key-padding mask broadcastable to (B, H, 1, Tk) (e.g. ``padding_mask``'s (B, 1, 1, Tk));
            any other shape is a :class:`~tformer.config.ConfigError`.
        score_bias: must be None (relative positions need full or chunked attention).

    Returns:
        (B, H, Tq, Dh); 0 in rows where nothing may be attended to (as ``attention_fast``).
    """
    refuse_score_bias(score_bias, "sliding")
    key_real = key_padding(mask, "sliding")  # (B|1, H|1, Tk|1) or None
    b, h, t, dh = q.shape
    t_k = k.shape[-2]
    if t != t_k:
        band = sliding_window_mask(t, t_k, window, causal=causal, device=q.device)  # (Tq, Tk)
        allowed = combine(None if key_real is None else key_real[..., None, :], band)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=dropout_p, scale=scale)
        return out.masked_fill(~allowed.any(dim=-1, keepdim=True), 0.0)  # (B, H, Tq, Dh)
    scale = 1.0 / math.sqrt(dh) if scale is None else scale
    w = window
    n = -(-t // w)  # N blocks
    tp = n * w  # padded length
    ctx = 2 if causal else 3  # key blocks per query block: previous, own (and next)
    after = tp - t + (0 if causal else w)  # zero keys after the end: the padding and the last block's "next"
    qb = F.pad(q, (0, 0, 0, tp - t)).view(b, h, n, w, dh)  # (B, H, T, Dh) -> (B, H, N, W, Dh)
    kb = F.pad(k, (0, 0, w, after)).unfold(2, ctx * w, w).transpose(-2, -1)  # (B, H, N, ctx W, Dh), a view
    vb = F.pad(v, (0, 0, w, after)).unfold(2, ctx * w, w).transpose(-2, -1)  # (B, H, N, ctx W, Dh)
    s = qb @ kb.transpose(-2, -1) * scale  # (B, H, N, W, ctx W)
    # Query (n, r) is position n W + r; key (n, c) is position (n - 1) W + c: i - j = W + r - c.
    r = torch.arange(w, device=q.device)[:, None]
    c = torch.arange(ctx * w, device=q.device)[None, :]
    band = ((w + r - c) >= (0 if causal else -w)) & ((w + r - c) <= w)  # (W, ctx W), the same for every block
    real = F.pad(torch.ones(t, dtype=torch.bool, device=q.device), (w, after)).unfold(0, ctx * w, w)  # (N, ctx W)
    allowed = band & real[:, None, :]  # (N, W, ctx W)
    if key_real is not None:
        kr = F.pad(key_real.expand(*key_real.shape[:-1], t), (w, after)).unfold(-1, ctx * w, w)  # (B|1, H|1, N, ctx W)
        allowed = allowed & kr[..., :, None, :]  # (B|1, H|1, N, W, ctx W)
    weights = safe_softmax(s, allowed)  # (B, H, N, W, ctx W)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    out = weights @ vb  # (B, H, N, W, Dh)
    return out.reshape(b, h, tp, dh)[:, :, :t]  # (B, H, T, Dh)


@register_attention
class SlidingAttention(AttentionAlgorithm):
    """Kind "sliding": :func:`attention_sliding` with ``window``; the weights, when asked for, are the ones the
    model really uses: the reference path inside the band only."""

    name = "sliding"
    takes_score_bias = False

    def forward(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, **options) -> Tensor:
        return attention_sliding(q, k, v, mask, window=self.cfg.window, **options)  # (B, H, Tq, Dh)

    def with_weights(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, **options) -> tuple[Tensor, Tensor]:
        band = sliding_window_mask(q.shape[-2], k.shape[-2], self.cfg.window, device=q.device)  # (Tq, Tk)
        return attention_reference(q, k, v, combine(mask, band), **options)
