"""Attention maps of one sentence (§3.2.3: the three ways the model uses attention).

Each map is softmax(Q Kᵀ / sqrt(d_k)) of Eq. 1 for one head of one layer: row i holds how much
query i takes from each key, and the row sums to 1.

    kind           rows (queries)                   columns (keys)          weights per layer
    encoder        source tokens                    source tokens           (H, S, S)
    decoder_self   decoder input (BOS + output)     decoder input           (H, T, T), causal
    cross          output token being predicted     source tokens           (H, T, S)

The weights come from :meth:`tformer.Translator.attention` (a :class:`~tformer.translator.SentenceAttention`).
Layers and heads are numbered from 1, as in the titles.

Shape legend: H heads, S source tokens, T target tokens, Tq/Tk query/key tokens.
"""

from __future__ import annotations

import math

from matplotlib.figure import Figure
from torch import Tensor

from tformer.errors import TformerError
from tformer.translator import SentenceAttention
from tformer.viz.figure import CELL_INCHES, check_guided_band, draw_guided_band, heatmap, new_figure, set_title

KINDS = ("encoder", "decoder_self", "cross")
_TITLES = {
    "encoder": "Encoder self-attention",
    "decoder_self": "Decoder masked self-attention",
    "cross": "Encoder-decoder (cross-) attention",
}
_AXES = {  # (x label, y label)
    "encoder": ("key: source token", "query: source token"),
    "decoder_self": ("key: decoder input token", "query: decoder input token"),
    "cross": ("key: source token", "query: predicting this output token"),
}


def attention_weights(att: SentenceAttention, kind: str,
                      layer: int | None = None) -> tuple[Tensor, list[str], list[str]]:
    """One layer's weights with the tokens of its axes.

    Args:
        kind: "encoder", "decoder_self" or "cross".
        layer: 1 .. number of layers of that stack; None = the last.

    Returns:
        weights (H, Tq, Tk), the query tokens (rows) and the key tokens (columns).

    Raises:
        TformerError: unknown kind or layer.
    """
    layers = _layers(att, kind)
    layer = len(layers) if layer is None else layer
    if not 1 <= layer <= len(layers):
        stack = "encoder" if kind == "encoder" else "decoder"
        raise TformerError(f"layer {layer} does not exist: the {stack} has layers 1 to {len(layers)}")
    rows = {"encoder": att.source_tokens, "decoder_self": att.target_input_tokens,
            "cross": att.target_output_tokens}[kind]
    cols = att.source_tokens if kind in ("encoder", "cross") else att.target_input_tokens
    return layers[layer - 1], list(rows), list(cols)


def plot_attention(att: SentenceAttention, kind: str = "cross", layer: int | None = None,
                   head: int | str = "grid", guided_band: float | None = None) -> Figure:
    """A heatmap of attention weights with the tokens on both axes.

    Args:
        att: one sentence's weights, from :meth:`tformer.Translator.attention`.
        kind: "encoder", "decoder_self" or "cross" (see the module docstring).
        layer: 1 .. N; None = the last layer.
        head: a head number 1 .. H (one heatmap), "grid" (every head of the layer, one panel each,
            on one colour scale) or "mean" (the average over the heads).
        guided_band: cross only: overlay the guided attention loss's band of this g
            (:func:`~tformer.viz.figure.draw_guided_band`); None = none.

    Raises:
        TformerError: unknown kind, layer or head, or a band on a map that is not cross-attention.
    """
    check_guided_band(guided_band, kind == "cross")
    weights, rows, cols = attention_weights(att, kind, layer)  # (H, Tq, Tk)
    num_heads, num_layers = weights.shape[0], len(_layers(att, kind))
    layer = num_layers if layer is None else layer
    if head == "grid":
        panels = [(f"head {h + 1}", weights[h]) for h in range(num_heads)]
        what = f"all {num_heads} heads"
    elif head == "mean":
        panels = [(None, weights.mean(dim=0))]
        what = f"mean of the {num_heads} heads"
    elif isinstance(head, int) and not isinstance(head, bool) and 1 <= head <= num_heads:
        panels = [(None, weights[head - 1])]
        what = f"head {head} of {num_heads}"
    else:
        raise TformerError(f"head {head!r} does not exist: use 1 to {num_heads}, 'grid' or 'mean'")

    ncols = {1: 1, 2: 2, 3: 3, 4: 2, 6: 3, 8: 4}.get(len(panels), math.ceil(math.sqrt(len(panels))))
    nrows = math.ceil(len(panels) / ncols)
    panel_w = max(2.4, 0.9 + CELL_INCHES * len(cols))
    panel_h = max(2.0, 0.9 + CELL_INCHES * len(rows))
    fig = new_figure(max(6.0, ncols * panel_w + 1.2), nrows * panel_h + 1.2)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    vmax = float(max(w.max() for _, w in panels))
    marker = " (▁ starts a word)" if any(tok.startswith("▁") for tok in rows + cols) else ""
    for ax, (name, w) in zip(axes.flat, panels, strict=False):
        image = heatmap(ax, w, cols, rows, vmin=0.0, vmax=vmax)
        if guided_band is not None:
            draw_guided_band(ax, len(rows), len(cols), guided_band)
        if name:
            ax.set_title(name, fontsize=9)
        ax.set_xlabel(_AXES[kind][0] + marker, fontsize=8)
        ax.set_ylabel(_AXES[kind][1], fontsize=8)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    fig.colorbar(image, ax=axes, label="attention weight (each row sums to 1)", shrink=0.9)
    set_title(fig, f"{_TITLES[kind]}, layer {layer} of {num_layers}: {what}",
              f"source: {att.source!r}", f"output: {att.translation!r}")
    return fig


def _layers(att: SentenceAttention, kind: str) -> list[Tensor]:
    if kind not in KINDS:
        raise TformerError(f"unknown attention kind {kind!r}: use one of {', '.join(KINDS)}")
    return {"encoder": att.encoder, "decoder_self": att.decoder_self, "cross": att.decoder_cross}[kind]
