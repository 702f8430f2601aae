"""The training loop: teacher forcing, label smoothing, Adam with Eq. 3, validation, checkpoints.

One optimizer step:

    for each of `accumulate` token-budget batches:
        logits = model(src, tgt_in)                 # teacher forcing: tgt_in = BOS + target
        loss  += label_smoothed(logits, tgt_out)    # summed over real target tokens (§5.4)
                                                    # (both lines at once: sequence_loss, no stored logits)
    (loss / target tokens).backward(); clip; Adam step; lr = Eq. 3 (§5.3)

The run directory receives the resolved config, the tokenizer, ``metrics.jsonl`` (one JSON object
per log line), the checkpoints (see :mod:`tformer.io.checkpoints`) and ``model/``, the best
model so far as ``config.json`` + ``model.safetensors``, which :class:`tformer.Translator` loads.

What the loop guarantees (each is a test; the README's "Guarantees" lists them):

* Exact resume. A checkpoint holds everything the next update depends on: weights, Adam's moments,
  the schedule, the RNG states, the position in the epoch's batch list and the partly filled log
  window. ``--resume`` after a clean stop (SIGINT/SIGTERM: the current update finishes, a checkpoint
  is written) or after a SIGKILL continues to bit-identical weights and metrics (``metrics.jsonl``
  loses the lines written after the checkpoint it resumes from, which the resumed run writes again).
* Numerical faults. An update whose loss or gradient norm is NaN or infinite is skipped: the weights,
  Adam's state and the schedule are untouched, the batch is consumed, and a ``skip`` record goes to
  ``metrics.jsonl``. (Under fp16 the gradient scaler skips steps with overflowing gradients itself and
  lowers its scale; as in PyTorch's AMP recipe, those steps still count and advance the schedule.)
  ``train.nonfinite_limit`` such updates in a row stop the run with a one-line error;
  the checkpoints on disk are the last good ones.
* Many processes. Under ``torchrun`` each process trains on its share of every global batch through
  ``DistributedDataParallel`` and ends at the same weights as one process with the same global batch
  (:mod:`tformer.training.distributed`); rank 0 alone writes files.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import hashlib
import inspect
import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from tformer import __version__, tasks
from tformer.console import log, progress
from tformer.data.batching import TokenBatchSampler, rank_share
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
from tformer.io.files import atomic_write_text
from tformer.nn.gradient_checkpointing import set_gradient_checkpointing
from tformer.tasks.base import Task
from tformer.tasks.translation import ParallelData, TranslationTask, prepare_data, read_pairs, sequence_loss
from tformer.training.config import RunConfig, dump_run_config, load_run_config
from tformer.training.distributed import (
    Distributed,
    full_state,
    full_tensor,
    fully_shard_model,
    load_full_model_state,
    rank_seed,
    sharded_optimizer_state,
)
from tformer.training.loss_module import CompiledOrEager, TaskLoss
from tformer.training.schedule import cosine_scheduler, noam_scheduler
from tformer.training.seed import rng_state, set_rng_state, set_seed

CHECKPOINT_DIR = "checkpoints"
__all__ = ["CHECKPOINT_DIR", "ParallelData", "Trainer", "build_optimizer", "prepare_data", "read_pairs",
           "run_training", "sequence_loss"]  # the data helpers and sequence_loss live in tformer.tasks.translation


# ---- the optimizer -------------------------------------------------------------------------
def build_optimizer(params, lr: float = 1.0, betas: tuple[float, float] = (0.9, 0.98), eps: float = 1e-9,
                    weight_decay: float = 0.0, decoupled: bool = False, fused: bool = True) -> torch.optim.Adam:
    """Adam (§5.3: beta1 0.9, beta2 0.98, eps 1e-9); the learning rate comes from the scheduler.

    ``decoupled``: AdamW (Loshchilov and Hutter, 2019), weight decay applied to the weights directly
    rather than added to the gradient. ``params`` may be parameter groups (each with its own decay).
    The fused implementation updates all parameters in one kernel per step (CPU and CUDA), instead of
    a loop of small operations per tensor (``fused=False``: torch's default, e.g. for sharded weights).
    """
    params = list(params)
    tensors = [p for g in params for p in g["params"]] if params and isinstance(params[0], dict) else params
    fused = fused and all(p.device.type in ("cpu", "cuda") for p in tensors)  # other devices: the default
    kind = torch.optim.AdamW if decoupled else torch.optim.Adam
    return kind(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, fused=fused or None)


def decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two parameter groups: the weight matrices of linear and convolution layers get ``weight_decay``;
    biases, norms, embeddings, positions and special tokens get none (the usual AdamW split)."""
    decayed = {id(m.weight) for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))}
    params = list(model.parameters())
    return [{"params": [p for p in params if id(p) in decayed], "weight_decay": weight_decay},
            {"params": [p for p in params if id(p) not in decayed], "weight_decay": 0.0}]


