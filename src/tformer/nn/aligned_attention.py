"""Encoder-decoder attention whose target position i reads the alignment that position i-1 left: the base of
location-aware attention (:mod:`tformer.nn.location_attention`) and monotonic attention
(:mod:`tformer.nn.monotonic_attention`).

Such attention is a recurrence over the target positions: the weights of position i depend on those of i-1.
Within one decoder layer the queries of every position are known before its encoder-decoder attention runs
(they come from the layer's self-attention, which never reads this sub-layer's output), so the content scores
(B, H, T, S) are formed for all positions at once and only the alignment recurrence runs position by position,
over (B, H, S) tensors. Teacher forcing runs that recurrence exactly, from the first target position; cached
decoding carries the last position's alignment in the cache (:class:`~tformer.nn.cache.AlignedKV`) and continues
it, so cached decoding equals full recomputation, as for every other attention.

Shape legend: B batch, H heads, T target positions (new ones when cached), S source length, D d_model,
Dh head width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from tformer.config import ConfigError
from tformer.nn.attention import Heads, MultiHeadAttention
from tformer.nn.cache import AlignedKV, KVCache, StaticKV

__all__ = ["AlignedAttention"]


class AlignedAttention(MultiHeadAttention):
    """Multi-head encoder-decoder attention (§3.2.2's projections W^Q, W^K, W^V, W^O, saved under the same names)
    whose weights come from :meth:`align`, a recurrence over the target positions; a subclass defines it.

    The output is Concat(head_1..head_h) W^O with head_h = A_h V_h, where A_h (T, S) is :meth:`align`'s.
    Attention dropout, when set, drops weights of the output only; the recurrence reads the weights undropped.
    """

    def project_kv(self, x: Tensor) -> AlignedKV:
        """Keys and values of the source ``x`` (B, S, D), with an empty alignment state for cached decoding."""
        kv = super().project_kv(x)
        return AlignedKV(kv.k, kv.v)

    def initial_state(self, memory_mask: Tensor) -> dict[str, Tensor]:
        """The alignment state before the first target position, from the source padding mask ``memory_mask``
        (B, 1, 1, S) alone (never a decoding window): what :meth:`Decoder.start` seeds the cache with. Empty here
        (:meth:`align` starts from a fixed state); a subclass whose start depends on the source overrides it."""
        return {}

    def align(self, q: Tensor, k: Tensor, allowed: Tensor, state: dict[str, Tensor]) -> Tensor:
        """The attention weights (B, H, T, S) of queries q (B, H, T, Dh) over keys k (B, H, S, Dh), zero where
        ``allowed`` (B, 1, T, S) is False; ``state`` holds the alignment the previous position left (empty: none
        yet) and is updated in place to the alignment of the last of these positions."""
        raise NotImplementedError

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
        weight_heads: Heads | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from the target positions ``x`` (B, T, D) to the source ``memory`` (B, S, D), or to the cached
        source keys/values ``cache`` (whose alignment state, if it is an :class:`AlignedKV`, continues).

        Args:
            mask: boolean (B, 1, 1, S) or (B, 1, T, S), True = may attend (the source padding, a window).
            causal: unused (encoder-decoder attention sees the whole source).
            need_weights: also return the weights (B, H, T, S); weight_heads: else those of these heads only.

        Returns:
            (B, T, D) output and the weights or None.
        """
        if score_bias is not None:
            raise ConfigError(f"{type(self).__name__} is encoder-decoder attention: it takes no score bias")
        if memory is None and not isinstance(cache, StaticKV):
            raise ValueError(f"{type(self).__name__} attends to a source: give memory or its cached keys/values")
        b, t, _ = x.shape
        q = self._split_heads(self.q_proj(x))  # (B, H, T, Dh)
        kv = cache if isinstance(cache, StaticKV) else self.project_kv(memory)  # (B, H, S, Dh) each
        s = kv.k.shape[2]
        allowed = (torch.ones(b, 1, t, s, dtype=torch.bool, device=x.device) if mask is None
                   else mask.expand(b, 1, t, s))  # (B, 1, T, S)
        state = kv.state if isinstance(kv, AlignedKV) else {}
        weights = self.align(q, kv.k, allowed, state)  # (B, H, T, S)
        p = self.attention_dropout if self.training else 0.0
        out = (F.dropout(weights, p) if p > 0 else weights) @ kv.v  # (B, H, T, Dh)
        out = out.transpose(1, 2).reshape(b, t, -1)  # (B, H, T, Dh) -> (B, T, H*Dh): Concat(head_1..head_h)
        returned = weights if need_weights else None if weight_heads is None else weights[:, weight_heads]
        return self.out_proj(out), returned
