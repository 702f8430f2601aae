"""Saving a training run and finding where to resume it: which files a save writes, in which order, and
which checkpoint a resume starts from (the file format itself is :mod:`tformer.io.checkpoints`).

A run directory holds ``checkpoints/`` (step files, ``last.pt``, ``best.pt``) and ``model/``, the best model
so far as ``config.json`` + ``model.safetensors``, which :class:`tformer.Translator` loads. What a checkpoint
holds is the trainer's (:meth:`tformer.training.trainer.Trainer.save`); this module adds the versions that
made it and the fingerprint of the batches it was trained on.
"""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tformer.console import log
from tformer.errors import TformerError
from tformer.io.checkpoints import (
    CheckpointError,
    copy_checkpoint,
    latest_valid_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    remove_unfinished,
    save_checkpoint,
)
from tformer.training.distributed import Distributed, rank_seed
from tformer.training.metrics import LogWindow
from tformer.training.seed import rng_state, set_rng_state
from tformer.training.state import RunClock, TrainState
from tformer.version import VERSION

CHECKPOINT_DIR = "checkpoints"
MODEL_DIR = "model"


class RunCheckpoints:
    """The checkpoints and ``model/`` of one run directory. With several processes rank 0 writes and tidies;
    every rank reads the checkpoint rank 0 chose."""

    def __init__(self, run_dir: Path, keep: int, dist: Distributed) -> None:
        self.run_dir, self.dir, self.keep, self.dist = run_dir, run_dir / CHECKPOINT_DIR, keep, dist

    def write(self, state: dict[str, Any], step: int, best: bool, save_model: Callable[[Path], None]) -> None:
        """Write (if ``best``) best.pt and model/ (through ``save_model``), then the step checkpoint, then last.pt.

        The step checkpoint is the commit point: resume takes the newest one that loads. A kill before
        it is written resumes from the previous one and redoes the same updates, rewriting best.pt and
        model/ with identical contents; a kill after it leaves nothing of this save undone that resume
        needs. Every file is written atomically; a failed write raises :class:`CheckpointError` and
        leaves the files already there intact. Ranks other than 0 write nothing.
        """
        if not self.dist.is_main:
            return
        last = self.dir / "last.pt"
        commit = self.dir / f"step-{step:08d}.pt" if self.keep > 0 else last
        first = commit
        if best:
            first = self.dir / "best.pt"
            save_checkpoint(first, state)
            try:
                save_model(self.run_dir / MODEL_DIR)
            except OSError as e:
                raise CheckpointError(f"cannot write {self.run_dir / MODEL_DIR}: {e.strerror or e}") from None
        if first != commit:
            copy_checkpoint(first, commit)
        else:
            save_checkpoint(commit, state)
        if commit != last:
            copy_checkpoint(commit, last)
        prune_checkpoints(self.dir, self.keep)  # keep 0: no older step file may outrank last.pt

    def newest(self) -> tuple[Path, dict[str, Any]] | None:
        """The newest checkpoint that loads, and its contents (None if there is none), after removing the
        unfinished files of an interrupted write."""
        unfinished: list[Path] = []
        if self.dist.is_main:
            unfinished = remove_unfinished(self.dir) + remove_unfinished(self.run_dir / MODEL_DIR)
        self.dist.barrier()  # the other ranks read the checkpoints once rank 0 has tidied up
        found = None
        if self.dist.is_main:
            if unfinished:
                log(f"removed {len(unfinished)} unfinished file(s) of an interrupted write: "
                    f"{', '.join(p.name for p in unfinished)}")
            found = latest_valid_checkpoint(self.dir, warn=log)
        chosen = self.dist.broadcast(None if found is None else str(found[0]))  # every rank: rank 0's pick
        if chosen is None:
            return None
        return Path(chosen), found[1] if self.dist.is_main else load_checkpoint(chosen)


def checkpoint_state(trainer: Any) -> dict[str, Any]:
    """Everything the next update of ``trainer`` (a :class:`~tformer.training.trainer.Trainer`) depends on:
    weights and Adam's moments (whole, on rank 0), the schedule, the counters, the partly filled log window,
    every rank's RNG state, and the configs and versions that made them. Every rank calls it (FSDP gathers)."""
    p = trainer.parallel
    model, optimizer = p.model_state(trainer.model), p.optimizer_state(trainer.optimizer)
    return {"model": model, "optimizer": optimizer, "scheduler": trainer.scheduler.state_dict(),
            "scaler": trainer.scaler.state_dict(), "train_state": vars(trainer.state).copy(),
            "clock": vars(trainer.clock).copy(),
            "log_window": trainer.window.state_dict(), "data_fingerprint": _fingerprint(trainer),
            "rng": rng_state(), **p.rng_ranks(), "world_size": trainer.dist.world_size,
            "model_config": trainer.model.cfg.to_dict(), "run_config": trainer.cfg.to_dict(), "versions": versions()}


