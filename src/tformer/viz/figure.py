"""What every picture shares: a figure made without pyplot, a labelled heatmap, and atomic saving.

Figures are plain ``matplotlib.figure.Figure`` objects: no pyplot, no global state, no display
(PNG goes through Agg). :func:`save_figure` picks the format from the file's suffix and writes it
atomically, so a failed save never leaves half a picture. SVG keeps its text as text, so the
tokens on the axes can be searched and copied.
"""

from __future__ import annotations

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
