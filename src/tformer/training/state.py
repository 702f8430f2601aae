"""Where a run stands: the counters a checkpoint restores, and how many updates the run has in all."""

from __future__ import annotations

import math
from dataclasses import dataclass

from tformer.training.config import TrainConfig


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
    overflow_skips: int = 0  # of those, fp16 gradients that overflowed at a loss scale above 1 (the scaler's)
    nonfinite_in_a_row: int = 0


@dataclass
class RunClock:
    """The training time of a run in seconds, summed over its invocations (as the processes agreed at each
    update), and the time at which the cosine schedule's decay began (``train.decay_over: minutes``).

    Checkpoints save it beside :class:`TrainState`, not in it: TrainState holds what an exact resume repeats
    bit for bit, and a time never repeats.
    """

    seconds: float = 0.0
    decay_from: float | None = None  # seconds when the warm-up ended (None: still warming up)

    def decay_progress(self, budget_s: float) -> float:
        """The share of the time between the warm-up's end and ``budget_s`` that has passed (0 while warming up)."""
        if self.decay_from is None:
            return 0.0
        return (self.seconds - self.decay_from) / max(budget_s - self.decay_from, 1e-9)


def planned_steps(tc: TrainConfig, st: TrainState, batches_per_epoch: int, per_update: int) -> int:
    """The update at which the run ends: train.max_steps, or the updates left in train.max_epochs from the
    current position (in batches) plus those done, so that a run resumed with another number of batches
    per update (train.accumulate, processes) still trains on exactly max_epochs epochs of batches."""
    total = tc.max_steps
    if tc.max_epochs:
        n = batches_per_epoch
        per_epoch = math.ceil(n / per_update)  # an update never spans two epochs
        left = 0 if st.epoch >= tc.max_epochs else (
            math.ceil((n - st.batch_in_epoch) / per_update) + (tc.max_epochs - st.epoch - 1) * per_epoch)
        total = min(total, st.step + left) if total else st.step + left
    return total
