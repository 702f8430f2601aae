"""Attention for long inputs: Eq. 1 (§3.2.1) in memory linear in the length, exactly or approximately.

Eq. 1 as written stores the (Tq, Tk) matrix softmax(Q Kᵀ / sqrt(d_k)) for every head. These are the
other ways :class:`~tformer.nn.attention.MultiHeadAttention` can compute it, chosen by
:class:`~tformer.config.AttentionConfig` (``kind``):

* ``chunked`` (exact): query blocks x key blocks with a running maximum and sum of the softmax, so the
  (Tq, Tk) matrix never exists (Rabe & Staats, 2021, "Self-attention does not need O(n²) memory"), and
  each query block is recomputed in the backward pass (activation checkpointing), so that training
  memory is linear in the length as well. Every mask, ``causal``, ``score_bias`` and ``scale``.
* ``sliding`` (exact for a band mask, a restriction of the model): each position attends only to the
  positions within ``window`` of it, computed in blocks of ``window`` rows, each against its own and the
  neighbouring key blocks: memory O(T · window) (Longformer's local attention, Beltagy et al., 2020, §3.1).
* ``linformer`` (approximate): learned E, F (k, max_len) project keys and values along the sequence,
  K' = E K, V' = F V, so the scores are (T, k) (Wang et al., 2020, "Linformer", §4). Not causal.
* ``lsh`` (approximate): shared-QK attention (keys = the queries, normalised) among the positions that
  angular locality-sensitive hashing puts in the same or the previous chunk after sorting by bucket,
  over several hash rounds (Kitaev et al., 2020, "Reformer", §2).

Accuracy on random inputs (``benchmarks/long_attention.py``: T = 2048, 4 heads of 64, q, k, v ~ N(0, 1), the
defaults of AttentionConfig), as ||approx - exact|| / ||exact||: chunked 6e-8 max abs difference (exact);
linformer 2.70 against full attention (E, F at their initialisation: they are meant to be learned); lsh
2.02 against dense shared-QK attention (4 rounds of buckets of 64); sliding 1.84 against full attention
(it is a different model, not an approximation). For scale: answering every query with the mean of V is off
by 0.81 (full) and 0.13 (shared-QK). Random scores of size 1 spread the weights over all T keys, so the exact
output is close to that mean, and a method that sees a subset of the keys (lsh, a window) or random mixtures of
them (linformer) is far from it. The approximations are built for inputs with structure (a few keys that matter
to each query, attention of low rank) and for E, F trained with the model, which random inputs do not have.

Conventions, as in :mod:`tformer.nn.attention`: masks are boolean, True = may attend, broadcastable
to (B, H, Tq, Tk); ``causal`` aligns bottom-right as :func:`~tformer.nn.masks.causal_mask` (query i
of Tq may attend to key j when j <= i + Tk - Tq). A query that may attend to nothing gets output 0, as
:func:`~tformer.nn.attention.attention_fast` (PyTorch's SDPA) gives and the model uses;
:func:`~tformer.nn.attention.attention_reference` gives NaN there.

Shape legend: B batch, H heads, Tq queries, Tk keys, T = Tq = Tk, Dh = d_k = d_v, W window,
C chunk (block) length, N number of blocks, R hash rounds, k Linformer's projected length.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from tformer.config import AttentionConfig, ConfigError
from tformer.nn.masks import causal_mask, combine

__all__ = [
    "AttentionConfig", "LinformerProjection", "attention_chunked", "attention_linformer", "attention_lsh",
    "attention_shared_qk", "attention_sliding", "causal_attention_config", "cross_attention_config",
    "sliding_window_mask",
]

NO_WEIGHTS = ("linformer", "lsh")  # kinds that never form the (Tq, Tk) weights


def causal_attention_config(cfg: AttentionConfig | None) -> AttentionConfig | None:
    """The attention config for a decoder's causal self-attention next to an encoder's ``cfg``: linformer and lsh
    cannot be causal (Linformer's E, F mix all positions; Reformer's global sort lets later queries decide which
    earlier keys share a chunk), so there the decoder uses full attention; the other kinds stay."""
    return None if cfg is None or cfg.kind in ("linformer", "lsh") else cfg


def cross_attention_config(cfg: AttentionConfig | None) -> AttentionConfig | None:
    """The attention config for encoder-decoder attention next to self-attention ``cfg``: chunked stays
    chunked; every other kind becomes full (a window, Linformer's E and F and shared-QK hashing are
    defined over one sequence's own positions, and the source is the part that is usually short)."""
    return cfg if cfg is not None and cfg.kind == "chunked" else None


def _as_4d(t: Tensor | None) -> Tensor | None:
    """A mask or bias broadcastable to (B, H, Tq, Tk) with exactly four dims (leading 1s added)."""
    return None if t is None else t.reshape((1,) * (4 - t.dim()) + tuple(t.shape))


def _rows(t: Tensor | None, start: int, end: int) -> Tensor | None:
    """Query rows start:end of a 4-d mask or bias; a broadcast (size 1) row dim stays as it is."""
    return t if t is None or t.shape[-2] == 1 else t[..., start:end, :]


def _cols(t: Tensor | None, start: int, end: int) -> Tensor | None:
    """Key columns start:end of a 4-d mask or bias; a broadcast (size 1) column dim stays as it is."""
    return t if t is None or t.shape[-1] == 1 else t[..., start:end]


def _key_padding(mask: Tensor | None, kind: str) -> Tensor | None:
    """A key-padding mask (B|1, H|1, 1, Tk|1) as (B|1, H|1, Tk|1); any other shape is an error."""
    mask = _as_4d(mask)
    if mask is not None and mask.shape[-2] != 1:
        raise ConfigError(f"{kind} attention takes key-padding masks (B, 1, 1, Tk) only, got {tuple(mask.shape)}")
    return None if mask is None else mask[..., 0, :]


# ---- chunked: exact, no (Tq, Tk) matrix --------------------------------------------------------------
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
            s = s + _cols(bias, start, end)
        allowed = _cols(mask, start, end)
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
    mask, score_bias = _as_4d(mask), _as_4d(score_bias)
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
        q_block, mask_block, bias_block = q[..., first:last, :], _rows(mask, first, last), _rows(score_bias, first,
                                                                                                 last)
        if grad:
            blocks.append(_CheckpointedQueryBlock.apply(q_block, k, v, bias_block, mask_block, options))
        else:
            blocks.append(_query_block(q_block, k, v, mask_block, bias_block, **options))  # (B, H, C, Dh)
    return torch.cat(blocks, dim=-2)  # (B, H, Tq, Dh)


# ---- sliding window: a band of width 2 W + 1 --------------------------------------------------------
def sliding_window_mask(t_q: int, t_k: int | None = None, window: int = 256, *, causal: bool = False,
                        device: torch.device | None = None) -> Tensor:
    """The band a sliding window allows: (Tq, Tk) boolean, True where |i' - j| <= window (causal:
    0 <= i' - j <= window), i' = i + Tk - Tq the query's position (the last Tq of Tk, as ``causal_mask``)."""
    t_k = t_q if t_k is None else t_k
    i = torch.arange(t_q, device=device)[:, None] + (t_k - t_q)  # (Tq, 1)
    d = i - torch.arange(t_k, device=device)[None, :]  # (Tq, Tk) how far back key j is
    return (d >= 0 if causal else d >= -window) & (d <= window)


def _safe_softmax(s: Tensor, allowed: Tensor) -> Tensor:
    """softmax over the last dim of ``s`` where ``allowed``; rows with nothing allowed get weights 0."""
    weights = s.masked_fill(~allowed, float("-inf")).softmax(dim=-1)  # NaN in empty rows...
    return weights.masked_fill(~allowed.any(dim=-1, keepdim=True), 0.0)  # ...replaced (their gradient stops at -inf)


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
            any other shape is a :class:`ConfigError`.
        score_bias: must be None (relative positions need full or chunked attention).

    Returns:
        (B, H, Tq, Dh); 0 in rows where nothing may be attended to (as ``attention_fast``).
    """
    if score_bias is not None:
        raise ConfigError("relative positions need full or chunked attention, got 'sliding'")
    key_real = _key_padding(mask, "sliding")  # (B|1, H|1, Tk|1) or None
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
    weights = _safe_softmax(s, allowed)  # (B, H, N, W, ctx W)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    out = weights @ vb  # (B, H, N, W, Dh)
    return out.reshape(b, h, tp, dh)[:, :, :t]  # (B, H, T, Dh)


# ---- Linformer: keys and values projected along the sequence ----------------------------------------
def attention_linformer(
    q: Tensor, k: Tensor, v: Tensor, e: Tensor, f: Tensor, mask: Tensor | None = None, *, causal: bool = False,
    dropout_p: float = 0.0, score_bias: Tensor | None = None, scale: float | None = None,
) -> Tensor:
    """Linformer self-attention (Wang et al., 2020, Eq. 7): softmax(Q (E K)ᵀ / sqrt(d_k)) (F V).

    Args:
        q, k, v: (B, H, T, Dh), one sequence's own positions (self-attention).
        e, f: (k, max_len) projections of the sequence axis; their first T columns are used.
        mask: None or a key-padding mask (B, 1, 1, T): padded keys and values are set to 0 before the
            projection, so padding content never reaches the output (a zero key still scores 0, so this is
            not the same as excluding it: padding changes the approximation, not only the inputs).

    With k = T and E = F = the identity this is full attention; error on random inputs with E, F at their
    initialisation: see the module docstring (2.70 relative to full attention at T = 2048, k = 256).

    Returns:
        (B, H, T, Dh).
    """
    if causal:
        raise ConfigError("linformer attention cannot be causal")
    if score_bias is not None:
        raise ConfigError("relative positions need full or chunked attention, got 'linformer'")
    t = k.shape[-2]
    if q.shape[-2] != t:
        raise ConfigError("linformer attention is self-attention: queries and keys must have one length")
    if t > e.shape[-1]:
        raise ConfigError(f"linformer attention covers {e.shape[-1]} positions (max_len), got {t}")
    key_real = _key_padding(mask, "linformer")  # (B|1, H|1, T|1) or None
    if key_real is not None:
        k = k.masked_fill(~key_real[..., None], 0.0)
        v = v.masked_fill(~key_real[..., None], 0.0)
    k = e[:, :t].to(k.dtype) @ k  # (k, T) @ (B, H, T, Dh) -> (B, H, k, Dh): K' = E K
    v = f[:, :t].to(v.dtype) @ v  # V' = F V
    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, scale=scale)  # (B, H, T, Dh)


class LinformerProjection(nn.Module):
    """The learned E, F (k, max_len) of one Linformer layer (§4), shared by its heads ("headwise sharing").

    Initialised as the Linformer code released with fairseq does: Xavier-uniform with gain 1/sqrt(2), variance
    1 / (max_len + k), so that a projected key or value has about the size of one key or value. (Theorem 1's
    N(0, 1/k) projection would make them sqrt(T / k) times larger.)
    """

    def __init__(self, k: int, max_len: int) -> None:
        super().__init__()
        self.E = nn.Parameter(nn.init.xavier_uniform_(torch.empty(k, max_len), gain=2**-0.5))  # projects the keys
        self.F = nn.Parameter(nn.init.xavier_uniform_(torch.empty(k, max_len), gain=2**-0.5))  # projects the values

    def forward(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, **options) -> Tensor:
        """:func:`attention_linformer` with this layer's E and F."""
        return attention_linformer(q, k, v, self.E, self.F, mask, **options)


# ---- Reformer: shared-QK attention within LSH buckets --------------------------------------------------
def _self_excluded(s: Tensor, is_self: Tensor) -> Tensor:
    """Reformer §2: a position attends to itself only when it has nothing else. A score far below any other
    (but finite) gives exactly 0 weight beside any allowed key, and all the weight when it is alone."""
    return s.masked_fill(is_self, torch.finfo(s.dtype).min / 2)


def attention_shared_qk(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, *, causal: bool = False, dropout_p: float = 0.0,
    scale: float | None = None,
) -> Tensor:
    """Dense shared-QK attention with Reformer's self rule, for the last Tq of Tk positions (incremental
    decoding with ``kind="lsh"``: each new query against every cached key, no hashing; Tq is small there).

    ``k`` (B, H, Tk, Dh) holds the normalised queries of all positions so far.
    """
    t_q, t_k = q.shape[-2], k.shape[-2]
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = q @ k.transpose(-2, -1) * scale  # (B, H, Tq, Tk)
    own = torch.arange(t_k, device=q.device)[None, :] == torch.arange(t_q, device=q.device)[:, None] + t_k - t_q
    s = _self_excluded(s, own)
    allowed = combine(_as_4d(mask), causal_mask(t_q, t_k, device=q.device) if causal else None)
    allowed = torch.ones_like(s, dtype=torch.bool) if allowed is None else allowed.expand(s.shape)
    weights = _safe_softmax(s, allowed)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ v  # (B, H, Tq, Dh)


def _gather(x: Tensor, index: Tensor) -> Tensor:
    """x (B, H, T, D) taken at ``index`` (B, H, R, T) per round -> (B, H, R, T, D)."""
    b, h, t, d = x.shape
    return x[:, :, None].expand(b, h, index.shape[2], t, d).gather(3, index[..., None].expand(*index.shape, d))


def _look_back(x: Tensor) -> Tensor:
    """Chunks (B, H, R, N, C, ...) -> each chunk followed by the previous one (the last for the first):
    (B, H, R, N, 2C, ...) (Reformer §2, "attend within the same chunk and one chunk back")."""
    return torch.cat([x, x.roll(1, dims=3)], dim=4)


def attention_lsh(
    q: Tensor, v: Tensor, mask: Tensor | None = None, *, causal: bool = False, dropout_p: float = 0.0,
    scale: float | None = None, bucket_size: int = 64, n_rounds: int = 4, seed: int = 0,
) -> Tensor:
    """LSH attention (Reformer, Kitaev et al., 2020, §2): shared-QK self-attention among hash neighbours.

    Not causal: Reformer sorts the whole sequence at once, so later queries decide which earlier keys share a
    chunk, and an earlier position's output would depend on later tokens (``causal=True`` is refused; a
    decoder next to an lsh encoder uses full attention, :func:`causal_attention_config`).

    Keys are the queries normalised, k_j = q_j / |q_j|. Each of R = ``n_rounds`` rounds hashes every key with
    a random rotation, h(x) = argmax([x Rot; -x Rot]) over n_buckets = 2 ceil(T / (2 bucket_size)) buckets
    (angular LSH), sorts the positions by (bucket, position), cuts the sorted sequence into chunks of
    ``bucket_size`` and lets each chunk attend to itself and the previous chunk (the first to the last).
    Padded keys are put in a bucket of their own that sorts after every real one, so they take no chunk
    places from real positions, and are excluded from every softmax; a position attends to itself only
    when it has nothing else. The output of a sequence still depends on how far its batch pads it: the
    number of buckets comes from the padded length, and the first chunk looks back to the last. The rounds' outputs are
    combined with weights softmax_r(logsumexp of round r's scores) (Reformer's multi-round combination; a
    key found in several rounds is not de-duplicated, so it weighs more, as in Hugging Face's Reformer).
    Memory: scores (B, H, R, T, 2 bucket_size). Error on random inputs: see the module docstring (2.02 relative
    to dense shared-QK attention at T = 2048, 4 rounds of 64).

    With one chunk (``bucket_size`` >= T) or two, every position sees every other and the result equals dense
    shared-QK attention with the self rule (:func:`attention_shared_qk`).

    Args:
        q: (B, H, T, Dh) queries (and, normalised, keys); v: (B, H, T, Dh).
        mask: None or a key-padding mask broadcastable to (B, H, 1, T).
        seed: seeds the rotations: the same seed gives the same hashes (see ``MultiHeadAttention``: a fixed
            seed in evaluation, a fresh one per call in training).

    Returns:
        (B, H, T, Dh); 0 in rows where nothing may be attended to (a padding position among padding).
    """
    if causal:
        raise ConfigError("lsh attention cannot be causal (Reformer's global sort lets later positions choose "
                          "the neighbours of earlier ones); use full, chunked or sliding attention in a decoder")
    key_real = _key_padding(mask, "lsh")  # (B|1, H|1, T|1) or None
    b, h, t, dh = q.shape
    scale = 1.0 / math.sqrt(dh) if scale is None else scale
    c = bucket_size
    n = -(-t // c)  # N chunks
    tp = n * c  # padded length
    n_buckets = 2 * max(1, -(-t // (2 * c)))
    g = torch.Generator().manual_seed(seed)
    rotations = torch.randn(h, n_rounds, dh, n_buckets // 2, generator=g).to(device=q.device, dtype=q.dtype)
    k = F.normalize(q, dim=-1)  # (B, H, T, Dh) shared-QK keys
    rotated = torch.einsum("bhtd,hrdn->bhrtn", k.detach(), rotations)  # (B, H, R, T, n_buckets / 2)
    buckets = torch.cat([rotated, -rotated], dim=-1).argmax(dim=-1)  # (B, H, R, T)
    if key_real is not None:  # padded keys: a bucket of their own, after every real one
        buckets = buckets.masked_fill(~key_real.expand(*key_real.shape[:-1], t)[:, :, None, :], n_buckets)
    buckets = F.pad(buckets, (0, tp - t), value=n_buckets)  # (B, H, R, Tp) padding positions sort last
    position = torch.arange(tp, device=q.device)
    order = (buckets * tp + position).argsort(dim=-1)  # (B, H, R, Tp) sorted by (bucket, position)
    real = position < t  # (Tp,)
    if key_real is not None:
        real = real & F.pad(key_real.expand(*key_real.shape[:-1], t), (0, tp - t))  # (B|1, H|1, Tp)
    real = real.expand(b, h, tp)[:, :, None].expand(b, h, n_rounds, tp).gather(3, order)  # (B, H, R, Tp)

    def chunks(x: Tensor) -> Tensor:  # (B, H, R, Tp, ...) -> (B, H, R, N, C, ...)
        return x.reshape(b, h, n_rounds, n, c, *x.shape[4:])

    pad = (0, 0, 0, tp - t)
    sq = chunks(_gather(F.pad(q, pad), order))  # (B, H, R, N, C, Dh) queries in sorted order
    sk = chunks(_gather(F.pad(k, pad), order))
    sv = chunks(_gather(F.pad(v, pad), order))
    q_pos, k_pos, k_real = chunks(order), chunks(order), chunks(real)  # (B, H, R, N, C)
    if n > 1:
        sk, sv, k_pos, k_real = _look_back(sk), _look_back(sv), _look_back(k_pos), _look_back(k_real)  # 2C keys
    s = sq @ sk.transpose(-2, -1) * scale  # (B, H, R, N, C, 2C)
    s = _self_excluded(s, k_pos[..., None, :] == q_pos[..., :, None])
    allowed = k_real[..., None, :].expand(s.shape)  # (B, H, R, N, C, 2C)
    weights = _safe_softmax(s, allowed)  # (B, H, R, N, C, 2C)
    lse = s.masked_fill(~allowed, float("-inf")).logsumexp(dim=-1)  # (B, H, R, N, C), -inf in empty rows
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    out = (weights @ sv).reshape(b, h, n_rounds, tp, dh)  # (B, H, R, Tp, Dh) in sorted order
    undo = order.argsort(dim=-1)  # (B, H, R, Tp) the inverse permutation
    out = out.gather(3, undo[..., None].expand(*undo.shape, dh))[:, :, :, :t]  # (B, H, R, T, Dh) original order
    lse = lse.reshape(b, h, n_rounds, tp).gather(3, undo)[:, :, :, :t]  # (B, H, R, T)
    empty = torch.isinf(lse).all(dim=2, keepdim=True)  # (B, H, 1, T) nothing to attend to in any round
    round_weights = lse.masked_fill(empty, 0.0).softmax(dim=2)  # (B, H, R, T) exp(lse_r - logsumexp_r lse_r)
    return (round_weights[..., None] * out).sum(dim=2)  # (B, H, T, Dh)
