"""A trained ``task: summarization`` run (:mod:`tformer.tasks.summarization`): texts in, summaries out, by the run's
beam search (``summarization.beam_size``, ``length_penalty``, ``min_len``, ``no_repeat_ngram_size``; any
:class:`~tformer.generation.GenerationOptions` field given to :meth:`SummarizationPredictor.predict` overrides them).

    >>> p = open_run("runs/sum-copy")
    >>> p.predict(["Foo frobnicates widgets quickly and reliably. It also has a plugin interface."])
    [{'summary': 'fast widget frobnicator'}]

Each text is cut to the run's ``max_source_len`` tokens, as in training.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from tformer.config import from_dict
from tformer.errors import TformerError
from tformer.generation import GenerationOptions
from tformer.tasks.classifier_runs import check_device, input_error
from tformer.tasks.predictor import CONFIG_FILE, Predictor, first_validation_line, register_predictor
from tformer.tasks.summarization import SummarizationSettings, SummarizationTask, Summarizer
from tformer.training.config import RunConfig
from tformer.training.config_file import read_run_config
from tformer.translator import Translator


@register_predictor
class SummarizationPredictor(Predictor):
    """A summarization run's model and tokenizer: a text in, ``{"summary": ...}`` out."""

    task = SummarizationTask.name
    decodes = True

    def __init__(self, summarizer: Summarizer, cfg: RunConfig, settings: SummarizationSettings,
                 run_dir: str | os.PathLike | None = None) -> None:
        self.summarizer, self.cfg, self.settings, self.run_dir = summarizer, cfg, settings, run_dir
        self.model, self.device = summarizer.model, summarizer.device

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike, device: str | torch.device = "cpu") -> SummarizationPredictor:
        d = check_device(device)
        if not (Path(run_dir) / CONFIG_FILE).is_file():
            raise TformerError(f"{run_dir} is not a run directory (it has no {CONFIG_FILE})")
        cfg = read_run_config(Path(run_dir) / CONFIG_FILE)
        settings = from_dict(SummarizationSettings, cfg.task_settings, where=SummarizationTask.name)
        t = Translator.from_pretrained(run_dir, d)
        return cls(Summarizer(t.model, t.vocabs, d, settings.source_len(cfg)), cfg, settings, run_dir)

    def predict(self, inputs: Sequence[Any], **options: Any) -> list[dict[str, Any]]:
        """The summary of each text; ``options`` (GenerationOptions fields by name) override the run's settings."""
        if isinstance(inputs, str):
            raise TformerError("predict() takes a list of texts, not one string")
        for n, text in enumerate(inputs, start=1):
            if not isinstance(text, str):
                raise input_error(n, f"expected a text, got {type(text).__name__}")
            if not text.strip():
                raise input_error(n, "empty text")
        try:
            opts = GenerationOptions.of(self.settings.options(self.cfg), **options)
        except TypeError as e:
            raise TformerError(f"predict(): {e}") from None
        return [{"summary": s} for s in self.summarizer.translate(list(inputs), opts)]

    def example(self) -> str | None:
        """The run's first validation text."""
        return first_validation_line(self.run_dir) if self.run_dir is not None else None

    def info(self) -> dict[str, Any]:
        decoding = dataclasses.asdict(self.settings.options(self.cfg))
        return {"max_source_len": self.summarizer.max_source_len, "decoding": decoding}
