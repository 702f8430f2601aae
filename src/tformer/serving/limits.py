"""What one request to ``tformer serve`` may ask for; a request over a limit gets a 4xx that names it."""

from __future__ import annotations

from dataclasses import dataclass

from tformer.errors import TformerError


@dataclass(frozen=True)
class Limits:
    """Per-request limits and batching settings of the server.

    Attributes:
        max_texts: most sentences in one ``POST /translate``.
        max_chars: most characters in one sentence (``/translate`` and ``/attention``), prompt or text.
        max_context_chars: most characters in one question's context (``/predict`` of a QA run).
        max_beam: largest ``beam_size`` (and ``nbest``).
        max_attention_tokens: most source tokens (EOS included) of a ``POST /attention`` sentence; its answer
            grows with layers x heads x tokens², so it is kept smaller than the translation limit.
        max_batch_texts: most sentences that the batcher puts into one model call (1 = no merging).
        batch_wait_ms: how long the batcher waits after a request arrives for others to join it.
    """

    max_texts: int = 64
    max_chars: int = 1000
    max_context_chars: int = 20000
    max_beam: int = 16
    max_attention_tokens: int = 128
    max_batch_texts: int = 256
    batch_wait_ms: float = 2.0

    def __post_init__(self) -> None:
        for name in ("max_texts", "max_chars", "max_context_chars", "max_beam", "max_attention_tokens",
                     "max_batch_texts"):
            if getattr(self, name) < 1:
                raise TformerError(f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.batch_wait_ms <= 1000:
            raise TformerError(f"batch-wait-ms must be between 0 and 1000, got {self.batch_wait_ms}")

    def max_body_bytes(self, chars_per_input: int | None = None) -> int:
        """The largest request body worth reading: every input at its limit (``chars_per_input``, default
        ``max_chars``), each character JSON-escaped."""
        return self.max_texts * ((chars_per_input or self.max_chars) * 12 + 16) + 64 * 1024
