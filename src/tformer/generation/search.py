"""One entry to the autoregressive engines: :class:`GenerationOptions` in, the search they ask for run.

    search(model, src, options, max_len=limits)          # sampling, greedy or beam search -> (B, L) ids
    search_nbest(model, src, options, max_len=limits)    # beam search's n-best Hypothesis lists

``model`` is any :class:`~tformer.generation.protocols.EncoderDecoder`: one model, or an
:class:`~tformer.generation.ensemble.Ensemble` of several. ``prefix`` forces the first tokens of each output
(:func:`~tformer.generation.processors.prefix_tensor`). The options are taken as given (the caller checks them
against the model's capabilities and fills in its defaults).

Shape legend: B sentences, S source length, L output length, P prefix length.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tformer.generation.beam import Hypothesis, beam_search, beam_search_nbest
from tformer.generation.greedy import greedy_search
from tformer.generation.options import GenerationOptions
from tformer.generation.protocols import EncoderDecoder
from tformer.generation.sampling import sample

EXTRA_TARGET_LENGTH = 50  # §6.1: "maximum output length to input length + 50"


def length_limits(src: Tensor, pad_id: int, max_len: int | None, positions: int) -> Tensor:
    """Per-sentence output limits (B,) for a source (B, S): ``max_len``, or each sentence's own length + 50
    (§6.1), never more than ``positions`` (the decoder's: BOS plus max_len - 1 fed-back tokens)."""
    if max_len is None:
        limits = (src != pad_id).sum(dim=1) + EXTRA_TARGET_LENGTH  # (B,) per sentence, not the padded width
    else:
        limits = torch.full((src.shape[0],), max_len, device=src.device)
    return limits.clamp(max=positions)


def _common(options: GenerationOptions, max_len: int | Tensor, prefix: Tensor | None) -> dict:
    """The settings every engine takes."""
    return {"max_len": max_len, "min_len": options.min_len, "window": options.window(), "prefix": prefix,
            "no_repeat_ngram_size": options.no_repeat_ngram_size, "repetition_penalty": options.repetition_penalty}


@torch.no_grad()
def search(model: EncoderDecoder, src: Tensor, options: GenerationOptions, *, max_len: int | Tensor,
           prefix: Tensor | None = None) -> Tensor:
    """(B, S) source ids -> (B, L) output ids (without BOS, ending in EOS when produced, pad-filled): sampling with
    ``do_sample``, greedy search with beam size 1 (or None), else beam search."""
    common = _common(options, max_len, prefix)
    if options.do_sample:
        return sample(model, src, temperature=options.temperature, top_k=options.top_k, top_p=options.top_p,
                      seed=options.seed, **common)
    if options.beam_size in (None, 1):
        return greedy_search(model, src, **common)
    return beam_search(model, src, beam_size=options.beam_size, length_penalty_alpha=options.length_penalty, **common)


@torch.no_grad()
def search_nbest(model: EncoderDecoder, src: Tensor, options: GenerationOptions, *, max_len: int | Tensor,
                 prefix: Tensor | None = None) -> list[list[Hypothesis]]:
    """Beam search's ``options.nbest`` best hypotheses per sentence (beam size and n-best set by the caller)."""
    return beam_search_nbest(model, src, beam_size=options.beam_size, nbest=options.nbest or options.beam_size,
                             length_penalty_alpha=options.length_penalty, **_common(options, max_len, prefix))
