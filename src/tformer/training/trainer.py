"""The training loop: teacher forcing, label smoothing, Adam with Eq. 3, validation, checkpoints.

One optimizer step:

    for each of `accumulate` token-budget batches:
        logits = model(src, tgt_in)                 # teacher forcing: tgt_in = BOS + target
        loss  += label_smoothed(logits, tgt_out)    # summed over real target tokens (§5.4)
                                                    # (both lines at once: the task's fused loss, no stored logits)
    (loss / target tokens).backward(); clip; Adam step; lr = Eq. 3 (§5.3)

The loop is the same for every task (a :class:`~tformer.training.task_protocol.TrainingTask`: batches and a
loss) and every parallel mode (a strategy of :mod:`tformer.training.parallel`: one process, DDP, FSDP). The
run directory receives ``metrics.jsonl`` (:mod:`tformer.training.metrics`), the checkpoints and ``model/``
(:mod:`tformer.training.saving`). What the loop guarantees (exact resume, skipped non-finite updates, many
processes ending where one process ends) is listed in :mod:`tformer.training`.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

from tformer.console import log, progress
from tformer.data.batching import TokenBatchSampler, rank_share
from tformer.nn.gradient_checkpointing import set_gradient_checkpointing
from tformer.training.config import RunConfig
from tformer.training.devices import autocast, pick_device, pick_precision, to_device
from tformer.training.distributed import Distributed
from tformer.training.faults import check_limit, count_skip
from tformer.training.metrics import LogWindow, MetricsLog
from tformer.training.optimizer import gradient_norm, optimizer_for
from tformer.training.parallel import parallel_strategy
from tformer.training.saving import CHECKPOINT_DIR, RunCheckpoints, checkpoint_state, load_checkpoint_state
from tformer.training.schedule import build_scheduler
from tformer.training.signals import stop_on_signals
from tformer.training.state import RunClock, TrainState, planned_steps
from tformer.training.task_loss import CompiledOrEager, TaskLoss
from tformer.training.task_protocol import TrainingTask

VALIDATION_SCORES = ("bleu", "accuracy", "cer", "wer")
"""The scores a task's validation may report besides loss and ppl: shown in the log line and the summary."""

__all__ = ["CHECKPOINT_DIR", "Trainer"]


