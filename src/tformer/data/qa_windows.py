"""Reading a long context in overlapping windows, for extractive question answering (BERT on SQuAD: Devlin et
al., 2019, §4.2; the "doc stride" of their run_squad.py).

A question and a context that do not fit in the model's ``max_len`` positions are read as several windows, each

    [CLS] question [SEP] piece of the context [SEP]        token types 0 ... 0 1 ... 1

where the pieces are runs of the context's tokens of at most ``max_len - len(question) - 3`` tokens, starting every
``doc_stride`` tokens (the last piece ends with the context), so that they overlap when ``doc_stride`` is less than
a piece and every context token is in at least one window. The context is tokenized once, with each token's
character offsets in it (Hugging Face tokenizers give them), so that a span of tokens in any window maps back to
characters of the context (:func:`char_span`) and an answer's characters to tokens (:func:`answer_tokens`).

In training, a window whose piece holds the whole answer is labelled with the answer's positions in the window;
one that does not is labelled with [CLS] (position 0, both ends), as BERT on SQuAD v2.0 and its strided v1.1 runs
do. At inference the best span over all windows wins (:func:`tformer.models.bert.span.best_spans`, score = start
logit + end logit).

Pure Python: token ids and offsets in, windows out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tformer.errors import TformerError

__all__ = ["Window", "answer_tokens", "char_span", "make_windows", "piece_starts"]


@dataclass(frozen=True)
class Window:
    """One model input of a question over a piece of its context.

    Attributes:
        ids: [CLS] question [SEP] piece [SEP], token ids.
        token_types: 0 over [CLS] question [SEP], 1 over piece [SEP].
        offset: the position in ``ids`` of the piece's first token.
        first: the index, among the context's tokens, of the piece's first token.
        length: the number of the context's tokens in the piece.
        start, end: the answer's first and last positions in ``ids`` (0, 0 = [CLS]: not in this piece); -1, -1
            when no answer was given (inference).
    """

    ids: list[int]
    token_types: list[int]
    offset: int
    first: int
    length: int
    start: int = -1
    end: int = -1

    def context_index(self, position: int) -> int:
        """The context token at ``position`` of ``ids`` (which must be in the piece)."""
        if not self.offset <= position < self.offset + self.length:
            raise TformerError(f"position {position} is outside the piece [{self.offset}, {self.offset + self.length})")
        return self.first + position - self.offset


def piece_starts(num_tokens: int, piece_len: int, doc_stride: int) -> list[int]:
    """The first context token of each piece: 0, doc_stride, 2 doc_stride, ... until a piece reaches the end."""
    if piece_len < 1 or doc_stride < 1:
        raise TformerError(f"a piece needs at least one token and a stride of at least one, got {piece_len}, "
                           f"{doc_stride}")
    if doc_stride > piece_len:
        raise TformerError(f"qa.doc_stride {doc_stride} is longer than a window's piece of context ({piece_len} "
                           "tokens): some tokens would be in no window")
    starts = [0]
    while starts[-1] + piece_len < num_tokens:
        starts.append(starts[-1] + doc_stride)
    return starts


def make_windows(question_ids: Sequence[int], context_ids: Sequence[int], *, cls_id: int, sep_id: int, max_len: int,
                 doc_stride: int, answer: tuple[int, int] | None = None) -> list[Window]:
    """The windows of a question (its token ids, without special tokens) over a context (likewise).

    Args:
        max_len: the positions of a window, special tokens included.
        doc_stride: context tokens between the starts of consecutive pieces.
        answer: the answer's first and last context tokens (:func:`answer_tokens`), for training labels.
    """
    piece_len = max_len - len(question_ids) - 3
    if piece_len < 1:
        raise TformerError(f"a question of {len(question_ids)} tokens leaves no room for the context in a window of "
                           f"{max_len} (shorten qa.max_question_len or raise data.max_len)")
    head = [cls_id, *question_ids, sep_id]
    out = []
    for first in piece_starts(len(context_ids), piece_len, doc_stride):
        piece = list(context_ids[first: first + piece_len])
        start = end = -1
        if answer is not None:
            inside = first <= answer[0] and answer[1] < first + len(piece)
            start, end = (answer[0] - first + len(head), answer[1] - first + len(head)) if inside else (0, 0)
        out.append(Window([*head, *piece, sep_id], [0] * len(head) + [1] * (len(piece) + 1), len(head), first,
                          len(piece), start, end))
    return out


def answer_tokens(offsets: Sequence[tuple[int, int]], start_char: int, end_char: int) -> tuple[int, int]:
    """The first and last tokens whose characters (``offsets``: (start, end) per token) overlap the answer's
    ``[start_char, end_char)``; a TformerError when none does."""
    hit = [i for i, (a, b) in enumerate(offsets) if a < b and a < end_char and start_char < b]
    if not hit:
        raise TformerError(f"no token covers the answer's characters [{start_char}, {end_char})")
    return hit[0], hit[-1]


def char_span(offsets: Sequence[tuple[int, int]], context: str, first: int, last: int) -> tuple[int, int]:
    """The characters [start, end) of the context tokens ``first``..``last``, white space at either end left out
    (a token's offsets may include the space before its word)."""
    start, end = offsets[first][0], offsets[last][1]
    while start < end and context[start].isspace():
        start += 1
    while end > start and context[end - 1].isspace():
        end -= 1
    return start, end
