"""Key/value caches for incremental (token-by-token) decoding.

When the decoder emits token t, self-attention needs the keys and values of tokens 0..t, and
cross-attention needs those of the source. Recomputing them at every step makes decoding
quadratic in work per token; the caches below make each step cost one new position:

* :class:`KVCache` holds one decoder layer's self-attention keys/values and grows by one
  position per step (preallocated, doubling, so appending does not copy the past each step).
* :class:`StaticKV` holds one layer's cross-attention keys/values, computed once per source.
* :class:`DecoderCache` bundles them for the whole decoder stack with the source padding mask,
  and can reorder or drop batch rows (beam search, finished sentences).

Shape legend: B batch rows, H heads, T decoded length, S source length, Dh head width.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


class KVCache:
    """Self-attention keys/values of one layer for the positions decoded so far."""

    def __init__(self) -> None:
        self._k: Tensor | None = None  # (B, H, capacity, Dh)
        self._v: Tensor | None = None
        self.length = 0

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Add the new positions' k, v (B, H, t, Dh); return all of them (B, H, length + t, Dh)."""
        t = k.shape[2]
        if self._k is None or self.length + t > self._k.shape[2]:
            capacity = max(16, 2 * (self.length + t))
            new_k = k.new_empty(k.shape[0], k.shape[1], capacity, k.shape[3])
            new_v = v.new_empty(v.shape[0], v.shape[1], capacity, v.shape[3])
            if self._k is not None and self.length:
                new_k[:, :, : self.length] = self._k[:, :, : self.length]
                new_v[:, :, : self.length] = self._v[:, :, : self.length]
            self._k, self._v = new_k, new_v
        self._k[:, :, self.length : self.length + t] = k
        self._v[:, :, self.length : self.length + t] = v
        self.length += t
        return self._k[:, :, : self.length], self._v[:, :, : self.length]

    def select(self, index: Tensor) -> None:
        """Keep batch rows ``index`` (B',) in that order (reorder beams, drop finished rows)."""
        if self._k is not None:
            self._k = self._k.index_select(0, index)
            self._v = self._v.index_select(0, index)


@dataclass
class StaticKV:
    """Cross-attention keys/values of one layer, computed once from the encoder output."""

    k: Tensor  # (B, H, S, Dh)
    v: Tensor  # (B, H, S, Dh)

    def select(self, index: Tensor) -> None:
        self.k = self.k.index_select(0, index)
        self.v = self.v.index_select(0, index)


@dataclass
class DecoderCache:
    """Everything the decoder needs to extend its outputs by one (or a few) positions."""

    self_kv: list[KVCache]
    cross_kv: list[StaticKV]
    memory_mask: Tensor  # (B, 1, 1, S) True = real source token
    src: Tensor | None = None  # (B, S) source ids, for the copy mechanism

    @property
    def length(self) -> int:
        """Number of target positions already decoded (the next position's index)."""
        return self.self_kv[0].length

    @property
    def batch_size(self) -> int:
        return self.memory_mask.shape[0]

    def select(self, index: Tensor) -> None:
        """Keep batch rows ``index`` (B',), in that order, in every cached tensor."""
        index = index.to(self.memory_mask.device)
        for c in self.self_kv:
            c.select(index)
        for c in self.cross_kv:
            c.select(index)
        self.memory_mask = self.memory_mask.index_select(0, index)
        if self.src is not None:
            self.src = self.src.index_select(0, index)

    def reorder_targets(self, index: Tensor) -> None:
        """Keep rows ``index`` (B',) of the self-attention caches only, where each new row shares its source
        with the old one (beams of one sentence): the cross-attention keys/values and the source mask are
        equal across such rows, so they are not copied."""
        index = index.to(self.memory_mask.device)
        for c in self.self_kv:
            c.select(index)

    def repeat_interleave(self, n: int) -> None:
        """Repeat every row n times (row b becomes rows b*n .. b*n+n-1): one row per beam."""
        index = torch.arange(self.batch_size, device=self.memory_mask.device).repeat_interleave(n)
        self.select(index)
