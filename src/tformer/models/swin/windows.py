"""The windows of the Swin Transformer (Liu et al., 2021, §3.2): partition and reverse, the cyclic shift, the
shift mask, and the relative positions inside a window.

Self-attention is computed inside non-overlapping M x M windows of the patch map (W-MSA). Every second block
shifts the windows by floor(M / 2) patches (SW-MSA). Rather than pad the extra windows that a shift makes, the
map is cyclically shifted up and left (``torch.roll``), partitioned as before, and rolled back afterwards; a
window of the rolled map may then hold patches that were not neighbours (they wrapped around the border), and
the shift mask keeps them apart (§3.2, "efficient batch computation for shifted configuration", Fig. 4).

Masks follow :mod:`tformer.nn.masks`: boolean, True = may attend.

Shape legend: B batch, Hf x Wf the patch map (a multiple of M after padding), C channels, M window side,
nW = (Hf / M)(Wf / M) windows per image, N = M^2 tokens per window.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["cyclic_shift", "pad_to_multiple", "region_labels", "relative_position_index", "shift_mask",
           "window_and_shift", "window_partition", "window_reverse"]


def window_and_shift(resolution: int, window_size: int) -> tuple[int, int]:
    """(M, shift) of a block of a stage on an R x R map: (window_size, floor(window_size / 2)), or, when the map is
    not bigger than a window, (R, 0): one window covers the whole map and there is nothing to shift (the
    reference implementation's rule). The shift applies to every second block only."""
    if resolution <= window_size:
        return resolution, 0
    return window_size, window_size // 2


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """x (B, Hf, Wf, C) padded with zeros at the bottom and right to multiples of ``multiple`` (as Hugging Face)."""
    pad_h = -x.shape[1] % multiple
    pad_w = -x.shape[2] % multiple
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))  # (B, Hf + pad_h, Wf + pad_w, C)
    return x


def window_partition(x: Tensor, m: int) -> Tensor:
    """x (B, Hf, Wf, C) -> (B * nW, N, C): the windows of each image in row-major order, tokens row-major in each."""
    b, h, w, c = x.shape
    x = x.view(b, h // m, m, w // m, m, c)  # (B, Hf/M, M, Wf/M, M, C)
    return x.transpose(2, 3).reshape(-1, m * m, c)  # (B, Hf/M, Wf/M, M, M, C) -> (B * nW, N, C)


def window_reverse(windows: Tensor, m: int, h: int, w: int) -> Tensor:
    """The inverse of :func:`window_partition`: windows (B * nW, N, C) -> (B, Hf, Wf, C) with Hf = h, Wf = w."""
    c = windows.shape[-1]
    x = windows.view(-1, h // m, w // m, m, m, c)  # (B, Hf/M, Wf/M, M, M, C)
    return x.transpose(2, 3).reshape(-1, h, w, c)  # (B, Hf/M, M, Wf/M, M, C) -> (B, Hf, Wf, C)


def cyclic_shift(x: Tensor, shift: int, *, reverse: bool = False) -> Tensor:
    """x (B, Hf, Wf, C) rolled up and left by ``shift`` patches (Fig. 4), or back down and right with ``reverse``."""
    if shift == 0:
        return x
    s = shift if reverse else -shift
    return torch.roll(x, shifts=(s, s), dims=(1, 2))


def region_labels(h: int, w: int, m: int, shift: int, device: torch.device | str | None = None) -> Tensor:
    """The region of each patch of the rolled Hf x Wf map, (Hf, Wf) int64 in 0..8.

    Along each axis of length L the roll leaves three bands: [0, L - M) (windows of unshifted neighbours),
    [L - M, L - shift) and [L - shift, L) (the patches that wrapped around from the other border). Patches of one
    window may attend to each other only when they are in the same band along both axes: label = 3 row band +
    column band.
    """
    def bands(length: int) -> Tensor:
        i = torch.arange(length, device=device)
        return (i >= length - m).long() + (i >= length - shift).long()  # (L,) in 0..2

    return bands(h)[:, None] * 3 + bands(w)[None, :]  # (Hf, 1) + (1, Wf) -> (Hf, Wf)


def shift_mask(h: int, w: int, m: int, shift: int, device: torch.device | str | None = None) -> Tensor | None:
    """The attention mask of SW-MSA on an Hf x Wf map, (nW, N, N) bool, True = may attend: a patch attends to
    the patches of its own window that share its region (:func:`region_labels`). None when ``shift`` is 0."""
    if shift == 0:
        return None
    labels = region_labels(h, w, m, shift, device)  # (Hf, Wf)
    per_window = window_partition(labels[None, :, :, None], m)[..., 0]  # (1, Hf, Wf, 1) -> (nW, N)
    return per_window[:, :, None] == per_window[:, None, :]  # (nW, N, 1) == (nW, 1, N) -> (nW, N, N)


def relative_position_index(m: int) -> Tensor:
    """Where each pair of window positions reads the bias table B̂ of Eq. 4, (N, N) int64 in [0, (2M - 1)^2).

    Position i = (y_i, x_i) and j have the offset (y_i - y_j, x_i - x_j), each in [-M + 1, M - 1]; shifted to
    [0, 2M - 2], the pair reads row (y_i - y_j + M - 1)(2M - 1) + (x_i - x_j + M - 1) of B̂ (§3.2).
    """
    ys, xs = torch.meshgrid(torch.arange(m), torch.arange(m), indexing="ij")  # (M, M) each
    ys, xs = ys.flatten(), xs.flatten()  # (N,): position i's row and column, row-major
    dy = ys[:, None] - ys[None, :] + m - 1  # (N, N) in [0, 2M - 2]
    dx = xs[:, None] - xs[None, :] + m - 1
    return dy * (2 * m - 1) + dx
