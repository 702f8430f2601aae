"""Scaled dot-product attention (Eq. 1, §3.2.1) and multi-head attention (§3.2.2).

    Attention(Q, K, V) = softmax(Q Kᵀ / sqrt(d_k)) V                                  (Eq. 1)
    MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O,
        head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)                                 (§3.2.2)

Two paths compute Eq. 1 and are tested equal: :func:`attention_reference`, written out as in
the paper, and :func:`attention_fast`, PyTorch's fused ``scaled_dot_product_attention``
(flash / memory-efficient kernels where the device has them). The reference path is used
when attention weights are asked for, since the fused kernels never materialise them.

Masks follow :mod:`tformer.nn.masks`: boolean, True = may attend.

Two options serve T5 (Raffel et al., 2020): ``score_bias``, an additive float (1, H, Tq, Tk) added to the
scores before the mask (the relative position bias of :class:`tformer.nn.embedding.RelativePositionBias`),
and ``scale``, the factor of Q Kᵀ (default 1 / sqrt(d_k); T5 uses 1). On the fast path the bias and
the boolean masks become one float ``attn_mask`` (-inf where a query may not attend).

For long inputs :class:`MultiHeadAttention` computes Eq. 1 as its :class:`~tformer.config.AttentionConfig`
says: full (the fast path above), chunked (exact, memory linear in the length), sliding window, Linformer or
Reformer's LSH attention (:mod:`tformer.nn.long_attention`).

Shape legend: B batch, H heads, Tq queries, Tk keys, D d_model, Dh = d_k = d_v (D / H unless set).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tformer.config import AttentionConfig, ConfigError
from tformer.nn.cache import KVCache, StaticKV
from tformer.nn.long_attention import (
    NO_WEIGHTS,
    LinformerProjection,
    attention_chunked,
    attention_lsh,
    attention_shared_qk,
    attention_sliding,
    sliding_window_mask,
)
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
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = q @ k.transpose(-2, -1) * scale  # (B, H, Tq, Tk)
    if score_bias is not None:
        scores = scores + score_bias
    if causal:
        mask = combine(mask, causal_mask(q.shape[-2], k.shape[-2], device=q.device))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)  # (B, H, Tq, Tk), rows sum to 1
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ v, weights  # (B, H, Tq, Dh)


def attention_fast(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, *, causal: bool = False,
    dropout_p: float = 0.0, score_bias: Tensor | None = None, scale: float | None = None,
) -> Tensor:
    """Eq. 1 through ``torch.nn.functional.scaled_dot_product_attention``; same contract, no weights."""
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


class MultiHeadAttention(nn.Module):
    """h parallel attention heads of width d_k = d_v = d_model / h, then the output projection W^O.

    Used three ways (§3.2.3): encoder self-attention, decoder masked self-attention (``causal=True``)
    and encoder-decoder attention (``memory`` = the encoder output).

    Options (T5): ``d_head`` sets d_k = d_v when it is not d_model / h; ``bias=False`` drops the
    projections' biases; ``scale_scores=False`` leaves Q Kᵀ unscaled.

    ``attention`` (:class:`~tformer.config.AttentionConfig`) picks how Eq. 1 is computed for long inputs
    (:mod:`tformer.nn.long_attention`); None = full. Kind "lsh" is shared-QK attention (Reformer §2): the
    keys are the normalised queries, so such a layer has no W^K (``k_proj`` is None). Kind "linformer" owns
    the projections E, F (``linformer``), over ``max_len`` positions. In incremental decoding (a
    :class:`KVCache` holding earlier positions) sliding attention uses a dense band mask and lsh attention
    attends densely to the cached keys (no hashing): the new queries are few.
    """

    def __init__(self, d_model: int, num_heads: int, attention_dropout: float = 0.0, *, d_head: int | None = None,
                 bias: bool = True, scale_scores: bool = True, attention: AttentionConfig | None = None,
                 max_len: int | None = None) -> None:
        super().__init__()
        if d_head is None and d_model % num_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.d_head = d_model // num_heads if d_head is None else d_head
        self.scale = None if scale_scores else 1.0  # None = SDPA's 1 / sqrt(d_k)
        self.attention_dropout = attention_dropout
        self.attention = AttentionConfig() if attention is None else attention
        kind = self.attention.kind
        inner = num_heads * self.d_head  # h * d_k, = d_model unless d_head is set
        # W^Q, W^K, W^V for all heads at once (the h matrices W_i side by side), and W^O.
        self.q_proj = nn.Linear(d_model, inner, bias=bias)
        self.k_proj = None if kind == "lsh" else nn.Linear(d_model, inner, bias=bias)  # lsh: keys = queries
        self.v_proj = nn.Linear(d_model, inner, bias=bias)
        self.out_proj = nn.Linear(inner, d_model, bias=bias)
        self.linformer = None
        if kind == "linformer":
            if max_len is None:
                raise ConfigError("linformer attention needs max_len, the positions its E and F cover")
            self.linformer = LinformerProjection(self.attention.linformer_k, max_len)

    def _split_heads(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, self.d_head).transpose(1, 2)  # (B, T, D) -> (B, H, T, Dh)

    def project_kv(self, x: Tensor) -> StaticKV:
        """Keys and values of ``x`` (B, Tk, D), split into heads: computed once per source for cross-attention."""
        if self.k_proj is None:
            raise ConfigError("lsh attention is self-attention only (its keys are its queries)")
        return StaticKV(self._split_heads(self.k_proj(x)), self._split_heads(self.v_proj(x)))

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        mask: Tensor | None = None,
        *,
        causal: bool = False,
        cache: KVCache | StaticKV | None = None,
        need_weights: bool = False,
        score_bias: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from ``x`` (B, Tq, D) to ``memory`` (B, Tk, D), or to ``x`` itself when memory is None.

        Args:
            mask: boolean, broadcastable to (B, H, Tq, Tk), True = may attend.
            causal: also forbid attending to later positions (decoder self-attention).
            cache: a :class:`KVCache` to append this call's keys/values to (incremental
                self-attention), or a :class:`StaticKV` of precomputed cross-attention keys/values.
            need_weights: also return the attention weights (B, H, Tq, Tk) (uses the reference path).
            score_bias: float (1, H, Tq, Tk) added to the scores (relative position bias), or None.

        Returns:
            (B, Tq, D) output and the weights or None.
        """
        b, t_q, _ = x.shape
        q = self._split_heads(self.q_proj(x))  # (B, H, Tq, Dh)
        if isinstance(cache, StaticKV):
            k, v = cache.k, cache.v  # (B, H, Tk, Dh)
        else:
            if self.k_proj is None and memory is not None:
                raise ConfigError("lsh attention is self-attention only (its keys are its queries)")
            kv = (self.project_kv(x if memory is None else memory) if self.k_proj is not None
                  else StaticKV(F.normalize(q, dim=-1), self._split_heads(self.v_proj(x))))  # lsh: shared QK
            k, v = (kv.k, kv.v) if cache is None else cache.append(kv.k, kv.v)  # (B, H, Tk, Dh)
        p = self.attention_dropout if self.training else 0.0
        options = dict(causal=causal, dropout_p=p, score_bias=score_bias, scale=self.scale)
        kind = self.attention.kind
        if score_bias is not None and kind not in ("full", "chunked"):
            raise ConfigError(f"relative positions need full or chunked attention, got {kind!r}")
        if need_weights:
            if kind in NO_WEIGHTS:
                raise ConfigError(f"{kind} attention forms no attention weights; ask for them with full, chunked "
                                  "or sliding attention")
            if kind == "sliding":  # the weights the model really uses: inside the band only
                mask = combine(mask, sliding_window_mask(t_q, k.shape[-2], self.attention.window, device=q.device))
            out, weights = attention_reference(q, k, v, mask, **options)
        else:
            out, weights = self._attend(q, k, v, mask, **options), None
        out = out.transpose(1, 2).reshape(b, t_q, -1)  # (B, H, Tq, Dh) -> (B, Tq, H*Dh): Concat(head_1..head_h)
        return self.out_proj(out), weights

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, **options) -> Tensor:
        """Eq. 1 as ``self.attention`` says (no weights): q (B, H, Tq, Dh), k/v (B, H, Tk, Dh) -> (B, H, Tq, Dh)."""
        a = self.attention
        if a.kind == "chunked":
            return attention_chunked(q, k, v, mask, chunk_size=a.chunk_size, **options)
        if a.kind == "sliding":
            return attention_sliding(q, k, v, mask, window=a.window, **options)
        if a.kind == "linformer":
            return self.linformer(q, k, v, mask, **options)
        if a.kind == "lsh":
            options.pop("score_bias")
            if q.shape[-2] != k.shape[-2]:  # incremental decoding: a few new queries against the cached keys
                return attention_shared_qk(q, k, v, mask, **options)
            # Fresh rotations for every training call (drawn from torch's seeded RNG); fixed ones in evaluation.
            seed = int(torch.randint(2**62, ())) if self.training else a.lsh_seed
            return attention_lsh(q, v, mask, bucket_size=a.lsh_bucket_size, n_rounds=a.lsh_rounds, seed=seed,
                                 **options)
        return attention_fast(q, k, v, mask, **options)
