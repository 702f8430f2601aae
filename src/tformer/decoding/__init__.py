"""Autoregressive decoding: greedy and beam search over the KV cache."""

from tformer.decoding.beam import Hypothesis, beam_search, beam_search_nbest, length_penalty
from tformer.decoding.greedy import greedy_search

__all__ = ["Hypothesis", "beam_search", "beam_search_nbest", "greedy_search", "length_penalty"]
