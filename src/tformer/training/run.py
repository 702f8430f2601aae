"""A whole training run around the trainer: the run directory, the seed, the processes, the task's model.

:func:`train_run` is what ``tformer train`` does once the config is checked; the task comes in as its
``build`` function (``tformer.tasks.run_training`` passes the registered task's), so this module imports
no task.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from tformer.errors import TformerError
from tformer.io.files import atomic_write_text
from tformer.training.config import RunConfig
from tformer.training.config_file import dump_run_config, read_run_config
from tformer.training.devices import pick_device
from tformer.training.distributed import Distributed, rank_seed
from tformer.training.metrics import check_tensorboard
from tformer.training.saving import CHECKPOINT_DIR, MODEL_DIR
from tformer.training.seed import set_seed
from tformer.training.task_protocol import TrainingTask
from tformer.training.trainer import Trainer

Build = Callable[[RunConfig, Path, bool], tuple[TrainingTask, torch.nn.Module]]


def train_run(cfg: RunConfig, build: Build, *, resume: bool = False, show_progress: bool | None = None
              ) -> dict[str, Any]:
    """Prepare the run directory, build the task and model (``build(cfg, run_dir, resuming)``: tokenizer
    trained and saved, or loaded when resuming), train, and return the summary.

    Under ``torchrun`` every process calls this; rank 0 prepares the data and tokenizer first, the
    others then load them (the run directory must be on a file system all of them see).
    """
    dist = Distributed.from_env(pick_device(cfg.train.device).type)
    finished = False
    try:
        summary = _run(cfg, build, dist, resume, show_progress)
        finished = True
        return summary
    finally:
        dist.close(finished)


def _run(cfg: RunConfig, build: Build, dist: Distributed, resume: bool, show_progress: bool | None
         ) -> dict[str, Any]:
    run_dir = Path(cfg.run_dir)
    check_writable(run_dir)
    if cfg.train.tensorboard:
        check_tensorboard()  # before any work
    ckpt_dir = run_dir / CHECKPOINT_DIR
    has_run = dist.broadcast(ckpt_dir.is_dir() and any(ckpt_dir.glob("*.pt")))
    if has_run and not resume:
        raise TformerError(f"{run_dir} already holds a run: pass --resume to continue it, or choose another run_dir")
    cfg = _seeded(cfg, dist, resume and has_run)
    if dist.is_main:
        task, model = build(cfg, run_dir, resume and has_run)
    dist.barrier()  # rank 0 has written the tokenizer; the other ranks load it (their weights come from rank 0)
    if not dist.is_main:
        task, model = build(cfg, run_dir, True)
    if dist.enabled:  # each rank's own dropout stream
        torch.manual_seed(rank_seed(cfg.seed, dist.rank))
    trainer = Trainer(cfg, model, task, show_progress=show_progress, dist=dist)
    if resume and has_run and not trainer.resume():
        raise TformerError(f"no usable checkpoint in {ckpt_dir}")
    if dist.is_main:
        atomic_write_text(run_dir / "config.yaml", dump_run_config(cfg))  # only once the run is sure to go on
    summary = trainer.train()
    if dist.is_main and not summary["interrupted"] and (run_dir / MODEL_DIR).is_dir():
        summary.update(task.final_report(run_dir, trainer.device, cfg.train.max_tokens))  # e.g. test accuracy
    return {"run_dir": str(run_dir), "seed": cfg.seed, **({"processes": dist.world_size} if dist.enabled else {}),
            **summary}


def _seeded(cfg: RunConfig, dist: Distributed, resuming: bool) -> RunConfig:
    """``cfg`` with the seed the run uses, set: the config's, the one a resumed run drew, or a new draw
    (rank 0's, for all); config.yaml records it."""
    run_dir = Path(cfg.run_dir)
    if cfg.seed is None and resuming and (run_dir / "config.yaml").is_file():
        cfg = dataclasses.replace(cfg, seed=read_run_config(run_dir / "config.yaml").seed)  # the drawn one
    seed = dist.broadcast(cfg.seed if cfg.seed is not None else set_seed(None))
    set_seed(seed)
    return dataclasses.replace(cfg, seed=seed)


def check_writable(run_dir: Path) -> None:
    """Fail before any work (and without creating anything) if ``run_dir`` cannot be created or written."""
    existing = run_dir.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise TformerError(f"cannot create the run directory {run_dir}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise TformerError(f"cannot write the run directory {run_dir}: {existing} is not writable")
