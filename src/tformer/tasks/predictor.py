"""A trained run of any task, ready to use: inputs in, one JSON-able answer out per input.

``tformer predict``, ``tformer generate`` and ``tformer serve`` open a run with :func:`open_run`, which reads the
task from the run's ``config.yaml`` and returns that task's :class:`Predictor`:

    >>> p = open_run("runs/babi-qa")               # task qa -> the extractive QA predictor
    >>> p.predict([{"question": "Where is Mary?", "context": "Mary went to the kitchen."}])
    [{'answer': 'kitchen', 'start': 18, 'end': 25, 'score': 11.3}]   # score: start logit + end logit

A task's module registers its predictor with :func:`register_predictor` (beside ``@register`` for the task).
Translation runs keep their own richer interface (:class:`tformer.translator.Translator`: n-best lists,
attention maps); :func:`open_run` refuses them in one line that says so.

Inputs are what one line of ``tformer predict --input F`` holds, parsed by :meth:`Predictor.parse_input` (plain
text, or a JSON object for inputs with several parts), and what one element of the HTTP request's ``inputs``
holds. Answers are dicts of JSON values (labels, probabilities, spans, text).
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch

from tformer.data.corpus import read_lines
from tformer.errors import TformerError
from tformer.registry import Registry
from tformer.training.config_file import read_run_config

CONFIG_FILE = "config.yaml"


class Predictor(ABC):
    """A trained run: its model, tokenizer (or image reader) and labels, loaded once.

    Class attributes:
        task: the ``task`` of the runs it opens (its key in :data:`PREDICTORS`).
        endpoint: the HTTP route that serves it: ``"predict"`` (an answer per input) or ``"generate"`` (text that
            continues a prompt).
        input_kind: what an input is, for the page and the request schema: ``"text"``, ``"image"`` (a path or the
            pixels) or ``"question"`` (``{"question", "context"}``).
        decodes: whether :meth:`predict` decodes text and so takes decoding options (the fields of
            :class:`~tformer.generation.GenerationOptions` by name: ``beam_size=4, length_penalty=0.6, max_len=...``);
            a predictor that does not takes none.

    Instance attributes every predictor sets: ``model`` (the ``nn.Module``, in eval mode) and ``device``.
    """

    task: ClassVar[str]
    endpoint: ClassVar[str] = "predict"
    input_kind: ClassVar[str] = "text"
    decodes: ClassVar[bool] = False
    model: torch.nn.Module
    device: torch.device

    @classmethod
    @abstractmethod
    def from_run(cls, run_dir: str | os.PathLike, device: str | torch.device = "cpu") -> Predictor:
        """Load the best model of the run in ``run_dir`` (one-line TformerError for a missing or damaged run)."""

    @abstractmethod
    def predict(self, inputs: Sequence[Any], **options: Any) -> list[dict[str, Any]]:
        """One answer per input, in order; inputs are batched as ``translate`` batches sentences. Bad input (an
        empty text, an unreadable image): one-line TformerError naming the input."""

    def parse_input(self, line: str) -> Any:
        """One input from one line of an input file: the line itself (text); a task whose inputs have parts
        overrides this to read a JSON object."""
        return line.rstrip("\n")

    def example(self) -> Any:
        """An input to show first (the page opens with it already answered): by default the run's first
        validation input; None when the run has none."""
        return None

    def info(self) -> dict[str, Any]:
        """What ``GET /info`` adds for this run (labels, the model's config)."""
        return {}


PREDICTORS: Registry[type[Predictor]] = Registry("task with a predictor")


def register_predictor(cls: type[Predictor]) -> type[Predictor]:
    """Class decorator: make ``cls`` the predictor of runs of task ``cls.task``."""
    return PREDICTORS.add(cls.task, cls)


def run_task(run_dir: str | os.PathLike) -> str:
    """The ``task`` of the run in ``run_dir`` (from its config.yaml; one line when there is none)."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise TformerError(f"{run_dir} is not a run directory (it has no {CONFIG_FILE})")
    return read_run_config(path).task


def first_validation_line(run_dir: str | os.PathLike) -> str | None:
    """The first non-empty line of the run's validation source (``data.valid_src`` of its config.yaml), or None
    when the run names none or the file is gone (a run moved to another machine)."""
    try:
        cfg = read_run_config(Path(run_dir) / CONFIG_FILE)
        path = cfg.data.path("valid_src")
        return next((line for line in read_lines(path) if line), None) if path else None
    except (TformerError, OSError):
        return None


def open_run(run_dir: str | os.PathLike, device: str | torch.device = "cpu") -> Predictor:
    """The predictor of the run in ``run_dir``, picked by its task (one-line TformerError when the task has none)."""
    task = run_task(run_dir)
    if task not in PREDICTORS:
        hint = " (use tformer translate or Translator)" if task in ("translation", "cmlm") else ""
        raise TformerError(f"{run_dir} is a run of task {task}, which tformer predict and generate do not serve"
                           f"{hint}; they serve {', '.join(PREDICTORS)}")
    return PREDICTORS[task].from_run(run_dir, device)


def parse_json_input(line: str, fields: tuple[str, ...]) -> dict[str, Any]:
    """A JSON object with string ``fields`` from one input line (one-line TformerError otherwise)."""
    try:
        value = json.loads(line)
    except json.JSONDecodeError as e:
        raise TformerError(f"an input line must be a JSON object with {', '.join(fields)}: {e.msg}") from None
    if not isinstance(value, dict) or any(not isinstance(value.get(f), str) for f in fields):
        raise TformerError(f"an input line must be a JSON object with string fields {', '.join(fields)}")
    return value


def text_or_json_input(line: str, expected: str) -> str | dict[str, Any]:
    """One input line that is either a name (a path, ``digits:N``) or, when it starts with ``{``, a JSON object;
    ``expected`` says what a line may be, for the one-line error of bad JSON."""
    text = line.strip()
    if not text.startswith("{"):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise TformerError(f"{expected}: {e.msg}") from None