class Trainer:
    """Trains ``model`` on ``task``'s examples as ``cfg.train`` says, writing into ``cfg.run_dir``."""

    def __init__(self, cfg: RunConfig, model: torch.nn.Module, task: TrainingTask, *,
                 show_progress: bool | None = None, dist: Distributed | None = None):
        self.cfg, self.tc, self.task = cfg, cfg.train, task
        tc = cfg.train
        self.run_dir = Path(cfg.run_dir)
        self.dist = dist or Distributed()
        self.device = pick_device(tc.device, self.dist.local_rank if self.dist.enabled else None)
        self.amp_dtype = pick_precision(tc.precision, self.device)
        self.parallel = parallel_strategy(self.dist, tc.parallel, self.device, model)
        self.model = model.to(self.device)
        if tc.gradient_checkpointing:
            set_gradient_checkpointing(self.model)
        self.pin_memory = self.device.type == "cuda"  # page-locked batches: the copy overlaps compute
        self.task_loss = TaskLoss(task, self.model, tc.label_smoothing)
        wrapped = self.parallel.wrap(self.task_loss)
        self.loss_fn = CompiledOrEager(wrapped) if tc.compile else wrapped
        self.optimizer = optimizer_for(self.model, tc, fused=self.parallel.fused_optimizer)
        self.sampler = TokenBatchSampler(*task.lengths("train"), tc.max_tokens, shuffle=True, seed=cfg.seed)
        self.per_update = tc.accumulate * self.dist.world_size  # batches in one global batch (one update)
        self.state = TrainState()
        self.clock = RunClock()  # the run's training time (the time budget; a schedule that follows the clock)
        self._clock_at_start = 0.0  # the run's training time before this invocation
        self.total_steps = self._planned_steps()
        self.scheduler = self._build_scheduler()
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.has_valid = len(task.lengths("valid")[0]) > 0
        self.window = LogWindow()
        self.metrics = MetricsLog(self.run_dir, enabled=self.dist.is_main, tensorboard=tc.tensorboard)
        self.checkpoints = RunCheckpoints(self.run_dir, tc.keep_checkpoints, self.dist)
        self.show_progress = sys.stderr.isatty() if show_progress is None else show_progress
        self._stop_reason: str | None = None  # set by request_stop (SIGINT/SIGTERM): stop after this update
        self._stopping: tuple[str | None, bool] = (None, False)  # agreed each update: (stop request, out of time)
        self._saved_step = -1
        self._t_start = time.perf_counter()  # of this invocation's training (train.max_minutes)

    def _planned_steps(self) -> int:
        n = len(self.sampler.batches_for_epoch(0)) if self.tc.max_epochs else 0
        return planned_steps(self.tc, self.state, n, self.per_update)

    def _build_scheduler(self, steps: int | None = None) -> torch.optim.lr_scheduler.LambdaLR:
        """The schedule over ``steps`` updates (default: the run's)."""
        tc = self.tc
        return build_scheduler(tc.schedule, self.optimizer, d_model=self.model.cfg.d_model, lr=tc.lr,
                               warmup_steps=tc.warmup_steps, lr_scale=tc.lr_scale,
                               total_steps=self.total_steps if steps is None else steps,
                               progress=self._decay_progress if tc.decay_over == "minutes" else None)

    def _decay_progress(self) -> float:
        """How far the clock schedule's decay has come: the share of train.max_minutes spent since warm-up."""
        return self.clock.decay_progress(60 * self.tc.max_minutes)

    def request_stop(self, reason: str = "stop requested") -> None:
        """Finish the current update, write a checkpoint and return from :meth:`train` (resumable); SIGINT and
        SIGTERM call this with the signal's name, which the summary reports as ``interrupted``."""
        self._stop_reason = reason

    # -- checkpoints --
    def save(self, best: bool) -> None:
        """Write a checkpoint of everything the next update depends on (and, if ``best``, ``model/``); see
        :meth:`RunCheckpoints.write`. With several processes every rank calls this; rank 0 writes."""
        state = checkpoint_state(self)
        self._saved_step = self.state.step
        self.checkpoints.write(state, self.state.step, best, lambda path: self.parallel.model_to_save(
            self.model, state["model"]).save_pretrained(path))

    def resume(self) -> bool:
        """Load the newest usable checkpoint of the run directory; False if there is none."""
        found = self.checkpoints.newest()
        if found is None:
            return False
        load_checkpoint_state(self, *found)
        planned = self._planned_steps()  # train.max_epochs counted from the position, whatever the batches per update
        if self.tc.reset_optimizer:  # a fresh schedule over the updates left (the optimizer was not loaded)
            self.total_steps = planned
            self.scheduler = self._build_scheduler(max(planned - self.state.step, 1))
            log(f"train.reset_optimizer: a fresh optimizer and schedule from step {self.state.step}")
        elif planned != self.total_steps:
            self.total_steps = planned
            if self.tc.schedule == "cosine" and self.tc.decay_over == "steps":  # its horizon is the last update
                saved = self.scheduler.state_dict()
                self.scheduler = self._build_scheduler()
                self.scheduler.load_state_dict(saved)
                sched = self.scheduler  # building it set the lr of its first update: that of the next one instead
                for group, base, lr_at in zip(self.optimizer.param_groups, sched.base_lrs, sched.lr_lambdas,
                                              strict=True):
                    group["lr"] = base * lr_at(sched.last_epoch)
        self._saved_step = self.state.step
        dropped = self.metrics.truncate(self.state.step, (self.state.epoch, self.state.batch_in_epoch))
        log(f"resumed from {found[0]} at step {self.state.step} (epoch {self.state.epoch})"
            + (f"; dropped {dropped} metrics line(s) written after it" if dropped else ""))
        return True

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
            with autocast(self.device, self.amp_dtype):  # FSDP: through the sharded root, which gathers the weights
                out = self.task_loss(b)
            loss_sum, nll_sum, tokens = loss_sum + out.loss.item(), nll_sum + out.nll.item(), tokens + out.num_tokens
        result: dict[str, Any] = {"kind": "valid", "step": self.state.step, "epoch": self.state.epoch,
                                  "loss": loss_sum / tokens, "nll": nll_sum / tokens,
                                  "ppl": math.exp(min(nll_sum / tokens, 50.0))}
        with self.parallel.whole_model(self.model) as model:  # None: a rank that does not decode
            if model is not None:
                result.update(self.task.extra_validation(model, self.device, self.tc.max_tokens))
        self.model.train()
        return self.dist.broadcast(result)  # every rank validates; rank 0's numbers decide for all

    def _validate_and_save(self) -> dict[str, Any]:
        st = self.state
        if not self.has_valid:
            self.save(best=True)  # without validation data the newest model is the one to use
            return {}
        v = self.validate()
        self.metrics.write(v)
        improved = v["loss"] < st.best_valid_loss
        if improved:
            st.best_valid_loss, st.bad_validations = v["loss"], 0
        else:
            st.bad_validations += 1
            if self.tc.patience and st.bad_validations >= self.tc.patience:
                st.stopped_early = True
        extra = "".join(f" | {k} {v[k]:.4g}" for k in VALIDATION_SCORES if k in v)
        log(f"step {st.step} | valid loss {v['loss']:.3f} | ppl {v['ppl']:.2f}{extra}"
            f"{' | best' if improved else ''}{' | early stop' if st.stopped_early else ''}")
        self.save(best=improved)
        return v

    # -- training --
    def train(self) -> dict[str, Any]:
        """Run until max_steps / max_epochs / early stopping / a stop request; return a summary."""
        tc, st = self.tc, self.state
        if tc.decay_over == "minutes" and self.clock.seconds >= 60 * tc.max_minutes:  # a finished run
            log(f"this run's time budget (train.max_minutes {tc.max_minutes}, counted over its invocations with "
                "train.decay_over: minutes) is spent: nothing to train; raise it and --resume to train on")
            return self._summary(f"train.max_minutes ({tc.max_minutes}) already spent", {}, 0.0)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics.open_tensorboard(st.step)
        if tc.threads:
            torch.set_num_threads(tc.threads)
        steps_per_epoch = math.ceil(len(self.sampler.batches_for_epoch(0)) / self.per_update)
        self._log_start(steps_per_epoch)
        bar = progress(total=self.total_steps, initial=st.step, enabled=self.show_progress and self.dist.is_main,
                       unit="step")
        self._clock_at_start = self.clock.seconds
        t_start = self._t_start = time.perf_counter()
        self.window.t0 = time.perf_counter()
        self.model.train()
        valid: dict[str, Any] = {}
        stop: str | None = None  # why this invocation stops before the run is done
        with stop_on_signals(self.request_stop, lambda: self._stop_reason is not None):
            while st.step < self.total_steps and not st.stopped_early and stop is None:
                batches = self.sampler.batches_for_epoch(st.epoch)
                while st.batch_in_epoch < len(batches) and st.step < self.total_steps:
                    group = batches[st.batch_in_epoch : st.batch_in_epoch + self.per_update]
                    st.batch_in_epoch += len(group)
                    stop, valid = self._step(group, bar, tc.eval_every or steps_per_epoch, valid)
                    if stop is not None or st.stopped_early:
                        break
                if st.batch_in_epoch >= len(batches):
                    st.epoch, st.batch_in_epoch = st.epoch + 1, 0
        bar.close()
        if stop is not None:
            log(f"{stop} at step {st.step}: saved a checkpoint; {self._after_stop(stop)}")
        self.metrics.close()
        return self._summary(stop, valid, time.perf_counter() - t_start)

    def _after_stop(self, stop: str) -> str:
        """What a stop means for the run: --resume goes on, unless a schedule over the clock has ended."""
        if self.tc.decay_over != "minutes" or "max_minutes" not in stop:
            return "--resume continues the run"
        if self.clock.decay_from is None:
            return "the warm-up outlasted the whole budget and the lr never decayed (lower train.warmup_steps)"
        return "the schedule has reached its end (raise train.max_minutes and --resume to train on)"

    def _summary(self, stop: str | None, valid: dict[str, Any], seconds: float) -> dict[str, Any]:
        st = self.state
        valid = {f"valid_{k}": v for k, v in valid.items() if k in ("loss", "ppl", *VALIDATION_SCORES)}
        return {"steps": st.step, "epochs": st.epoch, "seconds": round(seconds, 1),
                "stopped_early": st.stopped_early, "out_of_time": stop is not None and "max_minutes" in stop,
                "interrupted": stop if stop is not None and "max_minutes" not in stop else None,
                "skipped_updates": st.skipped_updates, "overflow_skips": st.overflow_skips,
                "best_valid_loss": st.best_valid_loss, **valid}

    def _step(self, group: list[list[int]], bar, eval_every: int, valid: dict[str, Any]
              ) -> tuple[str | None, dict[str, Any]]:
        """One update and what follows it (log line, validation, checkpoint); returns (why to stop now, or
        None; the latest validation)."""
        st, tc = self.state, self.tc
        if not self._update(group):  # skipped: no step, nothing to log; a stop request or the budget still stops
            requested, out_of_time = self._stopping
            stop = requested or (f"train.max_minutes ({tc.max_minutes}) reached" if out_of_time else None)
            if stop is not None:
                self.save(best=not self.has_valid)
            return stop, valid
        bar.update(1)
        if st.step % tc.log_every == 0 or st.step == self.total_steps:
            self._log_train(bar)
        requested, out_of_time = self._stopping
        stop = None
        if out_of_time:  # the budget's end is a natural end: validate there
            stop = f"train.max_minutes ({tc.max_minutes}) reached"
        elif requested is not None and st.step < self.total_steps:  # a signal: save only (exact resume)
            stop = requested
        if st.step % eval_every == 0 or st.step == self.total_steps or out_of_time:
            valid = self._validate_and_save()
        elif stop is not None or (tc.save_every and st.step % tc.save_every == 0):
            self.save(best=not self.has_valid)
        return stop, valid

    def _update(self, group: list[list[int]]) -> bool:
        """One optimizer step on the global batch ``group`` (gradient accumulation; with several processes,
        this rank's share of it); False if it was skipped for a non-finite loss or gradient."""
        p, world = self.parallel, self.dist.world_size
        share = rank_share(group, self.dist.rank, world)
        # Every rank runs the same number of forward/backward passes (DDP and FSDP communicate in each): where
        # the epoch's last update deals a rank fewer batches, it makes up the count with batches whose loss
        # counts zero.
        passes = math.ceil(len(group) / world)
        micro = [self.task.collate("train", idx, self.model) for idx in share + [group[0]] * (passes - len(share))]
        weights = [1.0] * len(share) + [0.0] * (passes - len(share))
        num_tgt = p.global_count(sum(b.num_tgt_tokens for b in micro[: len(share)]))  # of the whole global batch
        self.optimizer.zero_grad(set_to_none=True)
        loss = nll = 0.0
        terms: dict[str, Any] = {}  # auxiliary losses inside the loss (the guided attention loss), for the log
        for i, (b, weight) in enumerate(zip(micro, weights, strict=True)):
            b = to_device(b, self.device, self.pin_memory)
            with p.gradient_sync(last=i == len(micro) - 1):  # gradients are averaged once, in the last backward
                with autocast(self.device, self.amp_dtype):
                    out = self.loss_fn(b)
                self.scaler.scale(p.backward_loss(out.loss, weight, num_tgt)).backward()
            loss, nll = loss + weight * out.loss.detach(), nll + weight * out.nll
            for name, value in out.terms.items():
                terms[name] = terms.get(name, 0.0) + weight * value
        src = sum(b.num_src_tokens for b in micro[: len(share)])
        stop, elapsed = p.agree_on_stop(self._stop_reason, time.perf_counter() - self._t_start)  # one for all ranks
        self.clock.seconds = self._clock_at_start + elapsed
        self._stopping = stop, self._out_of_time(elapsed)
        loss, nll, src = p.global_sums(loss, nll, src)  # the global batch's, for the log and one decision to skip
        terms = p.global_terms(terms)
        if self.scaler.is_enabled():
            self.scaler.unscale_(self.optimizer)
        grad_norm = p.global_norm(gradient_norm(self.model, self.tc.clip_norm))
        # fp16: an overflowing (scaled) gradient is skipped the same way; the scaler then lowers its scale
        finite = torch.isfinite(loss) & torch.isfinite(grad_norm)
        if not bool(finite):  # one sync per update
            self._skip_update(float(loss), float(grad_norm))
            return False
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if (self.tc.decay_over == "minutes" and self.clock.decay_from is None
                and self.scheduler.last_epoch + 1 >= self.tc.warmup_steps):
            self.clock.decay_from = self.clock.seconds  # the warm-up's last update: the decay starts here
        self.scheduler.step()
        self.state.step += 1
        self.state.nonfinite_in_a_row = 0
        self.window.add(loss, nll, num_tgt, src, terms)
        return True

    def _out_of_time(self, elapsed: float) -> bool:
        """Whether train.max_minutes is spent: by this invocation (``elapsed`` seconds), or by the whole run when
        the schedule decays over it (train.decay_over: minutes)."""
        spent = self.clock.seconds if self.tc.decay_over == "minutes" else elapsed
        return self.tc.max_minutes > 0 and spent > 60 * self.tc.max_minutes

    def _skip_update(self, loss: float, grad_norm: float) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        scale = None
        if self.scaler.is_enabled():
            scale = self.scaler.get_scale()
            self.scaler.update()  # unscale_ recorded the overflow: lower the scale, as a skipped step does
        record, line = count_skip(self.state, loss, grad_norm, scale)
        self.metrics.write(record)
        log(line)
        check_limit(self.state, self.tc.nonfinite_limit, f"the checkpoints in {self.checkpoints.dir} are from before "
                    "them" if self._saved_step >= 0 else "no checkpoint was written")

    def _log_start(self, steps_per_epoch: int) -> None:
        p = self.parallel
        procs = f" x {self.dist.world_size} processes ({p.name})" if p.name else ""
        log(f"training {self.model.num_parameters():,} parameters on {self.device}{procs}"
            f"{'' if self.amp_dtype is None else f' ({self.amp_dtype})'}, seed {self.cfg.seed}: "
            f"{self.sampler.num_pairs} {self.task.unit}, {steps_per_epoch} steps per epoch, "
            f"padding {self.sampler.padding_ratio(0):.1%}, {self.total_steps} steps"
            + (f" (lr down to 0 at {self.tc.max_minutes:g} minutes)" if self.tc.decay_over == "minutes" else ""))

    def _log_train(self, bar) -> None:
        rec = self.window.record(self.state.step, self.state.epoch, self.scheduler.get_last_lr()[0])
        if self.scaler.is_enabled():
            rec["loss_scale"] = self.scaler.get_scale()  # fp16's gradient scaler, for the next update
        self.metrics.write(rec)
        bar.set_postfix(loss=f"{rec['loss']:.3f}", lr=f"{rec['lr']:.2e}", tok_s=f"{rec['tokens_per_s']:.0f}")
        if not self.show_progress:
            terms = "".join(f" | {name} {rec[name]:.3f}" for name in self.window.terms)
            log(f"step {rec['step']} | loss {rec['loss']:.3f}{terms} | lr {rec['lr']:.2e} | "
                f"{rec['tokens_per_s']:.0f} tok/s")
        self.window = LogWindow()
