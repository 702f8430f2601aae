"""Several encoder-decoders decoding as one: at each step the mean of their next-token distributions.

    log p(y_t | y_<t, x) = log (1/N) sum_m p_m(y_t | y_<t, x) = logsumexp_m log p_m(y_t | ...) - log N

as fairseq's ``EnsembleModel`` averages its models' probabilities. Each model keeps its own KV cache
(:class:`EnsembleCache`), which greedy search, sampling and beam search select and reorder as they would one
model's, so an :class:`Ensemble` goes wherever an :class:`~tformer.generation.protocols.EncoderDecoder` goes.
Its :meth:`Ensemble.decode_step` gives log-probabilities (logits whose log-softmax is themselves): greedy search
and sampling then see log-probabilities where one model gives logits, which changes nothing but what a repetition
penalty multiplies (:mod:`tformer.generation.processors`).

The models must read the same source ids and write the same target ids: the same special ids and output
vocabulary size (checked here) and the same tokenizers (checked by whoever tokenizes, the Translator).

Shape legend: B rows, S source length, t new positions, V vocabulary, N models.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from tformer.errors import TformerError
from tformer.generation.protocols import BeamCache, EncoderDecoder, TokenIds


class EnsembleCache:
    """One cache per model, selected, widened and reordered together (a :class:`BeamCache`)."""

    def __init__(self, caches: Sequence[BeamCache]) -> None:
        self.caches = list(caches)

    def select(self, index: Tensor) -> None:
        for cache in self.caches:
            cache.select(index)

    def repeat_interleave(self, n: int) -> None:
        for cache in self.caches:
            cache.repeat_interleave(n)

    def reorder_targets(self, index: Tensor) -> None:
        for cache in self.caches:
            cache.reorder_targets(index)

    def constrain(self, window: Any) -> None:
        for cache in self.caches:
            cache.constrain(window)


def _ids(cfg: TokenIds) -> tuple:
    """What must agree between the members: the special ids and the output vocabulary's size."""
    return cfg.pad_id, cfg.bos_id, cfg.eos_id, getattr(cfg, "target_vocab_size", None)


class Ensemble:
    """Encoder-decoders that decode together, each step's distribution the mean of theirs (see the module).

    Args:
        models: one or more :class:`EncoderDecoder`, with the same special ids and output vocabulary size.

    Raises:
        TformerError: no models, or models whose special ids or vocabulary sizes differ (one line).
    """

    def __init__(self, models: Sequence[EncoderDecoder]) -> None:
        self.models = list(models)
        if not self.models:
            raise TformerError("an ensemble needs at least one model")
        first = _ids(self.models[0].cfg)
        for n, model in enumerate(self.models[1:], start=2):
            if _ids(model.cfg) != first:
                raise TformerError(f"ensemble model {n} has other special ids or another output vocabulary size "
                                   f"(pad, bos, eos, size: {_ids(model.cfg)} vs {first}): the models must share "
                                   "the target vocabulary")

    @property
    def cfg(self) -> TokenIds:
        """The first model's configuration (the special ids, which all share)."""
        return self.models[0].cfg

    def encode(self, src: Tensor) -> list[Tensor]:
        """(B, S) source ids -> each model's memory (B, S, D_m)."""
        return [model.encode(src) for model in self.models]

    def start_decoding(self, memory: list[Tensor], src: Tensor) -> EnsembleCache:
        """Each model's fresh cache for its own memory."""
        return EnsembleCache([model.start_decoding(m, src) for model, m in zip(self.models, memory, strict=True)])

    def decode_step(self, tokens: Tensor, cache: EnsembleCache) -> Tensor:
        """log of the mean of the models' probabilities (B, t, V), in float32, for new inputs ``tokens`` (B, t)."""
        logp = torch.stack([model.decode_step(tokens, c).float().log_softmax(dim=-1)
                            for model, c in zip(self.models, cache.caches, strict=True)])  # (N, B, t, V)
        return logp.logsumexp(dim=0) - math.log(len(self.models))
