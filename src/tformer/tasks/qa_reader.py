"""Answering questions with a trained span model: a question and a context of any length in, the best span of the
context out (its text, its character offsets, its score), and the predictor of runs of task ``qa``.

:class:`Reader` holds what turns text into windows (the tokenizer, its [CLS] and [SEP] ids, the window length, the
stride: :mod:`tformer.data.qa_windows`) and reads a batch of questions: every window of every question goes through
the model, :func:`~tformer.models.bert.span.best_spans` picks each window's best legal span, and the window whose
span scores highest (start logit + end logit) answers; its tokens map back to characters of the context through the
tokenizer's offsets. :class:`QAPredictor` is the same, loaded from a run directory.

Shape legend: B windows, S length.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from tformer.data.qa_windows import Window, answer_tokens, char_span, make_windows
from tformer.errors import TformerError
from tformer.models.bert import EncoderOnlyForQuestionAnswering, best_spans
from tformer.tasks.predictor import Predictor, parse_json_input, register_predictor

READER_FILE = "qa.json"  # in the run directory: the reader's settings and the example question
INPUT_FIELDS = ("question", "context")


@dataclass(frozen=True)
class ReaderSpec:
    """How questions become windows, as a run's ``qa.json`` records it."""

    cls_id: int
    sep_id: int
    pad_id: int
    max_len: int  # positions of a window, special tokens included
    doc_stride: int
    max_question_len: int
    max_answer_len: int


@dataclass(frozen=True)
class Encoded:
    """A question and its context, tokenized: the context's tokens with their character offsets."""

    question_ids: list[int]
    context_ids: list[int]
    offsets: list[tuple[int, int]]


@dataclass(frozen=True)
class WindowBatch:
    ids: Tensor  # (B, S) right-padded
    mask: Tensor  # (B, S) True = real token
    token_types: Tensor  # (B, S)
    answer_mask: Tensor  # (B, S) True where a span may start or end
    start: Tensor  # (B,) target positions (0 = [CLS]); -1 at inference
    end: Tensor  # (B,)
    num_src_tokens: int
    num_tgt_tokens: int  # windows: the loss is averaged over them

    def to(self, device, non_blocking: bool = False) -> WindowBatch:
        t = (x.to(device, non_blocking=non_blocking) for x in (self.ids, self.mask, self.token_types,
                                                               self.answer_mask, self.start, self.end))
        return WindowBatch(*t, self.num_src_tokens, self.num_tgt_tokens)


def collate_windows(windows: Sequence[Window], pad_id: int, cls_answers: bool) -> WindowBatch:
    """A padded batch; ``cls_answers``: [CLS] may be pointed at (training on windows without the answer)."""
    s = max(len(w.ids) for w in windows)
    ids = torch.full((len(windows), s), pad_id, dtype=torch.long)  # (B, S)
    types = torch.zeros((len(windows), s), dtype=torch.long)  # (B, S)
    mask = torch.zeros((len(windows), s), dtype=torch.bool)  # (B, S)
    answer = torch.zeros((len(windows), s), dtype=torch.bool)  # (B, S)
    for b, w in enumerate(windows):
        ids[b, : len(w.ids)] = torch.tensor(w.ids)
        types[b, : len(w.ids)] = torch.tensor(w.token_types)
        mask[b, : len(w.ids)] = True
        answer[b, w.offset: w.offset + w.length] = True
    answer[:, 0] = cls_answers
    start = torch.tensor([w.start for w in windows])  # (B,)
    end = torch.tensor([w.end for w in windows])  # (B,)
    return WindowBatch(ids, mask, types, answer, start, end, int(mask.sum()), len(windows))