def load_checkpoint_state(trainer: Any, path: Path, ckpt: dict[str, Any]) -> None:
    """Put what :func:`checkpoint_state` saved in ``path`` back into ``trainer`` (each rank its shard, its RNG
    stream), after checking that the checkpoint belongs to this model and these batches."""
    if ckpt["model_config"] != trainer.model.cfg.to_dict():
        raise TformerError(f"{path} was trained with another model config; start a new run_dir")
    saved = ckpt.get("data_fingerprint")
    if saved != _fingerprint(trainer, legacy=not str(saved).startswith(FINGERPRINT_PREFIX)):
        raise TformerError(f"{path} was trained on other batches (seed, train.max_tokens "
                           f"or the data changed): resuming would skip or repeat pairs; start a new run_dir")
    optimizer = trainer.optimizer
    chosen_impl = [{k: g.get(k) for k in ("fused", "foreach")} for g in optimizer.param_groups]
    trainer.parallel.load_model_state(trainer.model, ckpt["model"])
    if not trainer.tc.reset_optimizer:  # else the trainer's fresh optimizer, schedule and gradient scaler stay
        trainer.parallel.load_optimizer_state(optimizer, ckpt["optimizer"])
        for g, impl in zip(optimizer.param_groups, chosen_impl, strict=True):
            g.update(impl)  # the Adam implementation this run chose (fused or not), not the saving run's
        trainer.scheduler.load_state_dict(ckpt["scheduler"])
        trainer.scaler.load_state_dict(ckpt["scaler"])
    trainer.state = TrainState(**ckpt["train_state"])
    # the run's training time goes on (a fresh schedule, train.reset_optimizer, starts a fresh clock)
    trainer.clock = RunClock() if trainer.tc.reset_optimizer else RunClock(**ckpt.get("clock", {}))
    if "clock" not in ckpt and trainer.tc.decay_over == "minutes" and not trainer.tc.reset_optimizer:
        log(f"{path} was written before the run's clock was saved: train.decay_over: minutes counts the budget "
            "from now")
    trainer.window = LogWindow(**ckpt.get("log_window", {}))
    restore_rng(ckpt, trainer.dist, trainer.cfg.seed, trainer.state.step)


FINGERPRINT_PREFIX = "v2:"  # checkpoints written before it hold the legacy form (:func:`legacy_data_fingerprint`)


def _fingerprint(trainer: Any, legacy: bool = False) -> str:
    how = legacy_data_fingerprint if legacy else data_fingerprint
    return how(trainer.task.lengths("train"), trainer.cfg.seed, trainer.tc.max_tokens)


def data_fingerprint(lengths: tuple[Sequence[int], Sequence[int]], seed: int | None, max_tokens: int) -> str:
    """What fixes the batches of every epoch: seed, token budget and the examples' lengths.

    Resuming continues at a position in the epoch's batch list; if any of these changed, that
    position would point into different batches, so resume refuses. The number of batches per
    update (``train.accumulate`` times the number of processes) may change: the position counts
    batches, not updates. The lengths (lists or arrays) are hashed as int64 arrays: a fraction of a second for
    WMT's 4.5 million pairs.
    """
    src, tgt = (np.asarray(side, dtype="<i8") for side in lengths)
    if len(src) != len(tgt):
        raise ValueError(f"{len(src)} source lengths but {len(tgt)} target lengths")
    h = hashlib.sha256(f"{seed}|{max_tokens}|{len(src)}".encode())
    h.update(src.tobytes())
    h.update(tgt.tobytes())
    return FINGERPRINT_PREFIX + h.hexdigest()[:16]


def legacy_data_fingerprint(lengths: tuple[Sequence[int], Sequence[int]], seed: int | None, max_tokens: int
                            ) -> str:
    """The fingerprint of checkpoints written before :data:`FINGERPRINT_PREFIX` (the pairs' repr, hashed):
    computed only to resume such a checkpoint."""
    src, tgt = (np.asarray(side, dtype=np.int64).tolist() for side in lengths)
    h = hashlib.sha256()
    h.update(f"{seed}|{max_tokens}|{len(src)}".encode())
    h.update(repr(list(zip(src, tgt, strict=True))).encode())
    return h.hexdigest()[:16]


def restore_rng(ckpt: dict[str, Any], dist: Distributed, seed: int, step: int) -> None:
    """Every rank continues its own random stream when the number of processes is unchanged; otherwise
    each rank gets a fresh stream from (seed, rank, step), and only the data order stays exact."""
    saved_world = ckpt.get("world_size", 1)
    ranks = ckpt.get("rng_ranks")
    if saved_world == dist.world_size:
        set_rng_state(ranks[dist.rank] if ranks else ckpt["rng"])
        return
    set_rng_state(ckpt["rng"])
    torch.manual_seed(rank_seed(seed, dist.rank, step))
    log(f"the run had {saved_world} process(es), now {dist.world_size}: the batches continue "
        f"exactly; dropout draws new random numbers")


def versions() -> dict[str, str]:
    """The versions a checkpoint records: tformer's, torch's and the git commit of a source checkout."""
    git = _git_commit()
    return {"tformer": VERSION, "torch": str(torch.__version__), **({"git": git} if git else {})}


@functools.cache
def _git_commit() -> str | None:
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        r = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return r.stdout.strip() or None if r.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None
