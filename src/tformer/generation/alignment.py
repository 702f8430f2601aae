"""The alignment a decoding saw: one layer's encoder-decoder attention over a given output, mean over its heads.

:func:`forced_alignment` reads it from one teacher-forced pass over BOS and the output (a translation the model
produced, or a reference): cached decoding equals full recomputation, so these are the weights decoding saw.
:func:`hard_alignment` turns one sentence's weights into word alignment pairs (fairseq's ``--print-alignment``).
:func:`step_alignment` feeds the output through the cached decoder one position at a time, as decoding does: under
a monotonic window (:class:`~tformer.nn.cache.MonotonicWindow`) the window moves as it moved in decoding, so the
alignment of a windowed translation is the one it was made with (one pass cannot know where the window was).
The measures over alignments (diagonal focus rate, monotonic rate) are :mod:`tformer.evaluation.alignment`.

Shape legend: B sentences, S source length, T output positions (BOS + output without its last token).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch
from torch import Tensor

from tformer.nn.attention import AttentionProbe
from tformer.nn.cache import MonotonicWindow


class AttendingDecoder(Protocol):
    """An encoder-decoder whose decoding step also returns the cross-attention weights a probe names
    (the capability ``Feature.ATTENTION_MAPS``)."""

    def encode(self, src: Tensor) -> Tensor: ...

    def start_decoding(self, memory: Tensor, src: Tensor) -> Any: ...

    def decode_step(self, tokens: Tensor, cache: Any, *, cross_attention: AttentionProbe | None = None) -> Any: ...

    def decoder_states(self, src: Tensor, tgt_in: Tensor, *, cross_attention: AttentionProbe | None = None
                       ) -> Any: ...


@torch.no_grad()
def forced_alignment(model: AttendingDecoder, src: Tensor, tgt_in: Tensor, *, layer: int = -1) -> Tensor:
    """Decoder layer ``layer``'s cross-attention weights, mean over heads, (B, T, S), for decoder inputs ``tgt_in``
    (B, T) (BOS + output[:-1]) in one teacher-forced pass: what :func:`step_alignment` gives without a window."""
    _, (weights,) = model.decoder_states(src, tgt_in, cross_attention=AttentionProbe(layers=(layer,)))  # (B, H, T, S)
    return weights.float().mean(dim=1)  # (B, T, S)


@torch.no_grad()
def step_alignment(model: AttendingDecoder, src: Tensor, tgt_in: Tensor, *, layer: int = -1,
                   window: MonotonicWindow | None = None) -> Tensor:
    """Decoder layer ``layer``'s cross-attention weights, mean over heads, (B, T, S), for decoder inputs
    ``tgt_in`` (B, T) (BOS + output[:-1]) fed step by step through the cache, under ``window`` if given.

    Rows past an output's end hold whatever the padding inputs give: callers keep each row's own length.
    """
    cache = model.start_decoding(model.encode(src), src)
    if window is not None:
        cache.constrain(window)
    probe = AttentionProbe(layers=(layer,))
    steps = []
    for t in range(tgt_in.shape[1]):
        _, (weights,) = model.decode_step(tgt_in[:, t : t + 1], cache, cross_attention=probe)  # (B, H, 1, S)
        steps.append(weights.float().mean(dim=1))  # (B, 1, S)
    return torch.cat(steps, dim=1)  # (B, T, S)


def hard_alignment(weights: Tensor, output: Sequence[int], eos_id: int) -> list[tuple[int, int]]:
    """One sentence's word alignment from its attention ``weights`` (T, S), T >= the output's tokens, S its source
    tokens ending in EOS: for each output token but a final EOS, the source position (EOS left out) with the most
    weight, as (source index, target index) pairs, 0-based (fairseq's ``extract_hard_alignment``, the Pharaoh
    format's ``i-j``). Row t is the step that produced output token t."""
    t = len(output) - (1 if output and output[-1] == eos_id else 0)
    s = weights.shape[1] - 1  # the source's EOS left out
    if t <= 0 or s <= 0:
        return []
    return [(j, i) for i, j in enumerate(weights[:t, :s].argmax(dim=1).tolist())]


def output_alignment(models: Sequence[AttendingDecoder], src: Tensor, outputs: Sequence[Sequence[int]], *,
                     bos_id: int, pad_id: int, layer: int = -1, window: MonotonicWindow | None = None) -> Tensor:
    """Decoder layer ``layer``'s cross-attention, mean over heads and over ``models`` (an ensemble's members),
    (B, T, S), while producing ``outputs`` (each ending in EOS, or cut) from ``src`` (B, S): one teacher-forced
    pass (:func:`forced_alignment`), or fed step by step under ``window`` or for a model with the copy mechanism
    (whose cached pass gives the weights; :func:`step_alignment`). Row t of a sentence produced its token t."""
    tgt_in = src.new_full((len(outputs), max(map(len, outputs))), pad_id)  # (B, T)
    for row, out in enumerate(outputs):
        tgt_in[row, : len(out)] = torch.tensor([bos_id, *out[:-1]])  # BOS + y_<t
    return torch.stack([
        step_alignment(m, src, tgt_in, layer=layer, window=window) if window is not None or getattr(m, "copies", False)
        else forced_alignment(m, src, tgt_in, layer=layer) for m in models]).mean(dim=0)  # (B, T, S)
