"""The windows of a Swin Transformer (Liu et al., 2021, §3.2), drawn on the patch grid.

* **W-MSA**: the map cut into M x M windows; attention stays inside each (Fig. 2, left).
* **SW-MSA**: the windows moved by floor(M / 2) patches (Fig. 2, right): the groups of patches that attend to
  each other, computed the efficient way (cyclic shift, the same windows, the shift mask) and drawn back on the
  unshifted grid, where they are the paper's shifted windows, cut at the borders.
* **Cyclic shift** (Fig. 4): the rolled map, coloured by region; a window of it may hold patches from up to four
  regions that were not neighbours.
* **Shift mask**: for every window of the rolled map, which of its N = M^2 patches may attend to which (white =
  may attend), the windows laid out as on the map.
* With an image and a block's attention weights: each patch coloured by the attention it receives from the
  queries of its own window (mean over queries and heads), over the image, with that block's windows drawn.

Shape legend: R x R patch map (Rp x Rp padded to a multiple of M), M window side, N = M^2, nW windows, H heads.
"""

from __future__ import annotations

import matplotlib
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from tformer.models.swin.windows import cyclic_shift, region_labels, shift_mask, window_reverse
from tformer.viz.figure import new_figure, set_title


def window_ids(rp: int, m: int) -> Tensor:
    """(Rp, Rp) int64: the index of the window each patch of the unshifted map falls in (row-major windows)."""
    i = torch.arange(rp) // m
    return i[:, None] * (rp // m) + i[None, :]


def shifted_groups(rp: int, m: int, shift: int) -> Tensor:
    """(Rp, Rp) int64: for each patch of the original map, its attention group under SW-MSA (patches with the same
    number attend to each other): the window of the rolled map it lands in and its region there, rolled back."""
    ids = window_ids(rp, m) * 9 + region_labels(rp, rp, m, shift)  # (Rp, Rp), on the rolled map
    back = cyclic_shift(ids[None, :, :, None], shift, reverse=True)[0, :, :, 0]  # (Rp, Rp), original positions
    _, dense = torch.unique(back, return_inverse=True)  # 0 .. groups - 1
    return dense


def received_attention(weights: Tensor, rp: int, m: int, shift: int) -> Tensor:
    """weights (nW, H, N, N) of one image -> (Rp, Rp): the attention each patch receives from the queries of its
    window, averaged over queries and heads, on the original (unrolled) map."""
    per_key = weights.mean(dim=(1, 2))  # (nW, N): mean over heads and queries
    rolled = window_reverse(per_key[..., None], m, rp, rp)  # (1, Rp, Rp, 1), the rolled map
    return cyclic_shift(rolled, shift, reverse=True)[0, :, :, 0]


def _grid(ax: Axes, rp: int, m: int, start: int = 0) -> None:
    """Window borders on an Rp x Rp grid of patches: windows begin at ``start`` (mod Rp) and every M after."""
    for pos in sorted({0, rp} | {(k * m + start) % rp for k in range(rp // m)}):
        ax.axhline(pos - 0.5, color="black", lw=1.2)
        ax.axvline(pos - 0.5, color="black", lw=1.2)
    ax.set_xlim(-0.5, rp - 0.5)
    ax.set_ylim(rp - 0.5, -0.5)
    ax.set_xticks([])
    ax.set_yticks([])


def _colours(labels: Tensor) -> np.ndarray:
    """A distinct colour per label (a shuffled qualitative palette, so neighbouring windows differ)."""
    rng = np.random.default_rng(0)
    palette = rng.permutation(np.linspace(0.05, 0.95, int(labels.max()) + 1))
    return palette[labels.numpy()]


def _mask_mosaic(rp: int, m: int, shift: int) -> np.ndarray:
    """The shift mask of every window, (nW, N, N), laid out as a (Rp/M * N) x (Rp/M * N) image, a gap between."""
    mask = shift_mask(rp, rp, m, shift)  # (nW, N, N) or None
    per_side, n = rp // m, m * m
    tiles = torch.ones(per_side * per_side, n, n, dtype=torch.bool) if mask is None else mask
    out = np.full((per_side * (n + 1) - 1, per_side * (n + 1) - 1), np.nan)
    for w in range(per_side * per_side):
        r, c = divmod(w, per_side)
        out[r * (n + 1): r * (n + 1) + n, c * (n + 1): c * (n + 1) + n] = tiles[w].numpy()
    return out


def plot_windows(resolution: int, window: int, shift: int, *, image: Tensor | None = None,
                 weights: Tensor | None = None, block_shift: int = 0, title: str = "") -> Figure:
    """The window pictures of a stage on an R x R patch map: window M, and the shift of its SW-MSA blocks
    (floor(M / 2); 0 when one window covers the map, which then has nothing to shift).

    ``image`` (C, S, S) in [0, 1] and ``weights`` (nW, H, N, N), one image's attention weights of this block, add
    a panel of the attention inside the windows over the image; ``block_shift`` is that block's shift (0 for W-MSA).
    """
    rp = -(-resolution // window) * window
    panels = 4 + (weights is not None)
    fig = new_figure(3.0 * panels, 3.4)
    axes = fig.subplots(1, panels)
    axes[0].imshow(_colours(window_ids(rp, window)), cmap="tab20", vmin=0, vmax=1, interpolation="nearest")
    _grid(axes[0], rp, window)
    axes[0].set_title(f"W-MSA: {window}x{window} windows", fontsize=8)
    s = shift
    axes[1].imshow(_colours(shifted_groups(rp, window, s)), cmap="tab20", vmin=0, vmax=1, interpolation="nearest")
    _grid(axes[1], rp, window, start=s)
    axes[1].set_title(f"SW-MSA: windows moved by {s}" if s else "no shift: one window covers the map", fontsize=8)
    axes[2].imshow(region_labels(rp, rp, window, s).numpy(), cmap="Pastel1", interpolation="nearest")
    _grid(axes[2], rp, window)
    axes[2].set_title(f"cyclic shift by {s}: regions (Fig. 4)", fontsize=8)
    gaps = matplotlib.colormaps["gray"].with_extremes(bad="tab:blue")  # the gaps between windows
    axes[3].imshow(_mask_mosaic(rp, window, s), cmap=gaps, vmin=0, vmax=1, interpolation="nearest")
    axes[3].set_xticks([])
    axes[3].set_yticks([])
    axes[3].set_title("shift mask per window (white: may attend)", fontsize=8)
    if weights is not None:
        _attention_panel(axes[4], resolution, window, block_shift, image, weights)
    set_title(fig, title or f"Swin windows on a {resolution}x{resolution} patch map (§3.2)")
    return fig


def _attention_panel(ax: Axes, r: int, m: int, shift: int, image: Tensor | None, weights: Tensor) -> None:
    rp = -(-r // m) * m
    att = received_attention(weights.detach().float().cpu(), rp, m, shift).numpy()  # (Rp, Rp)
    if image is not None:
        img = image.detach().float().cpu().numpy()
        ax.imshow(img[0] if img.shape[0] == 1 else np.transpose(img, (1, 2, 0)), cmap="gray_r", vmin=0, vmax=1,
                  extent=(-0.5, r - 0.5, r - 0.5, -0.5))  # the image covers the R real patches
    ax.imshow(att, cmap="magma", alpha=0.6 if image is not None else 1.0, interpolation="nearest")
    _grid(ax, rp, m, start=shift)
    ax.set_title("attention received inside each window" + (" (shifted)" if shift else ""), fontsize=8)
