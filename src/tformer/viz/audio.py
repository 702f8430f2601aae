"""What a speech model hears and where it listens, on one time axis in seconds.

* :func:`plot_filterbank`: an utterance's log-mel filterbank (time in seconds across, mel channel up), what the
  Conformer reads (Gulati et al., 2020, §3.1: 80 channels, 25 ms windows every 10 ms).
* :func:`plot_alignment`: the filterbank above, and below it how each output token ties to the encoder's frames:
  the decoder's encoder-decoder attention (§3.2.3; row i: the weights of the query that predicts character i, over
  the T' frames, each row summing to 1) or, for a CTC model, the frame-wise posteriors of every token (columns sum
  to 1). Encoder frame j spans ``frame_seconds`` from j x ``frame_seconds`` (4 feature frames with the 4x
  subsampling), so both panels share the time axis.

:func:`select_heads` picks what one panel shows from per-layer weights (layer and head numbered from 1).

Shape legend: T feature frames, M mel channels, T' encoder frames, H heads, R rows (output tokens).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from torch import Tensor

from tformer.errors import TformerError
from tformer.viz.figure import CELL_INCHES, check_guided_band, draw_guided_band, new_figure, set_title

ROW_INCHES = 0.13  # one row of a long transcript
SPACE = "\u2423"  # "␣": a space, shown as a visible token on an axis


def shown(token: str) -> str:
    """A token as an axis label: a space becomes a visible open box."""
    return SPACE if token == " " else token


def _draw_filterbank(ax, features: Tensor, hop_seconds: float, label: str):
    f = features.detach().float().cpu().numpy()  # (T, M)
    t, m = f.shape
    image = ax.imshow(f.T, origin="lower", aspect="auto", interpolation="nearest", cmap="magma",
                      extent=(0.0, t * hop_seconds, 0.0, float(m)))  # rows: channels, low frequencies at the bottom
    ax.set_ylabel("mel channel", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.figure.colorbar(image, ax=ax, label=label, pad=0.01)
    return image


def plot_filterbank(features: Tensor, hop_seconds: float, title: str, *, normalised: bool = False) -> Figure:
    """An utterance's filterbank: features (T, M), ``hop_seconds`` between frames.

    Args:
        normalised: the features are mean/variance normalised per channel (say so on the colour bar).
    """
    if features.dim() != 2 or min(features.shape) < 1:
        raise TformerError(f"expected features (T, M), got shape {tuple(features.shape)}")
    seconds = features.shape[0] * hop_seconds
    fig = new_figure(min(16.0, max(6.0, 2.0 + 2.5 * seconds)), 3.2)
    ax = fig.subplots()
    _draw_filterbank(ax, features, hop_seconds, "log-mel energy" + (" (normalised)" if normalised else ""))
    ax.set_xlabel("time (s)", fontsize=8)
    set_title(fig, title, f"{features.shape[1]} mel channels, {features.shape[0]} frames every "
                          f"{1000 * hop_seconds:.1f} ms ({seconds:.2f} s)")
    return fig


def select_heads(layers: Sequence[Tensor], layer: int | None = None, head: int | str = "mean"
                 ) -> tuple[Tensor, str]:
    """One panel's weights (R, T') from per-layer weights (H, R, T'), and what it shows.

    Args:
        layer: 1 .. len(layers); None = the last.
        head: a head number 1 .. H, or "mean" (their average).

    Raises:
        TformerError: no such layer or head.
    """
    layer = len(layers) if layer is None else layer
    if not 1 <= layer <= len(layers):
        raise TformerError(f"layer {layer} does not exist: use 1 to {len(layers)}")
    w = layers[layer - 1]  # (H, R, T')
    h = w.shape[0]
    where = f"layer {layer} of {len(layers)}"
    if head == "mean":
        return w.mean(dim=0), f"{where}, mean of {h} heads" if h > 1 else where
    if isinstance(head, int) and not isinstance(head, bool) and 1 <= head <= h:
        return w[head - 1], f"{where}, head {head} of {h}"
    raise TformerError(f"head {head!r} does not exist: use 1 to {h}, or 'mean'")


def plot_alignment(features: Tensor, hop_seconds: float, weights: Tensor, frame_seconds: float,
                   rows: Sequence[str], title: str, *, what: str = "cross-attention", details: str = "",
                   guided_band: float | None = None) -> Figure:
    """The filterbank (T, M) above and ``weights`` (R, T') below, one row per token of ``rows``, on one time axis.

    Args:
        hop_seconds: between feature frames; frame_seconds: between encoder frames.
        what: "cross-attention" (rows: the output token each query predicts) or "CTC posteriors" (rows: the
            vocabulary's tokens).
        details: a second title line (e.g. the layer and heads shown).
        guided_band: cross-attention only: overlay the guided attention loss's band of this g over the T' encoder
            frames (:func:`~tformer.viz.figure.draw_guided_band`); None = none.
    """
    check_guided_band(guided_band, what == "cross-attention")
    if weights.dim() != 2 or weights.shape[0] != len(rows):
        raise TformerError(f"expected weights ({len(rows)}, T'), got shape {tuple(weights.shape)}")
    seconds = max(features.shape[0] * hop_seconds, weights.shape[1] * frame_seconds)
    width = min(16.0, max(6.0, 2.0 + 2.5 * seconds))
    row_inches = CELL_INCHES if len(rows) <= 30 else ROW_INCHES  # a long transcript: smaller rows
    height = max(1.6, 0.6 + row_inches * len(rows))
    fig = new_figure(width, 2.2 + height + 1.0)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(2.2, height))
    _draw_filterbank(top, features, hop_seconds, "log-mel (normalised)")
    w = weights.detach().float().cpu().numpy()  # (R, T')
    image = bottom.imshow(w, aspect="auto", interpolation="nearest", cmap="viridis", vmin=0.0,
                          vmax=max(float(np.max(w)), 1e-9), extent=(0.0, w.shape[1] * frame_seconds,
                                                                    len(rows) - 0.5, -0.5))
    bottom.set_yticks(range(len(rows)), labels=[shown(r) for r in rows], parse_math=False)
    bottom.tick_params(axis="y", labelsize=8 if len(rows) <= 30 else 6, length=2)
    bottom.tick_params(axis="x", labelsize=8)
    bottom.set_xlabel("time (s)", fontsize=8)
    bottom.set_xlim(0.0, seconds)
    if what == "CTC posteriors":
        bottom.set_ylabel("token", fontsize=8)
        label = "P(token | frame) (each column sums to 1)"
    else:
        bottom.set_ylabel("query: predicting this character", fontsize=8)
        label = "attention weight (each row sums to 1)"
    if guided_band is not None:
        draw_guided_band(bottom, len(rows), w.shape[1], guided_band, column_width=frame_seconds, column_offset=0.5)
    fig.colorbar(image, ax=bottom, label=label, pad=0.01)
    set_title(fig, title, *([details] if details else []))
    return fig
