"""Decoding, one engine for generate, the Translator, validation and the CLI: greedy search, beam search and
sampling over the KV cache, and mask-predict for the non-autoregressive CMLM.

    options.py       GenerationOptions: every decoding setting, validated once
    capabilities.py  Feature, Capabilities: what a model kind supports, and the one refusal message
    protocols.py     what the engines need from a model (no model class is imported here)
    processors.py    what a step does to the scores: special tokens, repetition penalty, n-gram ban, forced prefix
    greedy.py, sampling.py, beam.py, mask_predict.py   the engines
    search.py        GenerationOptions -> the engine they ask for (sampling, greedy or beam search)
    ensemble.py      several encoder-decoders decoding as one (the mean of their distributions)
    alignment.py     the cross-attention a decoding saw, and word alignments from it
    ctc.py           CTC outputs: greedy (best path) and prefix beam search
"""

from tformer.generation.beam import Hypothesis, beam_search, beam_search_nbest, length_penalty
from tformer.generation.capabilities import Capabilities, Feature, capabilities_of, refusal
from tformer.generation.ctc import (
    CTCHypothesis,
    ctc_collapse,
    ctc_greedy,
    ctc_prefix_beam_search,
    ctc_prefix_beam_search_nbest,
)
from tformer.generation.ensemble import Ensemble
from tformer.generation.greedy import decode_single_path, greedy_search
from tformer.generation.options import PAPER_BEAM_SIZE, GenerationOptions
from tformer.generation.sampling import filter_logits, sample
from tformer.generation.search import search, search_nbest

__all__ = [
    "PAPER_BEAM_SIZE", "CTCHypothesis", "Capabilities", "Ensemble", "Feature", "GenerationOptions", "Hypothesis",
    "beam_search", "beam_search_nbest", "capabilities_of", "ctc_collapse", "ctc_greedy", "ctc_prefix_beam_search",
    "ctc_prefix_beam_search_nbest", "decode_single_path", "filter_logits", "greedy_search", "length_penalty",
    "refusal", "sample", "search", "search_nbest",
]
