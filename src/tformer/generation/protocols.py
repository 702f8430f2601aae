"""What the decoding engines need from a model: small protocols, so that generation imports no model class.

The models (:mod:`tformer.models`, the layer above) satisfy these structurally; nothing here subclasses them.

    StepDecoder      cfg (special ids) + decode_step(tokens, cache): greedy search, sampling and beam search,
                     from a given start
    EncoderDecoder   + encode(src) and start_decoding(memory, src) -> a cache beams can reorder: the engines'
                     default start (encode the source, feed BOS)
    Start, BeamStart () -> (cache, first input): where a model without an encoder begins (a decoder-only language
                     model's prefilled prompts, :meth:`tformer.models.gpt.model.DecoderOnly.prefill`)
    MaskPredictor    encode, predict_length, project_memory, decoder_states, token_logits: mask-predict

Shape legend: B rows, S source length, t new positions, T target length, D d_model, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from torch import Tensor


class TokenIds(Protocol):
    """The special token ids the engines read from ``model.cfg``."""

    @property
    def pad_id(self) -> int | None:
        """Padding (None for a vocabulary without one, as GPT-2's: finished rows are then filled with EOS)."""
        ...

    @property
    def bos_id(self) -> int:
        """Begin of sequence: the first decoder input."""
        ...

    @property
    def eos_id(self) -> int:
        """End of sequence."""
        ...


class DecodingCache(Protocol):
    """Per-row decoding state (keys and values so far); finished rows leave it."""

    def select(self, index: Tensor) -> None:
        """Keep rows ``index`` (B',), in that order."""
        ...


class BeamCache(DecodingCache, Protocol):
    """A cache beam search can widen to K rows per sentence and reorder between beams."""

    def repeat_interleave(self, n: int) -> None:
        """Each row n times in a row: (B) -> (B * n)."""
        ...

    def reorder_targets(self, index: Tensor) -> None:
        """Rows ``index`` (same count) of the target-side state; the source side is unchanged."""
        ...

    def constrain(self, window: Any) -> None:
        """Decode under a monotonic window (:class:`~tformer.nn.cache.MonotonicWindow`) from now on; asked only of
        a model whose capabilities include ``Feature.MONOTONIC_WINDOW``."""
        ...


class StepDecoder(Protocol):
    """A model that extends cached sequences by new tokens (greedy search and sampling)."""

    @property
    def cfg(self) -> TokenIds:
        """The model's configuration (its special ids)."""
        ...

    def decode_step(self, tokens: Tensor, cache: Any) -> Tensor:
        """Logits (B, t, V) for new inputs ``tokens`` (B, t) that continue the cached positions."""
        ...


class EncoderDecoder(StepDecoder, Protocol):
    """An encoder-decoder that decodes token by token over a KV cache (the engines' default start,
    :func:`encoder_decoder_start`)."""

    def encode(self, src: Tensor) -> Tensor:
        """(B, S) source ids -> memory (B, S, D)."""
        ...

    def start_decoding(self, memory: Tensor, src: Tensor) -> BeamCache:
        """A fresh cache for this source (cross-attention keys and values computed once)."""
        ...


Start = Callable[[], tuple[DecodingCache, Tensor]]
"""How single-path decoding (greedy search, sampling) begins: () -> (a cache, the first input (B, t)), where
``model.decode_step(first input, cache)[:, -1]`` predicts each row's first output token."""

BeamStart = Callable[[], tuple[BeamCache, Tensor]]
"""How beam search begins: as :data:`Start`, with a cache that beam search widens to K rows per sentence
(``repeat_interleave``) and reorders between beams (``reorder_targets``)."""


def encoder_decoder_start(model: EncoderDecoder, src: Tensor) -> tuple[BeamCache, Tensor]:
    """The engines' default start: encode ``src`` (B, S) into a fresh cache, first input BOS (B, 1)."""
    return model.start_decoding(model.encode(src), src), src.new_full((src.shape[0], 1), model.cfg.bos_id)


class MaskPredictIds(TokenIds, Protocol):
    """What mask-predict reads from ``model.cfg``: the special ids, the mask id and the length limits."""

    @property
    def mask_id(self) -> int:
        """The ``<mask>`` token."""
        ...

    @property
    def max_target_len(self) -> int:
        """The length predictor's largest length."""
        ...

    @property
    def max_len(self) -> int:
        """The decoder's positions."""
        ...


class MaskPredictor(Protocol):
    """A conditional masked language model (mask-predict's model)."""

    @property
    def cfg(self) -> MaskPredictIds:
        """The model's configuration."""
        ...

    def encode(self, src: Tensor) -> Tensor:
        """(B, S) source ids -> memory (B, S, D)."""
        ...

    def predict_length(self, memory: Tensor, src: Tensor) -> Tensor:
        """Length logits (B, L + 1)."""
        ...

    def project_memory(self, memory: Tensor) -> list:
        """Each decoder layer's cross-attention keys and values of ``memory``, for repeated decoder passes."""
        ...

    def decoder_states(self, tgt_in: Tensor, memory: Tensor, src: Tensor, cross_kv: list | None = None) -> Tensor:
        """The decoder output (B, T, D) for partly masked targets ``tgt_in`` (B, T), all positions at once."""
        ...

    def token_logits(self, hidden: Tensor) -> Tensor:
        """(N, D) or (B, T, D) decoder states -> logits over the vocabulary."""
        ...
