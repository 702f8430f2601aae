"""What every picture shares: a figure made without pyplot, a labelled heatmap, the guided attention band over an
alignment, and atomic saving.

Figures are plain ``matplotlib.figure.Figure`` objects: no pyplot, no global state, no display
(PNG goes through Agg). :func:`save_figure` picks the format from the file's suffix and writes it
atomically, so a failed save never leaves half a picture. SVG keeps its text as text, so the
tokens on the axes can be searched and copied.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

from tformer.errors import TformerError
from tformer.io.files import atomic_open

FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
CELL_INCHES = 0.26  # one token's row or column in a heatmap


def new_figure(width: float, height: float) -> Figure:
    """A figure of ``width`` x ``height`` inches with constrained layout (labels never overlap panels)."""
    return Figure(figsize=(width, height), layout="constrained")


def set_title(fig: Figure, title: str, *details: str, fontsize: float = 10) -> None:
    """The figure's title, then ``details`` (e.g. the sentence), each wrapped to the figure's width, shown as
    written (no mathematical notation)."""
    chars = max(20, int(fig.get_figwidth() * 72 / (0.6 * fontsize)))  # about 0.6 em per character
    lines = [textwrap.fill(line, chars) for line in (title, *details)]
    fig.suptitle("\n".join(lines), fontsize=fontsize, parse_math=False)


def heatmap(
    ax: Axes, data, x_labels: Sequence[str] | None = None, y_labels: Sequence[str] | None = None, *,
    cmap: str = "viridis", vmin: float | None = None, vmax: float | None = None,
) -> AxesImage:
    """Draw ``data`` (rows, columns) as cells, row 0 at the top, with one tick label per row and column.

    Labels are shown as written: ``$`` or ``_`` in a token never turns into mathematical notation.
    """
    data = np.asarray(data, dtype=np.float64)  # (rows, columns)
    image = ax.imshow(data, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
    if x_labels is not None:
        ax.set_xticks(range(len(x_labels)), labels=list(x_labels), rotation=90, parse_math=False)
    if y_labels is not None:
        ax.set_yticks(range(len(y_labels)), labels=list(y_labels), parse_math=False)
    ax.tick_params(length=2, labelsize=8)
    return image


def guided_band(rows: int, columns: int, sigma: float, points: int = 200) -> dict[str, np.ndarray]:
    """Where the guided attention loss (Tachibana et al., 2017; :mod:`tformer.training.guided_attention`) is cheap
    on an alignment of ``rows`` output steps t (of T) by ``columns`` inputs n (of N): for t from -1/2 to T - 1/2,
    the diagonal n/N = t/T and the two edges where W_nt = 1 - exp(-(n/N - t/T)^2 / (2 g^2)) = 1/2, that is
    n/N = t/T -/+ g sqrt(2 ln 2). Returns {"t", "diagonal", "low", "high"} (the n of each t, in cells; not
    clipped)."""
    t = np.linspace(-0.5, rows - 0.5, points)
    centre = t / rows * columns  # n where n/N = t/T
    half = sigma * math.sqrt(2.0 * math.log(2.0)) * columns  # the half-width of the W < 1/2 band, in cells
    return {"t": t, "diagonal": centre, "low": centre - half, "high": centre + half}


def check_guided_band(sigma: float | None, cross_attention: bool) -> None:
    """A band (``sigma`` not None) is drawn on cross-attention only, with g > 0: else a one-line TformerError."""
    if sigma is not None and (not cross_attention or sigma <= 0):
        raise TformerError(f"the guided band (g = {sigma}) is drawn on cross-attention only, with g > 0")


def draw_guided_band(ax: Axes, rows: int, columns: int, sigma: float, *, column_width: float = 1.0,
                     column_offset: float = 0.0) -> None:
    """Overlay :func:`guided_band` on an alignment drawn with rows top to bottom: the diagonal dashed, the
    W = 1/2 edges dotted, in white. Column n is centred at (n + ``column_offset``) x ``column_width`` on the x axis
    (a heatmap: 0 and 1; a time axis of frames starting at 0 s: 1/2 and the frame's seconds)."""
    band = guided_band(rows, columns, sigma)
    xlim, ylim = ax.get_xlim(), ax.get_ylim()
    for key, style in (("diagonal", "--"), ("low", ":"), ("high", ":")):
        ax.plot((band[key] + column_offset) * column_width, band["t"], style, color="white", linewidth=1.0,
                label=f"guided band, g = {sigma:g} (W = 1/2)" if key == "low" else None)
    ax.set_xlim(xlim)  # the lines run past the cells: keep the picture's frame
    ax.set_ylim(ylim)
    ax.legend(loc="lower left", fontsize=7, framealpha=0.6)


def picture_format(path: str | os.PathLike) -> str:
    """The format for ``path`` ("png", "svg" or "pdf"), checked before any work is done.

    Raises:
        TformerError: the suffix is not .png, .svg or .pdf, or the folder does not exist.
    """
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise TformerError(f"cannot tell the picture format from {path.name!r}: use a .png, .svg or .pdf name")
    if not path.parent.is_dir():
        raise TformerError(f"folder not found for the picture: {path.parent}")
    return fmt


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 150) -> Path:
    """Write ``fig`` to ``path`` as PNG, SVG or PDF, chosen by the suffix, atomically.

    Returns:
        The path written.

    Raises:
        TformerError: the suffix is not .png, .svg or .pdf, or the folder does not exist.
    """
    path = Path(path)
    fmt = picture_format(path)
    metadata = {"svg": {"Date": None}, "pdf": {"CreationDate": None}}.get(fmt)  # same figure, same bytes
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "tformer"}), atomic_open(path) as f:
        fig.savefig(f, format=fmt, dpi=dpi, metadata=metadata)
    return path
