"""Updates with a NaN or infinite loss or gradient norm: skipped, counted, reported, and too many in a row
stop the run (``train.nonfinite_limit``) with the checkpoints on disk the last good ones. Under fp16 the
gradient scaler's overflows are skipped and counted the same way; they count towards the limit only once
the scale is down to 1."""

from __future__ import annotations

import math
from typing import Any

from tformer.errors import TformerError
from tformer.training.state import TrainState


class NonFiniteLoss(TformerError):
    """Too many updates in a row had a NaN or infinite loss or gradient."""


def count_skip(st: TrainState, loss: float, grad_norm: float, loss_scale: float | None = None
               ) -> tuple[dict[str, Any], str]:
    """Count a skipped update in ``st``; returns its ``skip`` record for metrics.jsonl and its log line.

    The record is numbered as the update it would have been, so that a resume from step ``st.step``
    rewrites it rather than repeats it. ``loss_scale`` is fp16's gradient scale of the update (None without
    a scaler): a finite loss whose scaled gradient overflowed at a scale above 1 is an ``overflow``, the
    scaler's to handle (it lowers its scale); it is counted in ``st.overflow_skips`` but not towards
    ``train.nonfinite_limit``. At a scale of 1 or below the gradient is non-finite by itself and counts.
    """
    st.skipped_updates += 1
    overflow = loss_scale is not None and math.isfinite(loss) and loss_scale > 1
    st.overflow_skips += int(overflow)
    st.nonfinite_in_a_row += int(not overflow)
    what = "loss" if not math.isfinite(loss) else "gradient norm"
    value = loss if not math.isfinite(loss) else grad_norm
    record = {"kind": "skip", "step": st.step + 1, "epoch": st.epoch, "batch_in_epoch": st.batch_in_epoch,
              "reason": f"{what} {value}"}
    if overflow:
        record.update(reason=f"gradient overflow at fp16 loss scale {loss_scale:g}", loss_scale=loss_scale)
        return record, (f"step {st.step + 1}: gradient overflow at fp16 loss scale {loss_scale:g}: update "
                        f"skipped, scale lowered ({st.overflow_skips} overflow(s) in the run)")
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
