"""What ``tformer train`` can train, picked by the config's ``task`` key.

A task knows its examples, how they become batches, the loss, what validation reports, and how its
model is built and saved; :class:`tformer.training.trainer.Trainer` does the rest (Adam and Eq. 3,
accumulation, checkpoints, exact resume, skipped non-finite updates) the same way for all of them.

* ``translation``: the paper's encoder-decoder on parallel text (:mod:`tformer.tasks.translation`);
* ``lm``: the decoder-only (GPT-style) language model on text (:mod:`tformer.tasks.lm`);
* ``classify``: the encoder-only (BERT-style) classifier, from scratch or fine-tuning a BERT such as
  all-MiniLM-L6-v2 (:mod:`tformer.tasks.classify`);
* ``vision``: the Vision Transformer on a built-in image set (:mod:`tformer.tasks.vision`).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from tformer.tasks.base import Task
from tformer.tasks.translation import ParallelData, TranslationTask
from tformer.training.config import TASKS

__all__ = ["TASKS", "ParallelData", "Task", "TranslationTask", "build", "model_width"]


def build(cfg, run_dir: Path, resume: bool):
    """The task named by ``cfg.task`` and a fresh model for it (tokenizer trained and saved, or loaded
    from ``run_dir`` when resuming)."""
    return importlib.import_module(f"tformer.tasks.{cfg.task}").build(cfg, run_dir, resume)


def model_width(cfg) -> int:
    """d_model of the model ``cfg`` builds (Eq. 3's learning rate depends on it)."""
    return importlib.import_module(f"tformer.tasks.{cfg.task}").model_width(cfg)
