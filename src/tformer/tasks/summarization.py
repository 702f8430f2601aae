"""Summarization: the paper's encoder-decoder reads a text and writes its summary, with See et al.'s (2017) copy
mechanism and coverage loss as options.

Data, tokenizer and decoding are translation's (:class:`SummarizationTask` is a :class:`TranslationTask`): two
aligned files of texts and summaries (``data.train_src``/``train_tgt``, ``valid_*``, ``test_*``), one tokenizer
trained on both sides (``data.shared_vocab: true``, required: the copy mechanism copies source ids into the output),
e.g. Debian's package descriptions (:mod:`tformer.data.debian`, long description -> synopsis). Differences:

* **long sources are cut**, not dropped: a source longer than ``summarization.max_source_len`` tokens (0 =
  ``data.max_len``) keeps its first ``max_source_len`` tokens, in training and decoding alike; summaries longer than
  ``data.max_len`` are dropped. (For inputs too long to cut, the long-input attention kinds of ``model.attention``,
  :mod:`tformer.nn.attention_algorithms`, would read them whole; this task does not need them.)
* **copying**: ``model.pointer_generator: true`` (:mod:`tformer.nn.copy`).
* **coverage**: ``summarization.coverage: λ`` adds λ times the coverage loss (:mod:`tformer.nn.coverage`) of the last
  decoder layer's cross-attention averaged over heads (what the copy mechanism copies with) to the training loss;
  the validation loss stays the plain label-smoothed loss, comparable across runs.
* **the metric**: ROUGE-1/2/L F1 x 100 (:mod:`tformer.evaluation.rouge`, Google's rouge-score). Each validation
  decodes the first ``rouge_samples`` validation texts with ``valid_beam`` (1 = greedy); at the end of the run the
  best model (lowest validation loss) summarizes the test texts (``data.test_src``/``test_tgt``; the first
  ``test_samples``, 0 = all) by beam search (``beam_size``, ``length_penalty``, ``min_len``,
  ``no_repeat_ngram_size``), and the lead baseline (each text's first sentence) is scored on the same texts.

The config: ``task: summarization`` and its section (:class:`SummarizationSettings`); ``model`` as for translation.
A trained run summarizes through its predictor (:mod:`tformer.tasks.summarization_run`): ``tformer predict``, serve.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tformer.config import check
from tformer.data.vocabularies import Vocabularies
from tformer.errors import TformerError
from tformer.evaluation.rouge import lead_baseline, rouge
from tformer.generation import GenerationOptions
from tformer.models.transformer.model import Transformer
from tformer.nn.coverage import coverage_loss
from tformer.tasks.base import TaskSettings
from tformer.tasks.registry import register
from tformer.tasks.translation import ParallelData, TranslationTask, prepare_data, read_pairs, sequence_loss
from tformer.training.config import RunConfig
from tformer.training.label_smoothing import LossOutput, label_smoothed_loss
from tformer.translator import Translator

COVERAGE_TERM = "coverage"  # the coverage loss's name in the train records


@dataclass(frozen=True)
class SummarizationSettings(TaskSettings):
    """The ``summarization`` section.

    Attributes:
        max_source_len: sources are cut to this many tokens (0 = ``data.max_len``; at most ``data.max_len``).
        coverage: λ, the weight of the coverage loss beside the cross-entropy (per target token); 0 = off.
        rouge_samples: validation texts summarized for ROUGE at each validation (0 = skip).
        valid_beam: the beam of those summaries (1 = greedy search).
        test_samples: test texts summarized at the end of the run (0 = all).
        beam_size, length_penalty, min_len, no_repeat_ngram_size: the test's beam search (and the predictor's
            defaults): beam width, alpha of the GNMT length penalty, no EOS before min_len tokens, no repeated
            n-gram of this size (0 = off). ``no_repeat_ngram_size`` and ``min_len`` apply to validation too.
    """

    max_source_len: int = 0
    coverage: float = 0.0
    rouge_samples: int = 200
    valid_beam: int = 1
    test_samples: int = 0
    beam_size: int = 4
    length_penalty: float = 1.0
    min_len: int = 0
    no_repeat_ngram_size: int = 3

    def __post_init__(self) -> None:
        for name in ("max_source_len", "rouge_samples", "test_samples", "min_len", "no_repeat_ngram_size"):
            check(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        check(self.coverage >= 0, f"coverage must be >= 0, got {self.coverage}")
        check(self.valid_beam >= 1 and self.beam_size >= 1, "valid_beam and beam_size must be >= 1")

    def source_len(self, cfg: RunConfig) -> int:
        """Tokens kept of each source."""
        return self.max_source_len or cfg.data.max_len

    def options(self, cfg: RunConfig, beam_size: int | None = None) -> GenerationOptions:
        """The decoding settings: summaries of at most ``data.max_len`` tokens + EOS."""
        return GenerationOptions(beam_size=beam_size or self.beam_size, length_penalty=self.length_penalty,
                                 min_len=self.min_len, max_len=cfg.data.max_len + 1,
                                 no_repeat_ngram_size=self.no_repeat_ngram_size)


class Summarizer(Translator):
    """A :class:`Translator` that cuts each source to ``max_source_len`` tokens, silently (the task's rule, as in
    training), instead of warning about sources longer than the model's positions."""

    def __init__(self, model: Transformer, vocabs: Vocabularies, device: str | torch.device = "cpu",
                 max_source_len: int | None = None) -> None:
        super().__init__(model, vocabs, device)
        self.max_source_len = min(max_source_len or model.cfg.max_len, model.cfg.max_len - 1)

    def _encode(self, texts: Sequence[str], warn) -> list[list[int] | None]:
        if isinstance(texts, str):
            raise TformerError("summarize() takes a list of texts, not one string")
        eos = self.model.cfg.eos_id
        return [ids[: self.max_source_len] + [eos] if ids else None
                for ids in self.vocabs.src.encode_batch(list(texts))]


