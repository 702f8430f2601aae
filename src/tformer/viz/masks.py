"""The attention masks of a batch, as the model builds them (§3.2.3; convention in :mod:`tformer.nn.masks`).

A mask is boolean and True where a query may attend to a key; False gets -inf before the softmax.

    where                       mask                                   seen by query x key
    encoder self-attention      padding_mask(src)        (B, 1, 1, S)  (S, S) per sentence
    decoder self-attention      causal_mask(T)           (T, T)        (T, T), the same for every sentence
    encoder-decoder attention   padding_mask(src)        (B, 1, 1, S)  (T, S) per sentence

The decoder's self-attention masks only the future: padded target positions come after every real
one, so no real query can see them, and the loss ignores the padded queries.

Shape legend: B batch, S source length, T target length.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from torch import Tensor

from tformer.data.batching import collate
from tformer.errors import TformerError
from tformer.nn.masks import causal_mask, padding_mask
from tformer.viz.figure import CELL_INCHES, heatmap, new_figure

if TYPE_CHECKING:
    from tformer.translator import Translator

_ALLOWED, _BLOCKED = "#2b6cb0", "#e2e8f0"
_CMAP = ListedColormap([_BLOCKED, _ALLOWED])  # False, True


@dataclass
class BatchMasks:
    """The masks of one padded batch, each full-size for one sentence (query x key)."""

    padding: Tensor  # (B, S) True = real source token: padding_mask(src)[:, 0, 0]
    encoder: Tensor  # (B, S, S) encoder self-attention
    decoder_self: Tensor  # (T, T) decoder self-attention, the same for every sentence
    cross: Tensor  # (B, T, S) encoder-decoder attention


def batch_masks(src: Tensor, tgt_in: Tensor, pad_id: int) -> BatchMasks:
    """The masks :class:`tformer.Transformer` uses for ``src`` (B, S) and ``tgt_in`` (B, T), broadcast
    to the (query, key) grid each attention sees."""
    (b, s), t = src.shape, tgt_in.shape[1]
    src_mask = padding_mask(src, pad_id)  # (B, 1, 1, S), as Transformer.encode and .decode build it
    return BatchMasks(
        padding=src_mask[:, 0, 0],  # (B, 1, 1, S) -> (B, S)
        encoder=src_mask[:, 0].expand(b, s, s),  # (B, 1, S) -> (B, S, S)
        decoder_self=causal_mask(t),  # (T, T), as attention_reference adds it for causal=True
        cross=src_mask[:, 0].expand(b, t, s),  # (B, 1, S) -> (B, T, S)
    )


def sentence_batch(translator: Translator, texts: Sequence[str], targets: Sequence[str] | None = None,
                   ) -> tuple[Tensor, Tensor, list[list[str]], list[list[str]]]:
    """Pad ``texts`` into one batch exactly as training does (:func:`tformer.data.batching.collate`).

    Args:
        targets: one target per text (teacher forcing); None = the translator's beam-search translations.

    Returns:
        src (B, S), tgt_in (B, T), and the tokens of each row of both (padding included).

    Raises:
        TformerError: no text, an empty text, or a number of targets unlike the number of texts.
    """
    if not texts or any(not t.strip() for t in texts):
        raise TformerError("the masks need one or more non-empty sentences")
    if targets is not None and len(targets) != len(texts):
        raise TformerError(f"got {len(targets)} targets for {len(texts)} sentences: give one per sentence or none")
    targets = translator.translate(list(texts)) if targets is None else targets
    vocabs, cfg = translator.vocabs, translator.model.cfg
    pairs = [(vocabs.src.encode(s)[: cfg.max_len - 1], vocabs.tgt.encode(t)[: cfg.max_len - 1])
             for s, t in zip(texts, targets, strict=True)]
    batch = collate(pairs, cfg.pad_id, cfg.bos_id, cfg.eos_id)
    src_tokens = [[vocabs.src.id_to_token(i) for i in row] for row in batch.src.tolist()]
    tgt_tokens = [[vocabs.tgt.id_to_token(i) for i in row] for row in batch.tgt_in.tolist()]
    return batch.src, batch.tgt_in, src_tokens, tgt_tokens


def plot_masks(masks: BatchMasks, source_tokens: list[list[str]], target_tokens: list[list[str]]) -> Figure:
    """The source padding mask of the batch, then per sentence the three masks with tokens on the axes.

    Args:
        masks: from :func:`batch_masks`.
        source_tokens: per sentence, the S source tokens (padding included).
        target_tokens: per sentence, the T decoder input tokens (BOS + target, padding included).
    """
    b, s = masks.padding.shape
    t = masks.decoder_self.shape[0]
    width = max(9.0, 3 * 1.3 + CELL_INCHES * (2 * s + t) + 1.5)
    row_h = 1.2 + CELL_INCHES * max(s, t)
    fig = new_figure(width, 1.6 + CELL_INCHES * b + b * row_h)
    top, *rows = fig.subfigures(1 + b, 1, height_ratios=[1.0 + CELL_INCHES * b] + [row_h] * b)

    ax = top.subplots()
    heatmap(ax, masks.padding, list(range(s)), [f"sentence {i + 1}" for i in range(b)], cmap=_CMAP, vmin=0, vmax=1)
    for i in range(b):
        for j in range(s):
            ax.text(j, i, source_tokens[i][j], ha="center", va="center", fontsize=7, parse_math=False,
                    color="white" if masks.padding[i, j] else "black")
    ax.set_xlabel("source position")
    ax.set_title("source padding mask of the batch: padding_mask(src) (B × S)", fontsize=10)
    top.legend(handles=[Patch(color=_ALLOWED, label="True: may attend"),
                        Patch(color=_BLOCKED, label="False: masked (-inf before softmax)")],
               loc="outside right upper", fontsize=8)

    for i, sub in enumerate(rows):
        enc_ax, dec_ax, cross_ax = sub.subplots(1, 3, width_ratios=[s, t, s])
        heatmap(enc_ax, masks.encoder[i], source_tokens[i], source_tokens[i], cmap=_CMAP, vmin=0, vmax=1)
        enc_ax.set_title("encoder self-attention (S × S)", fontsize=9)
        enc_ax.set_xlabel("key: source")
        enc_ax.set_ylabel("query: source")
        heatmap(dec_ax, masks.decoder_self, target_tokens[i], target_tokens[i], cmap=_CMAP, vmin=0, vmax=1)
        dec_ax.set_title("decoder self-attention: causal (T × T)", fontsize=9)
        dec_ax.set_xlabel("key: decoder input")
        dec_ax.set_ylabel("query: decoder input")
        heatmap(cross_ax, masks.cross[i], source_tokens[i], target_tokens[i], cmap=_CMAP, vmin=0, vmax=1)
        cross_ax.set_title("encoder-decoder attention (T × S)", fontsize=9)
        cross_ax.set_xlabel("key: source")
        cross_ax.set_ylabel("query: decoder input")
        for ax in (enc_ax, dec_ax, cross_ax):
            ax.set_aspect("equal")
        sub.suptitle(f"sentence {i + 1}", fontsize=10, x=0.01, ha="left")
    fig.suptitle("Attention masks of a batch (§3.2.3): True = may attend", fontsize=12)
    return fig
