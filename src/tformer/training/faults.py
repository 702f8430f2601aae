"""Updates with a NaN or infinite loss or gradient norm: skipped, counted, reported, and too many in a row
stop the run (``train.nonfinite_limit``) with the checkpoints on disk the last good ones."""

from __future__ import annotations

import math
from typing import Any

from tformer.errors import TformerError
from tformer.training.state import TrainState


class NonFiniteLoss(TformerError):
    """Too many updates in a row had a NaN or infinite loss or gradient."""


def count_skip(st: TrainState, loss: float, grad_norm: float) -> tuple[dict[str, Any], str]:
    """Count a skipped update in ``st``; returns its ``skip`` record for metrics.jsonl and its log line.

    The record is numbered as the update it would have been, so that a resume from step ``st.step``
    rewrites it rather than repeats it.
    """
    st.skipped_updates += 1
    st.nonfinite_in_a_row += 1
    what = "loss" if not math.isfinite(loss) else "gradient norm"
    value = loss if not math.isfinite(loss) else grad_norm
    record = {"kind": "skip", "step": st.step + 1, "epoch": st.epoch, "batch_in_epoch": st.batch_in_epoch,
              "reason": f"{what} {value}"}
    line = (f"step {st.step + 1}: {what} is {value}: update skipped ({st.nonfinite_in_a_row} in a row, "
            f"{st.skipped_updates} in the run)")
    return record, line


def check_limit(st: TrainState, limit: int, kept: str) -> None:
    """Raise :class:`NonFiniteLoss` once ``limit`` updates in a row were skipped (0 = never); ``kept`` says
    what is on disk."""
    if limit and st.nonfinite_in_a_row >= limit:
        raise NonFiniteLoss(f"{st.nonfinite_in_a_row} updates in a row had a non-finite loss or gradient "
                            f"(train.nonfinite_limit) at step {st.step + 1}: stopping; {kept}. "
                            f"Lower train.lr_scale, set train.clip_norm, or check the data")
