"""Key/value caches for incremental (token-by-token) decoding.

When the decoder emits token t, self-attention needs the keys and values of tokens 0..t, and
cross-attention needs those of the source. Recomputing them at every step makes decoding
quadratic in work per token; the caches below make each step cost one new position:

* :class:`KVCache` holds one decoder layer's self-attention keys/values and grows by one
  position per step (preallocated, doubling, so appending does not copy the past each step).
* :class:`StaticKV` holds one layer's cross-attention keys/values, computed once per source;
  :class:`AlignedKV` also the alignment the previous target position left (location-aware and monotonic
  attention, whose next step reads it): target-side state, reordered with the beams.
* :class:`DecoderCache` bundles them for the whole decoder stack with the source padding mask,
  and can reorder or drop batch rows (beam search, finished sentences).
* :class:`MonotonicWindow` (optional, a decoding constraint any encoder-decoder can use): each row's
  cross-attention may see only [focus - back, focus + ahead] of the source, where the focus is the peak
  of the previous step's attention and never moves backwards. The cache carries each row's focus.

Shape legend: B batch rows, H heads, T decoded length, S source length, Dh head width.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from tformer.nn.masks import monotonic_window_mask


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

    def reorder_targets(self, index: Tensor) -> None:
        """Nothing to do: keys and values are the source's, equal across the beams of one sentence."""


@dataclass
class AlignedKV(StaticKV):
    """A layer's cross-attention keys/values and the alignment the previous target position left: the previous
    step's weights (location-aware attention) or the expected alignment or hard position (monotonic attention),
    each (B, ...) by name; empty before the first step. It depends on the target, so it follows the beams."""

    state: dict[str, Tensor] = field(default_factory=dict)

    def select(self, index: Tensor) -> None:
        super().select(index)
        self.reorder_targets(index)

    def reorder_targets(self, index: Tensor) -> None:
        """Keep the alignment state of rows ``index`` (B',), in that order (the keys/values stay as they are)."""
        self.state = {name: t.index_select(0, index) for name, t in self.state.items()}


@dataclass(frozen=True)
class MonotonicWindow:
    """The monotonic window of decoding: the source positions [focus - back, focus + ahead] may be attended to.

    The focus of a row starts at source position 0; after each step it moves to the peak of that step's
    cross-attention (the decoder's last layer, averaged over heads) if the peak lies ahead of it, and never
    moves backwards. A window wider than the source both ways is plain decoding.
    """

    ahead: int
    back: int = 1

    def __post_init__(self) -> None:
        # ahead = 0 would freeze the focus: the peak could never lie ahead of it, so the window would never move
        if self.ahead < 1 or self.back < 0:
            raise ValueError(f"the monotonic window needs ahead >= 1 and back >= 0, got ahead={self.ahead}, "
                             f"back={self.back}")


@dataclass
class DecoderCache:
    """Everything the decoder needs to extend its outputs by one (or a few) positions."""

    self_kv: list[KVCache]
    cross_kv: list[StaticKV]
    memory_mask: Tensor  # (B, 1, 1, S) True = real source token
    src: Tensor | None = None  # (B, S) source ids, for the copy mechanism
    window: MonotonicWindow | None = None  # the decoding constraint, or None
    focus: Tensor | None = None  # (B,) int64 source position of each row's window (with ``window``)
    # the entries of cross_kv that carry target-side state: the only ones beam reordering touches (none for dot)
    aligned_kv: list[AlignedKV] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.aligned_kv = [c for c in self.cross_kv if isinstance(c, AlignedKV)]

    @property
    def length(self) -> int:
        """Number of target positions already decoded (the next position's index)."""
        return self.self_kv[0].length

    @property
    def batch_size(self) -> int:
        return self.memory_mask.shape[0]

    def constrain(self, window: MonotonicWindow) -> None:
        """Decode under ``window`` from now on, each row's focus at source position 0."""
        self.window = window
        self.focus = torch.zeros(self.batch_size, dtype=torch.long, device=self.memory_mask.device)

    def cross_mask(self) -> Tensor:
        """What the next position's cross-attention may see: the source padding mask, within the window if any,
        (B, 1, 1, S)."""
        if self.window is None:
            return self.memory_mask
        s = self.memory_mask.shape[-1]
        return self.memory_mask & monotonic_window_mask(self.focus, s, self.window.back, self.window.ahead)

    def advance_focus(self, weights: Tensor) -> None:
        """Move each row's focus to the peak of the new position's cross-attention ``weights`` (B, H, 1, S)
        (averaged over heads) where it lies ahead; never back."""
        peak = weights[:, :, -1].mean(dim=1).argmax(dim=-1)  # (B, H, 1, S) -> (B, S) -> (B,)
        self.focus = torch.maximum(self.focus, peak)

    def select(self, index: Tensor) -> None:
        """Keep batch rows ``index`` (B',), in that order, in every cached tensor."""
        index = index.to(self.memory_mask.device)
        if self.focus is not None:
            self.focus = self.focus.index_select(0, index)
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
        equal across such rows, so they are not copied (an alignment state of :class:`AlignedKV` is)."""
        index = index.to(self.memory_mask.device)
        for c in self.self_kv:
            c.select(index)
        for c in self.aligned_kv:  # only an alignment state moves; keys/values stay
            c.reorder_targets(index)
        if self.focus is not None:  # where each beam's window is: target-side state
            self.focus = self.focus.index_select(0, index)

    def repeat_interleave(self, n: int) -> None:
        """Repeat every row n times (row b becomes rows b*n .. b*n+n-1): one row per beam."""
        index = torch.arange(self.batch_size, device=self.memory_mask.device).repeat_interleave(n)
        self.select(index)
