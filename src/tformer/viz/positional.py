"""The positional-encoding matrix and the dot-product similarity of positions (§3.5).

    PE(pos, 2i)   = sin(pos / 10000^(2i / d_model))
    PE(pos, 2i+1) = cos(pos / 10000^(2i / d_model))

Left: the table itself, one row per position, one column per dimension; the wavelengths grow
geometrically from 2π (dimension 0) to 10000 · 2π along the columns. Right: PE(p) · PE(q) for every
pair of positions. For the sinusoids it depends only on the offset p - q (a sum of cos(ω_i (p - q))),
which is why the paper expects the model to "easily learn to attend by relative positions".

Shape legend: L positions, D d_model.
"""

from __future__ import annotations

from matplotlib.figure import Figure
from torch import Tensor

from tformer.viz.figure import heatmap, new_figure, set_title


def plot_positional(table: Tensor, title: str = "Sinusoidal positional encoding (§3.5)") -> Figure:
    """Two heatmaps: the table PE (L, D) and the similarity PE PEᵀ (L, L).

    Args:
        table: (L, D) positional encodings, e.g. ``sinusoidal_table(100, 512)`` or a learned table.
        title: the figure's title.
    """
    table = table.detach().double().cpu()  # (L, D)
    length, d_model = table.shape
    similarity = table @ table.T  # (L, D) @ (D, L) -> (L, L)
    fig = new_figure(13.0, 5.6)
    ax_pe, ax_sim = fig.subplots(1, 2, width_ratios=[1.35, 1.0])
    bound = float(table.abs().max())
    image = heatmap(ax_pe, table, vmin=-bound, vmax=bound, cmap="RdBu_r")
    ax_pe.set_xlabel(_dimension_label(table))
    ax_pe.set_ylabel("position")
    ax_pe.set_title(f"PE matrix: {length} positions × d_model = {d_model}", fontsize=10)
    fig.colorbar(image, ax=ax_pe, label="PE(pos, dimension)", shrink=0.9)
    image = heatmap(ax_sim, similarity, cmap="viridis")
    ax_sim.set_aspect("equal")
    ax_sim.set_xlabel("position q")
    ax_sim.set_ylabel("position p")
    ax_sim.set_title("dot-product similarity PE(p) · PE(q)", fontsize=10)
    fig.colorbar(image, ax=ax_sim, label="PE(p) · PE(q)", shrink=0.9)
    set_title(fig, title, fontsize=12)
    return fig


def _dimension_label(table: Tensor) -> str:
    """Name the sinusoid layout from position 0, where sin(0) = 0 and cos(0) = 1."""
    row, half = table[0], table.shape[1] // 2
    if (row[0::2].abs() < 1e-6).all() and ((row[1::2] - 1).abs() < 1e-6).all():
        return "dimension (even: sin, odd: cos)"
    if (row[:half].abs() < 1e-6).all() and ((row[half:] - 1).abs() < 1e-6).all():
        return "dimension (first half: sin, second half: cos)"
    return "dimension"
