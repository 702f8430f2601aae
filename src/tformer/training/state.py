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