@register
class SummarizationTask(TranslationTask):
    """Texts -> summaries with :class:`tformer.Transformer` (see the module docstring)."""

    name = "summarization"
    unit = "texts"
    Settings = SummarizationSettings
    guides_attention = False  # a summary does not follow its text in order
    restricts_output_vocab = False  # copying puts any source token in the summary
    settings: SummarizationSettings
    cfg: RunConfig  # the run's config (data.max_len, the test files), set by build

    @classmethod
    def check_config(cls, cfg: RunConfig) -> None:
        cls.checked_model_config(cfg)
        s = cls.settings_from(cfg)
        check(cfg.data.shared_vocab, "task summarization needs data.shared_vocab: true (one vocabulary: copying "
              "puts source ids in the summary)")
        check(s.max_source_len <= cfg.data.max_len, f"summarization.max_source_len ({s.max_source_len}) exceeds "
              f"data.max_len ({cfg.data.max_len})")

    @classmethod
    def prepare_data(cls, cfg: RunConfig, vocabs: Vocabularies | None) -> ParallelData:
        return prepare_data(cfg, vocabs, max_source_len=cls.settings_from(cfg).source_len(cfg))

    @classmethod
    def build(cls, cfg: RunConfig, run_dir: Path, resume: bool) -> tuple[SummarizationTask, Transformer]:
        task, model = super().build(cfg, run_dir, resume)
        task.cfg = cfg
        return task, model

    def loss(self, model: Transformer, batch, label_smoothing: float) -> LossOutput:
        """The label-smoothed loss; in training with ``coverage`` > 0, plus λ times the coverage loss (its sum over
        target tokens, so that the trainer's division by the target tokens leaves λ times the mean)."""
        weight = self.settings.coverage if model.training else 0.0
        if not weight:
            return sequence_loss(model, batch.src, batch.tgt_in, batch.tgt_out, label_smoothing)
        pad = model.cfg.pad_id
        logits, _, cross = model.decode(batch.tgt_in, model.encode(batch.src), batch.src, need_weights=True)
        out = label_smoothed_loss(logits, batch.tgt_out, label_smoothing, pad)
        weights = cross[-1].to(torch.promote_types(cross[-1].dtype, torch.float32))  # at least fp32
        attention = weights.mean(dim=1)  # (B, H, T, S) -> (B, T, S), what the pointer copies with
        cov = coverage_loss(attention, batch.tgt_out != pad)
        return LossOutput(out.loss + weight * cov, out.nll, out.num_tokens, {**out.terms, COVERAGE_TERM: cov.detach()})

    def summarizer(self, model: Transformer, device: torch.device) -> Summarizer:
        return Summarizer(model, self.data.vocabs, device, self.settings.source_len(self.cfg))

    def translate(self, model: Transformer, sources: list[str], device: torch.device, max_tokens: int) -> list[str]:
        """How validation summarizes: ``valid_beam`` (greedy by default), ``min_len`` and ``no_repeat_ngram_size``."""
        opts = self.settings.options(self.cfg, self.settings.valid_beam)
        return self.summarizer(model, device).translate(sources, opts, max_tokens=max_tokens)

    def extra_validation(self, model: Transformer, device: torch.device, max_tokens: int) -> dict[str, Any]:
        """ROUGE-1/2/L of the summaries of the first ``rouge_samples`` validation texts."""
        n = min(self.settings.rouge_samples, len(self.data.valid_text))
        if not n:
            return {}
        sample = self.data.valid_text[:n]
        hyps = self.translate(model, [s for s, _ in sample], device, max_tokens)
        return {**rouge(hyps, [t for _, t in sample]), "rouge_texts": n}

    @torch.no_grad()
    def final_report(self, run_dir: Path, device: torch.device, max_tokens: int) -> dict[str, Any]:
        """Test ROUGE of the best model's beam-search summaries, and of the lead baseline on the same texts."""
        pairs = [(s, t) for s, t in read_pairs(self.cfg, "test") if s.strip() and t.strip()]
        if self.settings.test_samples:
            pairs = pairs[: self.settings.test_samples]
        if not pairs:
            return {}
        best = Transformer.from_pretrained(run_dir / "model", map_location=device).eval()
        texts, refs = [s for s, _ in pairs], [t for _, t in pairs]
        hyps = self.summarizer(best, device).translate(texts, self.settings.options(self.cfg), max_tokens=max_tokens)
        report = {f"test_{k}": v for k, v in rouge(hyps, refs).items()}
        report.update({f"lead_{k}": v for k, v in lead_baseline(texts, refs).items()})
        return {**report, "test_texts": len(pairs)}
