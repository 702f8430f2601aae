"""Chunked attention (kind "chunked"): Eq. 1 (§3.2.1), exact, in memory linear in the length.

Query blocks x key blocks with a running maximum and sum of the softmax, so the (Tq, Tk) matrix never exists
(Rabe & Staats, 2021, "Self-attention does not need O(n²) memory"), and each query block is recomputed in the
backward pass (activation checkpointing), so that training memory is linear in the length as well. Every mask,
``causal``, ``score_bias`` and ``scale``; 6e-8 max abs difference from full attention at T = 2048
(``benchmarks/long_attention.py``).

Conventions: :mod:`tformer.nn.attention_algorithms.common`. ``causal`` aligns bottom-right as
:func:`~tformer.nn.masks.causal_mask` (query i of Tq may attend to key j when j <= i + Tk - Tq).

Shape legend: B batch, H heads, Tq queries, Tk keys, Dh = d_k = d_v, C chunk (block) length.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from tformer.nn.attention_algorithms.common import as_4d, key_columns, query_rows
from tformer.nn.attention_algorithms.reference import attention_reference
from tformer.nn.attention_algorithms.registry import AttentionAlgorithm, register_attention
from tformer.nn.masks import combine


def _query_block(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, bias: Tensor | None, *, first: int, shift: int,
    causal: bool, dropout_p: float, seed: int, scale: float, chunk_size: int, keys: int,
) -> Tensor:
    """Eq. 1 for one block of queries q (B, H, C, Dh), rows ``first``.. of the whole, against keys 0..keys-1
    in blocks of ``chunk_size``, with a running maximum m, sum l and weighted sum of values (Rabe & Staats §2).
    Dropout masks come from a generator seeded with ``seed``, so that a recomputation draws the same ones."""
    rows = torch.arange(first, first + q.shape[-2], device=q.device)[:, None]  # (C, 1) query positions
    g = torch.Generator(device=q.device).manual_seed(seed) if dropout_p > 0.0 else None
    # The running statistics are kept in at least fp32 (sums in bf16/fp16 drift).
    acc_type = torch.promote_types(q.dtype, torch.float32)
    m = q.new_full((*q.shape[:-1], 1), float("-inf"), dtype=acc_type)  # (B, H, C, 1) largest score so far
    l = q.new_zeros((*q.shape[:-1], 1), dtype=acc_type)  # (B, H, C, 1) sum of exp(score - m)
    acc = q.new_zeros((*q.shape[:-1], v.shape[-1]), dtype=acc_type)  # (B, H, C, Dh) sum of exp(score - m) v
    for start in range(0, keys, chunk_size):
        end = min(start + chunk_size, keys)
        s = (q @ k[..., start:end, :].transpose(-2, -1)).to(acc_type) * scale  # (B, H, C, Ck) scores of this block
        if bias is not None:
            s = s + key_columns(bias, start, end)
        allowed = key_columns(mask, start, end)
        if causal:
            allowed = combine(allowed, torch.arange(start, end, device=q.device)[None, :] <= rows + shift)
        if allowed is not None:
            s = s.masked_fill(~allowed, float("-inf"))
        # The softmax does not depend on the stabiliser m: no gradient flows through it.
        m_new = torch.maximum(m, s.detach().amax(dim=-1, keepdim=True))  # (B, H, C, 1)
        m_safe = m_new.masked_fill(m_new == float("-inf"), 0.0)  # rows with nothing allowed yet
        p = torch.exp(s - m_safe)  # (B, H, C, Ck) unnormalised weights, 0 where not allowed
        alpha = torch.exp(m - m_safe)  # (B, H, C, 1) rescales what was summed under the old maximum
        l = l * alpha + p.sum(dim=-1, keepdim=True)
        if g is not None:  # dropout on the normalised weights = on p, since l is summed before it
            keep = torch.rand(p.shape, generator=g, device=p.device, dtype=p.dtype) >= dropout_p
            p = p * keep / (1.0 - dropout_p)
        acc = acc * alpha + (p.to(v.dtype) @ v[..., start:end, :]).to(acc_type)
        m = m_new
    return (acc / l.masked_fill(l == 0, 1.0)).to(q.dtype)  # (B, H, C, Dh); a row with nothing allowed stays 0


class _CheckpointedQueryBlock(torch.autograd.Function):
    """One query block of :func:`attention_chunked` that keeps only its inputs: the forward pass builds no graph,
    the backward pass recomputes the block with autograd and differentiates that (activation checkpointing).

    Written out rather than with ``torch.utils.checkpoint(use_reentrant=False)``, which keeps the checkpointed
    forward's graph (a few nodes per key block) until the backward pass: those small long-lived allocations
    fragment glibc's heap between the freed score blocks: with glibc's default allocator the process's peak
    resident memory reached 15 GiB at T = 16384 for the benchmark layer of ``benchmarks/long_attention.py``
    (measured before the benchmark took its allocator setting; this Function keeps nothing but q, k, v).
    """

    @staticmethod
    def forward(ctx, q, k, v, bias, mask, options):  # (B, H, C, Dh), (B, H, Tk, Dh) x 2, bias or None, ...
        ctx.save_for_backward(q, k, v, bias)
        ctx.mask, ctx.options = mask, options
        device = q.device.type  # the recomputation runs under the autocast state of this forward
        ctx.autocast = (device, torch.is_autocast_enabled(device), torch.get_autocast_dtype(device))
        return _query_block(q, k, v, mask, bias, **options)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        inputs = [None if t is None else t.detach().requires_grad_(t.requires_grad) for t in ctx.saved_tensors]
        device, enabled, dtype = ctx.autocast
        with torch.enable_grad(), torch.autocast(device, dtype=dtype, enabled=enabled):
            out = _query_block(*inputs[:3], ctx.mask, inputs[3], **ctx.options)
        wanted = [t for t in inputs if t is not None and t.requires_grad]
        found = out.requires_grad and wanted  # not when no key was in reach (causal, Tq > Tk)
        grads = iter(torch.autograd.grad(out, wanted, grad_out, allow_unused=True) if found else [None] * len(wanted))
        return (*(next(grads) if t is not None and t.requires_grad else None for t in inputs), None, None)


def attention_chunked(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, *, causal: bool = False, dropout_p: float = 0.0,
    score_bias: Tensor | None = None, scale: float | None = None, chunk_size: int = 512,
) -> Tensor:
    """Eq. 1, exact, in memory linear in the length (Rabe & Staats, 2021). Same contract as ``attention_fast``.

    Queries are taken ``chunk_size`` rows at a time; each block runs over the keys ``chunk_size`` columns at a
    time with an online softmax, so no (Tq, Tk) tensor is formed. When gradients are needed each query block is
    checkpointed: its forward pass stores nothing but its inputs, and the backward pass recomputes its scores
    (with autograd, one query block at a time), so the stored activations are O(T · Dh) and the recomputation
    needs O(chunk_size · Tk) at a time. Key blocks wholly in a causal query block's future are skipped.

    Dropout (``dropout_p`` > 0) drops the normalised weights as ``attention_reference`` does, each kept one
    scaled by 1 / (1 - p). The masks come from a generator seeded per call from torch's global RNG (so
    ``set_seed`` repeats them), not from the reference's random stream; the recomputation draws the same ones.

    Args:
        q: (B, H, Tq, Dh); k, v: (B, H, Tk, Dh).
        mask: boolean, broadcastable to (B, H, Tq, Tk), True = may attend (sliced per block).
        causal: bottom-right aligned, as :func:`~tformer.nn.masks.causal_mask`.
        score_bias: float, broadcastable to (B, H, Tq, Tk), added to the scores (sliced per block).
        scale: the factor of Q Kᵀ; None = 1 / sqrt(d_k).
        chunk_size: rows of a query block and columns of a key block.

    Returns:
        (B, H, Tq, Dh); 0 in rows where nothing may be attended to (as ``attention_fast``).
    """
    t_q, t_k = q.shape[-2], k.shape[-2]
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    mask, score_bias = as_4d(mask), as_4d(score_bias)
    if score_bias is not None:
        score_bias = score_bias.to(q.dtype)
    grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (q, k, v, score_bias))
    seed = int(torch.randint(2**62, ())) if dropout_p > 0.0 else 0
    blocks = []
    for first in range(0, t_q, chunk_size):
        last = min(first + chunk_size, t_q)
        keys = min(t_k, max(0, last + t_k - t_q)) if causal else t_k  # later keys are all in the future
        options = dict(first=first, shift=t_k - t_q, causal=causal, dropout_p=dropout_p, seed=seed + first,
                       scale=scale, chunk_size=chunk_size, keys=keys)
        q_block = q[..., first:last, :]  # (B, H, C, Dh)
        mask_block, bias_block = query_rows(mask, first, last), query_rows(score_bias, first, last)
        if grad:
            blocks.append(_CheckpointedQueryBlock.apply(q_block, k, v, bias_block, mask_block, options))
        else:
            blocks.append(_query_block(q_block, k, v, mask_block, bias_block, **options))  # (B, H, C, Dh)
    return torch.cat(blocks, dim=-2)  # (B, H, Tq, Dh)


@register_attention
class ChunkedAttention(AttentionAlgorithm):
    """Kind "chunked": :func:`attention_chunked` in blocks of ``chunk_size``; encoder-decoder attention next to
    it is chunked too; the weights, when asked for, from the reference path (they are the same)."""

    name = "chunked"
    same_as_full = True
    serves_cross_attention = True

    def forward(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, **options) -> Tensor:
        return attention_chunked(q, k, v, mask, chunk_size=self.cfg.chunk_size, **options)  # (B, H, Tq, Dh)

    def with_weights(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, **options) -> tuple[Tensor, Tensor]:
        return attention_reference(q, k, v, mask, **options)
