"""Greedy search: at each step take the most probable next token (argmax of the logits).

:func:`decode_single_path` is the loop shared with sampling: one hypothesis per sentence, the KV
cache extended by one position per step, finished sentences dropped from the batch so that the
work per step shrinks as sentences end. Greedy and sampling differ only in how they choose.

The loop begins where ``start`` says: by default it encodes the source and feeds BOS (the
encoder-decoder); a decoder-only language model reads its prompts into the cache instead and feeds
each prompt's last token (:meth:`tformer.models.gpt.model.DecoderOnly.prefill`).

Shape legend: B sentences, B' sentences still decoding, L generated length, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from tformer.generation.beam import fill_id, row_limits
from tformer.generation.processors import Step, process, processors
from tformer.generation.protocols import Start, StepDecoder, encoder_decoder_start
from tformer.nn.cache import MonotonicWindow


@torch.no_grad()
def decode_single_path(
    model: StepDecoder, src: Tensor, choose: Callable[[Tensor], Tensor], *, max_len: int | Tensor,
    min_len: int = 0, start: Start | None = None, window: MonotonicWindow | None = None,
    no_repeat_ngram_size: int = 0, repetition_penalty: float = 1.0, prefix: Tensor | None = None,
) -> Tensor:
    """(B, S) source ids -> (B, L) output ids without BOS, ending in EOS when produced, pad-filled.

    Args:
        model: a :class:`~tformer.generation.protocols.StepDecoder` (cfg, decode_step); without ``start``
            an :class:`~tformer.generation.protocols.EncoderDecoder` (also encode, start_decoding).
        choose: next-token logits (B', V) -> chosen ids (B',).
        max_len: the most tokens per sentence, EOS included (>= 1, see :class:`GenerationOptions`): one int or a
            (B,) tensor of per-sentence limits.
        min_len: EOS is forbidden before this many tokens.
        start: () -> (cache, first input (B, t)): how decoding begins. The cache needs ``select(index)``;
            ``model.decode_step(first input, cache)[:, -1]`` predicts the first output token. Default: encode
            ``src`` and start from BOS. A model without a padding token (``cfg.pad_id`` None, as GPT-2) fills
            finished rows with EOS instead.
        window: decode under this monotonic window (the cache's ``constrain``), or None.
        no_repeat_ngram_size: n > 0: no output repeats an n-gram of the tokens it produced (a prompt's are not
            counted); 0 = off.
        repetition_penalty: p != 1: the logit of a token the row already produced is divided by p where positive,
            multiplied where negative (:func:`~tformer.generation.processors.penalize_repeats`).
        prefix: (B, P) the first tokens of each output, forced (-1 where a row's prefix has ended; see
            :func:`~tformer.generation.processors.prefix_tensor`), or None.
    """
    cfg = model.cfg
    procs = processors(cfg, min_len=min_len, repetition_penalty=repetition_penalty,
                       no_repeat_ngram_size=no_repeat_ngram_size)
    b = src.shape[0]
    limit = torch.tensor(row_limits(max_len, b), device=src.device)  # (B,)
    cache, tokens = encoder_decoder_start(model, src) if start is None else start()  # tokens (B, t): the first input
    if window is not None:
        cache.constrain(window)
    out = src.new_full((b, int(limit.max())), fill_id(cfg))  # (B, max L)
    rows = torch.arange(b, device=src.device)  # original sentence index of each cache row, (B',)
    length = 0
    for t in range(int(limit.max())):
        logits = model.decode_step(tokens, cache)[:, -1].float()  # (B', V)
        process(logits, Step(t, out[rows, :t], rows), procs, prefix)
        next_tok = choose(logits)  # (B',)
        out[rows, t] = next_tok
        length = t + 1
        done = (next_tok == cfg.eos_id) | (limit[rows] <= t + 1)  # ended, or at its own length limit
        if done.any():
            keep = (~done).nonzero().squeeze(1)  # (B'',)
            if keep.numel() == 0:
                break
            cache.select(keep)
            rows, next_tok = rows[keep], next_tok[keep]
        tokens = next_tok[:, None]  # (B', 1)
    return out[:, :length]


def greedy_search(
    model: StepDecoder, src: Tensor, *, max_len: int | Tensor, min_len: int = 0, start: Start | None = None,
    window: MonotonicWindow | None = None, no_repeat_ngram_size: int = 0, repetition_penalty: float = 1.0,
    prefix: Tensor | None = None,
) -> Tensor:
    """The argmax path; see :func:`decode_single_path`."""
    return decode_single_path(model, src, lambda logits: logits.argmax(dim=-1), max_len=max_len, min_len=min_len,
                              start=start, window=window, no_repeat_ngram_size=no_repeat_ngram_size,
                              repetition_penalty=repetition_penalty, prefix=prefix)