# ---- devices and precision -----------------------------------------------------------------
def pick_device(name: str, index: int | None = None) -> torch.device:
    """The device ``train.device`` names ("auto": cuda, then mps, then cpu); ``index`` picks one of
    several GPUs (a torchrun process's LOCAL_RANK)."""
    device = _pick_device_type(name)
    return torch.device(device.type, index) if index is not None and device.type == "cuda" else device


def _pick_device_type(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TformerError("train.device is cuda but no CUDA device is available")
    return torch.device(name)


def pick_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for plain fp32."""
    if name == "fp32" or (name == "auto" and device.type != "cuda"):
        return None
    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and name == "fp16":
        raise TformerError("train.precision fp16 needs a GPU; use fp32 or bf16 on the CPU")
    return torch.bfloat16 if name == "bf16" else torch.float16


# ---- the loop ------------------------------------------------------------------------------
@dataclass
class TrainState:
    """Counters that a checkpoint restores."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of this epoch already trained on
    best_valid_loss: float = math.inf
    bad_validations: int = 0  # validations since the best one (early stopping)
    stopped_early: bool = False
    skipped_updates: int = 0  # updates skipped for a non-finite loss or gradient, in the whole run
    nonfinite_in_a_row: int = 0


@dataclass
class LogWindow:
    """Sums since the last ``train`` line of metrics.jsonl; a checkpoint carries them (exact resume)."""

    loss: float | Tensor = 0.0  # summed on the device; read at log time (no sync per step)
    nll: float | Tensor = 0.0
    tgt: int = 0
    src: int = 0
    t0: float = field(default_factory=time.perf_counter)

    def state_dict(self) -> dict[str, Any]:
        return {"loss": self.loss, "nll": self.nll, "tgt": self.tgt, "src": self.src}


class NonFiniteLoss(TformerError):
    """Too many updates in a row had a NaN or infinite loss or gradient."""


class Trainer:
    """Trains ``model`` on ``data`` as ``cfg`` says, writing into ``cfg.run_dir``."""

    def __init__(self, cfg: RunConfig, model: torch.nn.Module, task: Task | ParallelData, *,
                 show_progress: bool | None = None, dist: Distributed | None = None):
        self.cfg = cfg
        self.tc = cfg.train
        self.task = TranslationTask(task, cfg.train) if isinstance(task, ParallelData) else task
        self.run_dir = Path(cfg.run_dir)
        self.ckpt_dir = self.run_dir / CHECKPOINT_DIR
        self.dist = dist or Distributed()
        self.device = pick_device(self.tc.device, self.dist.local_rank if self.dist.enabled else None)
        self.amp_dtype = pick_precision(self.tc.precision, self.device)
        sharded = self.dist.enabled and self.tc.parallel == "fsdp"
        # FSDP: rank 0 keeps a whole copy of the weights in CPU memory, for model/ and validation decoding
        self._whole_model = copy.deepcopy(model).cpu() if sharded and self.dist.is_main else None
        self.model = model.to(self.device)
        tc = self.tc
        if tc.gradient_checkpointing:
            set_gradient_checkpointing(self.model)
        self.pin_memory = self.device.type == "cuda"  # page-locked batches: the copy overlaps compute
        self.loss_fn = self._build_loss_fn()
        adamw = tc.optimizer == "adamw"
        params = decay_groups(self.model, tc.weight_decay) if adamw else self.model.parameters()
        self.optimizer = build_optimizer(params, lr=1.0, betas=(tc.beta1, tc.beta2), eps=tc.adam_eps,
                                         weight_decay=tc.weight_decay, decoupled=adamw, fused=self.fsdp is None)
        self.sampler = TokenBatchSampler(*self.task.lengths("train"), tc.max_tokens, shuffle=True, seed=cfg.seed)
        self.per_update = tc.accumulate * self.dist.world_size  # batches in one global batch (one update)
        self.state = TrainState()
        self.total_steps = self._planned_steps()
        self.scheduler = self._build_scheduler()
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.has_valid = len(self.task.lengths("valid")[0]) > 0
        self.window = LogWindow()
        self.show_progress = sys.stderr.isatty() if show_progress is None else show_progress
        self._tb = None
        self._stop_reason: str | None = None  # set by request_stop (SIGINT/SIGTERM): stop after this update
        self._saved_step = -1
        self._t_start = time.perf_counter()  # of this invocation's training (train.max_minutes)
        self._stop_agreed: str | None = None  # set each update by _agree_on_stopping
        self._out_of_time_agreed = False

    def _planned_steps(self) -> int:
        """The update at which the run ends: train.max_steps, or the updates left in train.max_epochs from the
        current position (in batches) plus those done, so that a run resumed with another number of batches
        per update (train.accumulate, processes) still trains on exactly max_epochs epochs of batches."""
        tc, st = self.tc, self.state
        total = tc.max_steps
        if tc.max_epochs:
            n = len(self.sampler.batches_for_epoch(0))
            per_epoch = math.ceil(n / self.per_update)  # an update never spans two epochs
            left = 0 if st.epoch >= tc.max_epochs else (
                math.ceil((n - st.batch_in_epoch) / self.per_update) + (tc.max_epochs - st.epoch - 1) * per_epoch)
            total = min(total, st.step + left) if total else st.step + left
        return total

    def _build_scheduler(self):
        tc = self.tc
        if tc.schedule == "cosine":
            return cosine_scheduler(self.optimizer, tc.warmup_steps, self.total_steps, tc.lr)
        return noam_scheduler(self.optimizer, self.model.cfg.d_model, tc.warmup_steps, tc.lr_scale)

    def _build_loss_fn(self):
        """``task.loss`` as a module (:class:`TaskLoss`), inside DDP when there are several processes, then
        compiled when ``train.compile`` is on."""
        fn = TaskLoss(self.task, self.model, self.tc.label_smoothing)
        self.ddp = self.fsdp = None
        if self.dist.enabled and self.tc.parallel == "fsdp":
            fully_shard_model(fn, self.model)
            self.fsdp = fn
        elif self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            # buffers (the sinusoidal table) are the same on every rank: no broadcast per forward
            no_sync = {"forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(
                DistributedDataParallel).parameters else "broadcast_buffers": False}
            fn = self.ddp = DistributedDataParallel(fn, device_ids=ids, **no_sync)
        return CompiledOrEager(fn) if self.tc.compile else fn

    def request_stop(self, reason: str = "stop requested") -> None:
        """Finish the current update, write a checkpoint and return from :meth:`train` (resumable).

        SIGINT and SIGTERM call this with the signal's name, which the summary reports as ``interrupted``.
        """
        self._stop_reason = reason

    # -- checkpoints --
    def _checkpoint_state(self) -> dict[str, Any]:
        git = _git_commit()
        if self.fsdp is not None:  # gathered whole on rank 0: the same files as without sharding
            model, optimizer = (full_state(self.model.state_dict(), self.dist.is_main),
                                full_state(self.optimizer.state_dict(), self.dist.is_main))
        else:
            model, optimizer = self.model.state_dict(), self.optimizer.state_dict()
        return {
            "model": model,
            "optimizer": optimizer,
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "train_state": vars(self.state).copy(),
            "log_window": self.window.state_dict(),
            "data_fingerprint": self.data_fingerprint(),
            "rng": rng_state(),  # rank 0's
            **({"rng_ranks": self.dist.gather(rng_state())} if self.dist.enabled else {}),  # every rank's
            "world_size": self.dist.world_size,
            "model_config": self.model.cfg.to_dict(),
            "run_config": self.cfg.to_dict(),
            "versions": {"tformer": __version__, "torch": str(torch.__version__), **({"git": git} if git else {})},
        }

    def save(self, best: bool) -> None:
        """Write (if ``best``) best.pt and model/, then the step checkpoint, then last.pt.

        The step checkpoint is the commit point: resume takes the newest one that loads. A kill before
        it is written resumes from the previous one and redoes the same updates, rewriting best.pt and
        model/ with identical contents; a kill after it leaves nothing of this save undone that resume
        needs. Every file is written atomically; a failed write raises :class:`CheckpointError` and
        leaves the files already there intact.

        With several processes every rank calls this (their RNG states are gathered); rank 0 writes.
        """
        state = self._checkpoint_state()
        self._saved_step = self.state.step
        if not self.dist.is_main:
            return
        last = self.ckpt_dir / "last.pt"
        commit = self.ckpt_dir / f"step-{self.state.step:08d}.pt" if self.tc.keep_checkpoints > 0 else last
        first = commit
        if best:
            first = self.ckpt_dir / "best.pt"
            save_checkpoint(first, state)
            try:
                if self._whole_model is not None:
                    self._whole_model.load_state_dict(state["model"])
                (self._whole_model or self.model).save_pretrained(self.run_dir / "model")
            except OSError as e:
                raise CheckpointError(f"cannot write {self.run_dir / 'model'}: {e.strerror or e}") from None
        if first != commit:
            copy_checkpoint(first, commit)
        else:
            save_checkpoint(commit, state)
        if commit != last:
            copy_checkpoint(commit, last)
        prune_checkpoints(self.ckpt_dir, self.tc.keep_checkpoints)  # keep 0: no older step file may outrank last.pt

    def data_fingerprint(self) -> str:
        """What fixes the batches of every epoch: seed, token budget and the pairs' lengths.

        Resuming continues at a position in the epoch's batch list; if any of these changed, that
        position would point into different batches, so resume refuses. The number of batches per
        update (``train.accumulate`` times the number of processes) may change: the position counts
        batches, not updates.
        """
        src, tgt = self.task.lengths("train")
        h = hashlib.sha256()
        h.update(f"{self.cfg.seed}|{self.tc.max_tokens}|{len(src)}".encode())
        h.update(repr(list(zip(src, tgt, strict=True))).encode())
        return h.hexdigest()[:16]

    def resume(self) -> bool:
        """Load the newest usable checkpoint of the run directory; False if there is none."""
        unfinished: list[Path] = []
        if self.dist.is_main:
            unfinished = remove_unfinished(self.ckpt_dir) + remove_unfinished(self.run_dir / "model")
        self.dist.barrier()  # the other ranks read the checkpoints once rank 0 has tidied up
        if self.dist.is_main and unfinished:
            log(f"removed {len(unfinished)} unfinished file(s) of an interrupted write: "
                f"{', '.join(p.name for p in unfinished)}")
        if self.dist.is_main:
            found = latest_valid_checkpoint(self.ckpt_dir, warn=log)
            chosen = None if found is None else str(found[0])
        chosen = self.dist.broadcast(chosen if self.dist.is_main else None)  # every rank resumes from rank 0's pick
        if chosen is None:
            return False
        path = Path(chosen)
        ckpt = found[1] if self.dist.is_main else load_checkpoint(path)
        if ckpt["model_config"] != self.model.cfg.to_dict():
            raise TformerError(f"{path} was trained with another model config; start a new run_dir")
        if ckpt.get("data_fingerprint") != self.data_fingerprint():
            raise TformerError(f"{path} was trained on other batches (seed, train.max_tokens "
                               f"or the data changed): resuming would skip or repeat pairs; start a new run_dir")
        chosen_impl = [{k: g.get(k) for k in ("fused", "foreach")} for g in self.optimizer.param_groups]
        if self.fsdp is not None:  # each rank takes its shard of the whole tensors (cut before they reach a device)
            load_full_model_state(self.model, ckpt["model"])
            self.optimizer.load_state_dict(sharded_optimizer_state(ckpt["optimizer"], self.optimizer))
        else:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
        for g, impl in zip(self.optimizer.param_groups, chosen_impl, strict=True):
            g.update(impl)  # the Adam implementation this run chose (fused or not), not the saving run's
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.state = TrainState(**ckpt["train_state"])
        planned = self._planned_steps()  # train.max_epochs counted from the position, whatever the batches per update
        if planned != self.total_steps:
            self.total_steps = planned
            if self.tc.schedule == "cosine":  # its horizon is the run's last update
                saved = self.scheduler.state_dict()
                self.scheduler = self._build_scheduler()
                self.scheduler.load_state_dict(saved)
        self.window = LogWindow(**ckpt.get("log_window", {}))
        self._restore_rng(ckpt)
        self._saved_step = self.state.step
        dropped = self._truncate_metrics(self.state.step) if self.dist.is_main else 0
        log(f"resumed from {path} at step {self.state.step} (epoch {self.state.epoch})"
            + (f"; dropped {dropped} metrics line(s) written after it" if dropped else ""))
        return True

    def _restore_rng(self, ckpt: dict[str, Any]) -> None:
        """Every rank continues its own random stream when the number of processes is unchanged; otherwise
        each rank gets a fresh stream from (seed, rank, step), and only the data order stays exact."""
        saved_world = ckpt.get("world_size", 1)
        ranks = ckpt.get("rng_ranks")
        if saved_world == self.dist.world_size:
            set_rng_state(ranks[self.dist.rank] if ranks else ckpt["rng"])
            return
        set_rng_state(ckpt["rng"])
        torch.manual_seed(rank_seed(self.cfg.seed, self.dist.rank, self.state.step))
        log(f"the run had {saved_world} process(es), now {self.dist.world_size}: the batches continue "
            f"exactly; dropout draws new random numbers")

    def _truncate_metrics(self, step: int) -> int:
        """Drop metrics.jsonl lines after ``step`` (and a line cut short by a kill): the resumed run
        writes them again. Returns how many were dropped."""
        path = self.run_dir / "metrics.jsonl"
        if not path.is_file():
            return 0
        keep, dropped = [], 0
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                ok = json.loads(line).get("step", 0) <= step
            except (json.JSONDecodeError, AttributeError):
                ok = False
            if ok:
                keep.append(line)
            else:
                dropped += 1
        if dropped:
            atomic_write_text(path, "".join(f"{line}\n" for line in keep))
        return dropped

    # -- metrics --
    def _write_metrics(self, record: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                    self._tb.add_scalar(f"{record['kind']}/{k}", v, record["step"])

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    # -- validation --
    @torch.no_grad()
    def validate(self) -> dict[str, Any]:
        """Validation loss and perplexity over all validation examples, and the task's own metrics
        (translation: BLEU of greedy translations of a sample)."""
        self.model.eval()
        sampler = TokenBatchSampler(*self.task.lengths("valid"), self.tc.max_tokens, shuffle=False)
        loss_sum = nll_sum = 0.0
        tokens = 0
        for idx in sampler.batches_for_epoch(0):
            b = self.task.collate("valid", idx, self.model).to(self.device)
            with self._autocast():  # FSDP: through the sharded root, which gathers the weights
                out = self.task.loss(self.model, b, self.tc.label_smoothing) if self.fsdp is None else self.fsdp(b)
            loss_sum, nll_sum, tokens = loss_sum + out.loss.item(), nll_sum + out.nll.item(), tokens + out.num_tokens
        result: dict[str, Any] = {"kind": "valid", "step": self.state.step, "epoch": self.state.epoch,
                                  "loss": loss_sum / tokens, "nll": nll_sum / tokens,
                                  "ppl": math.exp(min(nll_sum / tokens, 50.0))}
        if self.fsdp is None:
            result.update(self.task.extra_validation(self.model, self.device, self.tc.max_tokens))
        else:  # FSDP: rank 0 decodes with a whole copy of the weights (decoding is no forward of the shards)
            weights = full_state(self.model.state_dict(), self.dist.is_main)
            if self.dist.is_main:
                whole = self._whole_model
                whole.load_state_dict(weights)
                result.update(self.task.extra_validation(whole.to(self.device), self.device, self.tc.max_tokens))
                whole.cpu()
        self.model.train()
        return self.dist.broadcast(result)  # every rank validates; rank 0's numbers decide for all

    # -- training --
    def train(self) -> dict[str, Any]:
        """Run until max_steps / max_epochs / early stopping / a stop request; return a summary."""
        tc, st = self.tc, self.state
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._open_tensorboard()
        if tc.threads:
            torch.set_num_threads(tc.threads)
        steps_per_epoch = math.ceil(len(self.sampler.batches_for_epoch(0)) / self.per_update)
        total = self.total_steps
        procs = f" x {self.dist.world_size} processes ({'FSDP' if self.fsdp else 'DDP'})" if self.dist.enabled else ""
        log(f"training {self.model.num_parameters():,} parameters on {self.device}{procs}"
            f"{'' if self.amp_dtype is None else f' ({self.amp_dtype})'}, seed {self.cfg.seed}: "
            f"{self.sampler.num_pairs} {self.task.unit}, {steps_per_epoch} steps per epoch, "
            f"padding {self.sampler.padding_ratio(0):.1%}, {total} steps")
        eval_every = tc.eval_every or steps_per_epoch
        bar = progress(total=total, initial=st.step, enabled=self.show_progress and self.dist.is_main, unit="step")
        t_start = self._t_start = time.perf_counter()
        self.window.t0 = time.perf_counter()
        self.model.train()
        summary_valid: dict[str, Any] = {}
        stop: str | None = None  # why this invocation stops before the run is done
        with self._stop_on_signals():
            while st.step < total and not st.stopped_early and stop is None:
                batches = self.sampler.batches_for_epoch(st.epoch)
                while st.batch_in_epoch < len(batches) and st.step < total:
                    group = batches[st.batch_in_epoch : st.batch_in_epoch + self.per_update]
                    st.batch_in_epoch += len(group)
                    if not self._update(group):  # skipped: no step, nothing to log; a stop request still stops
                        if self._stopping()[0] is not None:
                            stop = self._stopping()[0]
                            self.save(best=not self.has_valid)
                            break
                        continue
                    bar.update(1)
                    if st.step % tc.log_every == 0 or st.step == total:
                        self._log_train(bar)
                    requested, out_of_time = self._stopping()
                    if out_of_time:  # the budget's end is a natural end: validate there
                        stop = f"train.max_minutes ({tc.max_minutes}) reached"
                    elif requested is not None and st.step < total:  # a signal: save only (exact resume)
                        stop = requested
                    if st.step % eval_every == 0 or st.step == total or out_of_time:
                        summary_valid = self._validate_and_save()
                    elif stop is not None or (tc.save_every and st.step % tc.save_every == 0):
                        self.save(best=not self.has_valid)
                    if stop is not None or st.stopped_early:
                        break
                if st.batch_in_epoch >= len(batches):
                    st.epoch, st.batch_in_epoch = st.epoch + 1, 0
        bar.close()
        if stop is not None:
            log(f"{stop} at step {st.step}: saved a checkpoint; --resume continues the run")
        if self._tb is not None:
            self._tb.close()
        valid = {f"valid_{k}": v for k, v in summary_valid.items() if k in ("loss", "ppl", "bleu", "accuracy")}
        return {"steps": st.step, "epochs": st.epoch, "seconds": round(time.perf_counter() - t_start, 1),
                "stopped_early": st.stopped_early, "out_of_time": stop is not None and "max_minutes" in stop,
                "interrupted": stop if stop is not None and "max_minutes" not in stop else None,
                "skipped_updates": st.skipped_updates, "best_valid_loss": st.best_valid_loss, **valid}

    def _update(self, group: list[list[int]]) -> bool:
        """One optimizer step on the global batch ``group`` (gradient accumulation; with several processes,
        this rank's share of it); False if it was skipped for a non-finite loss or gradient."""
        tc, st, world = self.tc, self.state, self.dist.world_size
        share = rank_share(group, self.dist.rank, world) if self.dist.enabled else group
        # Every rank runs the same number of forward/backward passes (DDP and FSDP communicate in each): where
        # the epoch's last update deals a rank fewer batches, it makes up the count with batches whose loss
        # counts zero.
        passes = math.ceil(len(group) / world)
        micro = [self.task.collate("train", idx, self.model) for idx in share + [group[0]] * (passes - len(share))]
        weights = [1.0] * len(share) + [0.0] * (passes - len(share))
        num_tgt = sum(b.num_tgt_tokens for b in micro[: len(share)])
        if self.dist.enabled:  # the loss is divided by the target tokens of the whole global batch
            count = torch.tensor([num_tgt], dtype=torch.float64, device=self.device)  # NCCL: on the GPU
            num_tgt = int(self.dist.all_sum(count).item())
        self.optimizer.zero_grad(set_to_none=True)
        loss = nll = 0.0
        for i, (b, weight) in enumerate(zip(micro, weights, strict=True)):
            b = _pinned(b).to(self.device, non_blocking=True) if self.pin_memory else b.to(self.device)
            last = i == len(micro) - 1  # DDP/FSDP average the gradients once per update, in the last backward
            if self.fsdp is not None:
                self.fsdp.set_requires_gradient_sync(last)
            with self.ddp.no_sync() if self.ddp is not None and not last else contextlib.nullcontext():
                with self._autocast():
                    out = self.loss_fn(b)
                scaled = out.loss / num_tgt if world == 1 else out.loss * (weight * world / num_tgt)  # DDP: / world
                self.scaler.scale(scaled).backward()
            loss, nll = loss + weight * out.loss.detach(), nll + weight * out.nll
        src = sum(b.num_src_tokens for b in micro[: len(share)])
        self._agree_on_stopping()
        if self.dist.enabled:  # the global batch's sums, for the log and for one decision about skipping
            sums = self.dist.all_sum(torch.stack([torch.as_tensor(x, device=self.device, dtype=torch.float64)
                                                  for x in (loss, nll, float(src))]))
            loss, nll, src = sums[0], sums[1], int(sums[2].item())
        if self.scaler.is_enabled():
            self.scaler.unscale_(self.optimizer)
        params = [p for p in self.model.parameters() if p.grad is not None]
        if tc.clip_norm > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(params, tc.clip_norm)
        else:
            grad_norm = _total_norm([p.grad for p in params])
        if self.fsdp is not None:
            grad_norm = full_tensor(grad_norm)  # the norm over all shards
        # fp16: the gradient scaler skips steps with overflowing gradients itself (and lowers its scale)
        finite = torch.isfinite(loss) & (torch.isfinite(grad_norm) | self.scaler.is_enabled())
        if not bool(finite):  # one sync per update
            self._skip_update(float(loss), float(grad_norm))
            return False
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        st.step += 1
        st.nonfinite_in_a_row = 0
        w = self.window
        w.loss, w.nll, w.tgt = w.loss + loss, w.nll + nll, w.tgt + num_tgt
        w.src += src
        return True

    def _out_of_time(self) -> bool:
        tc = self.tc
        return tc.max_minutes > 0 and time.perf_counter() - self._t_start > 60 * tc.max_minutes

    def _agree_on_stopping(self) -> None:
        """With several processes: whether to stop after this update, for a stop request (signal) or the time
        budget, agreed during the update (one collective), so that one rank's reason stops all after the same
        update. One process decides after the update instead (:meth:`_stopping`)."""
        if not self.dist.enabled:
            return
        stop = self._stop_reason
        flags = self.dist.all_sum(torch.tensor([float(stop is not None), float(self._out_of_time())],
                                               device=self.device))
        self._stop_agreed = (stop or "a stop request to another process") if flags[0] > 0 else None
        self._out_of_time_agreed = bool(flags[1] > 0)

    def _stopping(self) -> tuple[str | None, bool]:
        """(the stop request to act on after this update, whether the time budget is spent)."""
        if self.dist.enabled:
            return self._stop_agreed, self._out_of_time_agreed
        return self._stop_reason, self._out_of_time()

    def _skip_update(self, loss: float, grad_norm: float) -> None:
        st = self.state
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler.is_enabled():
            self.scaler.update()  # unscale_ recorded the overflow: lower the scale, as a skipped step does
        st.skipped_updates += 1
        st.nonfinite_in_a_row += 1
        what = "loss" if not math.isfinite(loss) else "gradient norm"
        value = loss if not math.isfinite(loss) else grad_norm
        # numbered as the update it would have been, so that a resume from step st.step rewrites it, not repeats it
        self._write_metrics({"kind": "skip", "step": st.step + 1, "epoch": st.epoch,
                             "batch_in_epoch": st.batch_in_epoch, "reason": f"{what} {value}"})
        log(f"step {st.step + 1}: {what} is {value}: update skipped ({st.nonfinite_in_a_row} in a row, "
            f"{st.skipped_updates} in the run)")
        if self.tc.nonfinite_limit and st.nonfinite_in_a_row >= self.tc.nonfinite_limit:
            kept = f"the checkpoints in {self.ckpt_dir} are from before them" if self._saved_step >= 0 else \
                "no checkpoint was written"
            raise NonFiniteLoss(f"{st.nonfinite_in_a_row} updates in a row had a non-finite loss or gradient "
                                f"(train.nonfinite_limit) at step {st.step + 1}: stopping; {kept}. "
                                f"Lower train.lr_scale, set train.clip_norm, or check the data")

    @contextlib.contextmanager
    def _stop_on_signals(self):
        """SIGINT and SIGTERM finish the current update, save and stop (resumable); a second SIGINT
        aborts at once. Only the main thread can take signals; elsewhere this does nothing."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):
            if signum == signal.SIGINT and self._stop_reason is not None:
                raise KeyboardInterrupt
            self.request_stop(signal.Signals(signum).name)

        old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    def _log_train(self, bar) -> None:
        w = self.window
        dt = max(time.perf_counter() - w.t0, 1e-9)
        tgt = max(w.tgt, 1)
        rec = {"kind": "train", "step": self.state.step, "epoch": self.state.epoch,
               "loss": float(w.loss) / tgt, "ppl": math.exp(min(float(w.nll) / tgt, 50.0)),
               "lr": self.scheduler.get_last_lr()[0], "tgt_tokens_per_s": w.tgt / dt,
               "tokens_per_s": (w.tgt + w.src) / dt}
        self._write_metrics(rec)
        bar.set_postfix(loss=f"{rec['loss']:.3f}", lr=f"{rec['lr']:.2e}", tok_s=f"{rec['tokens_per_s']:.0f}")
        if not self.show_progress:
            log(f"step {rec['step']} | loss {rec['loss']:.3f} | lr {rec['lr']:.2e} | "
                f"{rec['tokens_per_s']:.0f} tok/s")
        self.window = LogWindow()

    def _validate_and_save(self) -> dict[str, Any]:
        st = self.state
        if not self.has_valid:
            self.save(best=True)  # without validation data the newest model is the one to use
            return {}
        v = self.validate()
        self._write_metrics(v)
        improved = v["loss"] < st.best_valid_loss
        if improved:
            st.best_valid_loss, st.bad_validations = v["loss"], 0
        else:
            st.bad_validations += 1
            if self.tc.patience and st.bad_validations >= self.tc.patience:
                st.stopped_early = True
        extra = "".join(f" | {k} {v[k]:.4g}" for k in ("bleu", "accuracy") if k in v)
        log(f"step {st.step} | valid loss {v['loss']:.3f} | ppl {v['ppl']:.2f}{extra}"
            f"{' | best' if improved else ''}{' | early stop' if st.stopped_early else ''}")
        self.save(best=improved)
        return v

    def _open_tensorboard(self) -> None:
        if not self.dist.is_main:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            return
        # a resumed run first discards events after its checkpoint (a killed run may have written some)
        purge = self.state.step + 1 if self.state.step else None
        self._tb = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=purge)


def _pinned(batch: Any) -> Any:
    """The batch (a dataclass of tensors and counts) with its tensors in page-locked memory, so that the
    copy to the GPU (``non_blocking``) runs while the GPU computes."""
    tensors = {f.name: getattr(batch, f.name) for f in dataclasses.fields(batch)}
    return dataclasses.replace(batch, **{k: v.pin_memory() for k, v in tensors.items() if isinstance(v, Tensor)})


def _total_norm(tensors: list[Tensor]) -> Tensor:
    """The 2-norm of all ``tensors`` together (as clip_grad_norm_ computes it, without clipping)."""
    get_total_norm = getattr(torch.nn.utils, "get_total_norm", None)  # torch >= 2.6
    if get_total_norm is not None:
        return get_total_norm(tensors)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in tensors]))


@functools.cache
def _git_commit() -> str | None:
    import subprocess

    try:
        here = os.path.dirname(os.path.abspath(__file__))
        r = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return r.stdout.strip() or None if r.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


# ---- a whole run ---------------------------------------------------------------------------
def _check_writable(run_dir: Path) -> None:
    """Fail before any work (and without creating anything) if ``run_dir`` cannot be created or written."""
    existing = run_dir.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise TformerError(f"cannot create the run directory {run_dir}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise TformerError(f"cannot write the run directory {run_dir}: {existing} is not writable")


def run_training(cfg: RunConfig, *, resume: bool = False, show_progress: bool | None = None) -> dict[str, Any]:
    """What ``tformer train`` does: prepare the run directory and data, build the model, train.

    Under ``torchrun`` every process calls this; rank 0 prepares the data and tokenizer first, the
    others then load them (the run directory must be on a file system all of them see).
    """
    dist = Distributed.from_env(pick_device(cfg.train.device).type)
    finished = False
    try:
        summary = _run(cfg, dist, resume, show_progress)
        finished = True
        return summary
    finally:
        dist.close(finished)


def _run(cfg: RunConfig, dist: Distributed, resume: bool, show_progress: bool | None) -> dict[str, Any]:
    run_dir = Path(cfg.run_dir)
    _check_writable(run_dir)
    ckpt_dir = run_dir / CHECKPOINT_DIR
    has_run = dist.broadcast(ckpt_dir.is_dir() and any(ckpt_dir.glob("*.pt")))
    if has_run and not resume:
        raise TformerError(f"{run_dir} already holds a run: pass --resume to continue it, or choose another run_dir")
    if cfg.seed is None and resume and has_run and (run_dir / "config.yaml").is_file():
        cfg = dataclasses.replace(cfg, seed=load_run_config(run_dir / "config.yaml").seed)  # the drawn one
    seed = dist.broadcast(cfg.seed if cfg.seed is not None else set_seed(None))  # a drawn seed: rank 0's, for all
    set_seed(seed)
    cfg = dataclasses.replace(cfg, seed=seed)  # config.yaml records the seed actually used
    if dist.is_main:
        task, model = tasks.build(cfg, run_dir, resume=resume and has_run)
    dist.barrier()  # rank 0 has written the tokenizer; the other ranks load it (their weights come from rank 0)
    if not dist.is_main:
        task, model = tasks.build(cfg, run_dir, resume=True)
    if dist.enabled:  # each rank's own dropout stream
        torch.manual_seed(rank_seed(seed, dist.rank))
    trainer = Trainer(cfg, model, task, show_progress=show_progress, dist=dist)
    if resume and has_run and not trainer.resume():
        raise TformerError(f"no usable checkpoint in {ckpt_dir}")
    if dist.is_main:
        atomic_write_text(run_dir / "config.yaml", dump_run_config(cfg))  # only once the run is sure to go on
    summary = trainer.train()
    report = getattr(task, "final_report", None)  # e.g. test accuracy of the best model, scored once
    if dist.is_main and report is not None and not summary["interrupted"] and (run_dir / "model").is_dir():
        summary.update(report(run_dir, trainer.device, cfg.train.max_tokens))
    return {"run_dir": str(run_dir), "seed": seed, **({"processes": dist.world_size} if dist.enabled else {}),
            **summary}
