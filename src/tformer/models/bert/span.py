"""The span head for extractive question answering on the encoder-only model (BERT: Devlin et al., 2019, §4.2,
SQuAD v1.1), and the decoding of the best legal span.

    [CLS] question [SEP] context [SEP] ─► EncoderOnly ─► hidden ─► Linear(D, 2) ─► start logits, end logits

BERT learns one start vector S and one end vector E: the probability that token i starts the answer is
softmax_i(S·h_i), the end likewise with E; here they are the two rows of one Linear(D, 2). Positions that cannot
start or end an answer (the question, the separators, the padding) are masked before the softmax. The answer is the
span (i, j) of largest S·h_i + E·h_j with i <= j, at most ``max_answer_len`` tokens, both ends in the context
(:func:`best_spans`).

Shape legend: B batch, S length, D d_model.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tformer.errors import TformerError
from tformer.io.pretrained import Pretrained
from tformer.models.bert.config import EncoderOnlyConfig
from tformer.models.bert.model import EncoderOnly, init_bert

__all__ = ["EncoderOnlyForQuestionAnswering", "best_spans", "mask_logits"]


def mask_logits(logits: Tensor, allowed: Tensor | None) -> Tensor:
    """``logits`` (B, S) with the positions where ``allowed`` (B, S) is False set to the dtype's lowest value (a
    softmax gives them 0; a row with none allowed stays finite)."""
    if allowed is None:
        return logits
    return logits.masked_fill(~allowed.to(device=logits.device, dtype=torch.bool), torch.finfo(logits.dtype).min)


class EncoderOnlyForQuestionAnswering(Pretrained, nn.Module):
    """:class:`EncoderOnly` + a Linear(D, 2) span head: start and end logits (B, S) per position.

    Args:
        encoder: a config (a fresh encoder) or a built, e.g. pretrained, :class:`EncoderOnly`.
    """

    config_class = EncoderOnlyConfig
    legacy_section = "encoder"

    def __init__(self, encoder: EncoderOnly | EncoderOnlyConfig) -> None:
        super().__init__()
        self.encoder = encoder if isinstance(encoder, EncoderOnly) else EncoderOnly(encoder)
        self.cfg = self.encoder.cfg
        self.span = nn.Linear(self.cfg.d_model, 2)  # rows: BERT's start vector S and end vector E
        init_bert(self.span, self.cfg.init_std)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
                answer_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(start logits, end logits), each (B, S); arguments as :meth:`EncoderOnly.forward`, and ``answer_mask``
        (B, S): True where a span may start or end (the context's tokens; in training also [CLS], the target of a
        window without the answer); elsewhere the logits are the dtype's lowest value. None = no mask."""
        hidden = self.encoder(input_ids, attention_mask, token_type_ids)  # (B, S, D)
        logits = self.span(hidden)  # (B, S, 2)
        start, end = logits.unbind(dim=-1)  # (B, S, 2) -> 2 x (B, S)
        return mask_logits(start, answer_mask), mask_logits(end, answer_mask)


def best_spans(start_logits: Tensor, end_logits: Tensor, allowed: Tensor, max_answer_len: int
               ) -> tuple[Tensor, Tensor, Tensor]:
    """The legal span of largest start + end logit in each row, all pairs at once.

    A span (i, j) is legal when i <= j, j - i + 1 <= ``max_answer_len`` and ``allowed`` holds at both i and j
    (the context's tokens).

    Args:
        start_logits, end_logits: (B, S).
        allowed: (B, S) bool, True = a position of the context.
        max_answer_len: the longest answer, in tokens (>= 1).

    Returns:
        (start (B,), end (B,), score (B,)) with score = start_logits[i] + end_logits[j]; a row with no legal span
        gets (0, 0, -inf).
    """
    if max_answer_len < 1:
        raise TformerError(f"max_answer_len must be >= 1, got {max_answer_len}")
    b, s = start_logits.shape
    allowed = allowed.to(dtype=torch.bool, device=start_logits.device)
    scores = start_logits[:, :, None] + end_logits[:, None, :]  # (B, S, 1) + (B, 1, S) -> (B, S, S): [i, j]
    i = torch.arange(s, device=start_logits.device)
    width = i[None, :] - i[:, None]  # (S, S): j - i
    legal = (width >= 0) & (width < max_answer_len)  # (S, S)
    legal = legal[None] & allowed[:, :, None] & allowed[:, None, :]  # (B, S, S)
    scores = scores.masked_fill(~legal, float("-inf"))
    score, flat = scores.reshape(b, s * s).max(dim=-1)  # (B, S, S) -> (B, S*S) -> (B,)
    start, end = flat // s, flat % s
    none = ~legal.reshape(b, s * s).any(dim=-1)  # (B,)
    start, end = start.masked_fill(none, 0), end.masked_fill(none, 0)
    return start, end, score.masked_fill(none, float("-inf"))
