"""Sampling: draw each next token from the model's distribution, reshaped by temperature, top-k
and top-p (nucleus) filtering, under a seeded generator so that a seed repeats its samples.

    p_T(k) ∝ exp(logit_k / T)          temperature T (T -> 0 is greedy)
    top-k: keep the k most probable tokens; top-p: keep the smallest set whose mass reaches p.

Shape legend: B sentences, B' sentences still decoding, V vocabulary.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tformer.generation.greedy import decode_single_path
from tformer.generation.options import GenerationOptions
from tformer.generation.protocols import Start, StepDecoder
from tformer.nn.cache import MonotonicWindow


def filter_logits(logits: Tensor, top_k: int = 0, top_p: float = 1.0) -> Tensor:
    """Set logits outside the top-k / top-p set to -inf. logits (B, V) -> (B, V)."""
    if top_k > 0 and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]  # (B, 1) the k-th largest
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)  # (B, V)
        probs = sorted_logits.softmax(dim=-1)
        # Drop a token when the mass before it already reaches top_p (the most probable one always stays).
        drop_sorted = probs.cumsum(dim=-1) - probs >= top_p
        drop_sorted[:, 0] = False  # kept even when top_p rounds to 0 in the logits' precision
        drop = drop_sorted.scatter(1, order, drop_sorted)  # back to vocabulary order
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample(
    model: StepDecoder, src: Tensor, *, max_len: int | Tensor, min_len: int = 0, temperature: float = 1.0,
    top_k: int = 0, top_p: float = 1.0, seed: int | None = None, start: Start | None = None,
    window: MonotonicWindow | None = None, no_repeat_ngram_size: int = 0, repetition_penalty: float = 1.0,
    prefix: Tensor | None = None,
) -> Tensor:
    """(B, S) source ids -> (B, L) sampled ids without BOS, ending in EOS when drawn, pad-filled.

    The same seed and batch give the same samples; a sentence's sample depends on its batch
    (the rows share one random stream). ``start``, ``window``, ``no_repeat_ngram_size``, ``repetition_penalty``
    (applied to the logits before the temperature, as Hugging Face does), ``prefix``: see
    :func:`decode_single_path`. The settings are those of :class:`~tformer.generation.GenerationOptions`, which
    checks them (temperature > 0, 0 < top_p <= 1, top_k >= 0).
    """
    GenerationOptions(do_sample=True, temperature=temperature, top_k=top_k, top_p=top_p)  # checked once
    gen = torch.Generator(device=src.device)
    gen.manual_seed(torch.seed() if seed is None else seed)

    def choose(logits: Tensor) -> Tensor:  # (B', V) -> (B',)
        # the best logit becomes 0 before dividing, in float64 (where a float32 temperature could round to 0): a
        # tiny temperature sends the others to -inf, never to nan
        scaled = ((logits - logits.amax(dim=-1, keepdim=True)).double() / temperature).to(logits.dtype)
        probs = filter_logits(scaled, top_k, top_p).softmax(dim=-1)
        return torch.multinomial(probs, 1, generator=gen).squeeze(1)

    return decode_single_path(model, src, choose, max_len=max_len, min_len=min_len, start=start, window=window,
                              no_repeat_ngram_size=no_repeat_ngram_size, repetition_penalty=repetition_penalty,
                              prefix=prefix)
