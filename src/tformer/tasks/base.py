"""The base class of every task of ``tformer train``: one class holds all a task is.

A task's life in a run (``tformer.tasks.run_training``):

1. at load, before any data is read: :meth:`Task.settings_from` (the task's own section, typed) and
   :meth:`Task.check_config` (the ``model`` and ``data`` sections), each failure one line;
2. :meth:`Task.build`: read and tokenize the data (or load the tokenizer when resuming), build the model;
3. during training (:class:`tformer.training.trainer.Trainer`, through the methods of
   :class:`~tformer.training.task_protocol.TrainingTask`): :meth:`Task.lengths`, :meth:`Task.collate`,
   :meth:`Task.loss`, :meth:`Task.extra_validation`;
4. at the end: :meth:`Task.final_report` on the best model (e.g. test accuracy).

A new task is a subclass decorated with :func:`tformer.tasks.registry.register`, in a module that
``tformer/tasks/__init__.py`` imports.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from tformer.config import from_dict
from tformer.training.config import RunConfig
from tformer.training.label_smoothing import LossOutput
from tformer.training.task_protocol import TaskBatch


@dataclass(frozen=True)
class TaskSettings:
    """The settings of a task: the config's section named after the task (``cmlm: {iterations: 10}``). A task
    with settings subclasses this (frozen, typed fields with defaults, validated in ``__post_init__``)."""


class Task(ABC):
    """A kind of training: its config checks, its model, its batches, its loss, its validation and report.

    Class attributes: ``name`` (the config's ``task``, and the name of its settings section), ``unit`` (what an
    example is called in log lines), ``Settings`` (the dataclass of its section), ``guides_attention`` (whether
    its loss takes the guided attention loss of ``train.guided_attention``: :mod:`tformer.training.guided_attention`)
    and ``restricts_output_vocab`` (whether it builds its model with ``data.output_vocab: target``).
    """

    name: ClassVar[str]
    unit: ClassVar[str] = "examples"
    Settings: ClassVar[type[TaskSettings]] = TaskSettings
    guides_attention: ClassVar[bool] = False  # its loss applies train.guided_attention (encoder-decoder attention)
    restricts_output_vocab: ClassVar[bool] = False  # data.output_vocab: target is its to apply

    # -- the config, before any data is read --
    @classmethod
    def settings_from(cls, cfg: RunConfig) -> TaskSettings:
        """The task's section of ``cfg``, typed (unknown keys and bad values: one-line ConfigError)."""
        return from_dict(cls.Settings, cfg.task_settings, where=cls.name)

    @classmethod
    @abstractmethod
    def check_config(cls, cfg: RunConfig) -> None:
        """Validate the ``model`` and ``data`` sections for this task (one-line ConfigError)."""

    @classmethod
    @abstractmethod
    def model_width(cls, cfg: RunConfig) -> int:
        """d_model of the model ``cfg`` builds (Eq. 3's learning rate depends on it)."""

    @classmethod
    @abstractmethod
    def build(cls, cfg: RunConfig, run_dir: Path, resume: bool) -> tuple[Task, nn.Module]:
        """The task with its data, and a fresh model: the tokenizer is trained and saved in ``run_dir`` (or,
        when ``resume``, loaded from it)."""

    # -- training --
    @abstractmethod
    def lengths(self, split: str) -> tuple[list[int], list[int]]:
        """Source-side and target-side lengths of the ``"train"`` or ``"valid"`` examples (the token budget of a
        batch counts them; a single sequence, or an image's patches, on one side and 0 on the other)."""

    @abstractmethod
    def collate(self, split: str, indices: list[int], model: nn.Module) -> TaskBatch:
        """The batch of these examples of ``split``."""

    @abstractmethod
    def loss(self, model: nn.Module, batch: TaskBatch, label_smoothing: float) -> LossOutput:
        """Summed training loss of a batch (and the summed NLL, for perplexity)."""

    def extra_validation(self, model: nn.Module, device: torch.device, max_tokens: int) -> dict[str, Any]:
        """Metrics beyond loss and perplexity (BLEU, accuracy), on the validation data; none by default."""
        return {}

    def final_report(self, run_dir: Path, device: torch.device, max_tokens: int) -> dict[str, Any]:
        """Numbers for the run's summary from the best model in ``run_dir / "model"``, computed once at the end
        (test accuracy, test perplexity); none by default."""
        return {}
