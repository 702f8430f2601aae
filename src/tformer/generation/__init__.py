"""Autoregressive decoding, one engine for generate, the Translator, validation and the CLI:
greedy search, beam search and sampling, all over the KV cache."""

from tformer.generation.beam import Hypothesis, beam_search, beam_search_nbest, length_penalty
from tformer.generation.greedy import decode_single_path, greedy_search
from tformer.generation.sampling import filter_logits, sample

__all__ = [
    "Hypothesis", "beam_search", "beam_search_nbest", "decode_single_path", "filter_logits", "greedy_search",
    "length_penalty", "sample",
]