class Reader:
    """Questions over contexts -> answers, with a span model (see the module docstring)."""

    def __init__(self, tokenizer, spec: ReaderSpec) -> None:
        self.tokenizer, self.spec = tokenizer, spec
        tokenizer.no_padding()
        tokenizer.no_truncation()

    def encode(self, question: str, context: str) -> Encoded:
        q, c = self.tokenizer.encode_batch([question, context], add_special_tokens=False)
        return Encoded(list(q.ids[: self.spec.max_question_len]), list(c.ids), [tuple(o) for o in c.offsets])

    def windows(self, enc: Encoded, answer: tuple[int, int] | None = None) -> list[Window]:
        """The windows of an encoded question; ``answer`` = the answer's (start, end) characters, for labels."""
        tokens = None if answer is None else answer_tokens(enc.offsets, *answer)
        sp = self.spec
        return make_windows(enc.question_ids, enc.context_ids, cls_id=sp.cls_id, sep_id=sp.sep_id,
                            max_len=sp.max_len, doc_stride=sp.doc_stride, answer=tokens)

    @torch.no_grad()
    def read(self, model: EncoderOnlyForQuestionAnswering, items: Sequence[tuple[str, str]],
             device: torch.device | str = "cpu", max_tokens: int = 4096) -> list[dict[str, Any]]:
        """{"answer", "start", "end", "score"} per (question, context): the best span over all its windows, its
        character offsets [start, end) in the context, and its score (start logit + end logit). Windows are
        batched by length, at most ``max_tokens`` padded tokens a batch (one window at least)."""
        if max_tokens < 1:
            raise TformerError(f"max_tokens must be >= 1, got {max_tokens}")
        encoded = [self.encode(q, c) for q, c in items]
        flat = [(k, w) for k, enc in enumerate(encoded) for w in self.windows(enc)]
        flat.sort(key=lambda kw: len(kw[1].ids))  # similar lengths together: less padding
        best: list[tuple[float, int, int] | None] = [None] * len(items)
        was_training = model.training
        model.eval()
        at = 0
        while at < len(flat):
            n = 1
            while at + n < len(flat) and (n + 1) * len(flat[at + n][1].ids) <= max_tokens:
                n += 1  # (sorted: the newest window is the longest of the batch)
            chunk, at = flat[at: at + n], at + n
            b = collate_windows([w for _, w in chunk], self.spec.pad_id, cls_answers=False).to(device)
            start_logits, end_logits = model(b.ids, b.mask, b.token_types, b.answer_mask)  # 2 x (B, S)
            starts, ends, scores = best_spans(start_logits.float(), end_logits.float(), b.answer_mask,
                                              self.spec.max_answer_len)  # 3 x (B,)
            for (k, w), i, j, score in zip(chunk, starts.tolist(), ends.tolist(), scores.tolist(), strict=True):
                if score > float("-inf") and (best[k] is None or score > best[k][0]):
                    best[k] = (score, w.context_index(i), w.context_index(j))
        model.train(was_training)
        out = []
        for (_, context), enc, found in zip(items, encoded, best, strict=True):
            if found is None:  # (an empty context: no window has a token of it)
                out.append({"answer": "", "start": 0, "end": 0, "score": float("-inf")})
                continue
            start, end = char_span(enc.offsets, context, found[1], found[2])
            out.append({"answer": context[start:end], "start": start, "end": end, "score": found[0]})
        return out


def write_reader(run_dir: Path, spec: ReaderSpec, example: dict[str, str] | None) -> None:
    """Record the reader's settings and the example question in the run directory."""
    from tformer.io.files import atomic_write_text

    atomic_write_text(run_dir / READER_FILE, json.dumps({**asdict(spec), "example": example}) + "\n")


@register_predictor
class QAPredictor(Predictor):
    """A run of task ``qa``: {"question", "context"} in, {"answer", "start", "end", "score"} out (``start`` and
    ``end`` are character offsets in the context, ``score`` the span's start + end logit)."""

    task = "qa"
    input_kind = "question"

    def __init__(self, model: EncoderOnlyForQuestionAnswering, reader: Reader, example: dict[str, str] | None,
                 device: torch.device | str = "cpu") -> None:
        self.model, self.reader, self._example, self.device = model.eval(), reader, example, device

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike, device: str | torch.device = "cpu") -> QAPredictor:
        from tokenizers import Tokenizer

        d = Path(run_dir)
        missing = [n for n in ("model", "tokenizer.json", READER_FILE) if not (d / n).exists()]
        if missing:
            raise TformerError(f"{d} is not a finished qa run: it has no {', '.join(missing)}")
        try:
            doc = json.loads((d / READER_FILE).read_text(encoding="utf-8"))
            example = doc.pop("example", None)
            spec = ReaderSpec(**doc)
        except (json.JSONDecodeError, TypeError) as e:
            raise TformerError(f"{d / READER_FILE} is damaged: {e}") from None
        model = EncoderOnlyForQuestionAnswering.from_pretrained(d / "model", map_location=device)
        return cls(model, Reader(Tokenizer.from_file(str(d / "tokenizer.json")), spec), example, device)

    def predict(self, inputs: Sequence[Any], max_tokens: int = 4096) -> list[dict[str, Any]]:
        """One answer per {"question", "context"}; windows batched by ``max_tokens`` padded tokens."""
        items = []
        for n, x in enumerate(inputs, 1):
            if not isinstance(x, dict) or any(not isinstance(x.get(f), str) for f in INPUT_FIELDS):
                raise TformerError(f"input {n}: a question is an object with string fields question and context")
            if not x["question"].strip() or not x["context"].strip():
                raise TformerError(f"input {n}: the question and the context must not be empty")
            items.append((x["question"], x["context"]))
        return self.reader.read(self.model, items, self.device, max_tokens)

    def parse_input(self, line: str) -> dict[str, Any]:
        return parse_json_input(line, INPUT_FIELDS)

    def example(self) -> dict[str, str] | None:
        return self._example

    def info(self) -> dict[str, Any]:
        sp = self.reader.spec
        return {"max_len": sp.max_len, "doc_stride": sp.doc_stride, "max_answer_len": sp.max_answer_len}
