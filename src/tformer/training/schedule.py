"""The learning-rate schedule of §5.3:

    lrate = d_model^-0.5 * min(step_num^-0.5, step_num * warmup_steps^-1.5)            (Eq. 3)

linear warm-up for ``warmup_steps`` steps, then decay with the inverse square root of the step
(the paper: warmup_steps = 4000). ``scale`` multiplies the whole curve (1 = the paper).

``train.schedule: cosine`` offers the other common curve: linear warm-up to a peak ``train.lr``, then
half a cosine down to 0 at the run's last step, or (``train.decay_over: minutes``) at the end of the run's
time budget ``train.max_minutes``: the decay then follows the clock, so that a run of a fixed length in time
ends at learning rate 0 whatever the machine's speed (the budget-aware schedules of Li et al., 2020,
"Budgeted Training"), at the price of an exactly repeatable run.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


def noam_lr(step: int, d_model: int, warmup_steps: int, scale: float = 1.0) -> float:
    """Eq. 3 at optimizer step ``step`` (counted from 1)."""
    step = max(step, 1)
    return scale * d_model**-0.5 * min(step**-0.5, step * warmup_steps**-1.5)


def noam_scheduler(
    optimizer: torch.optim.Optimizer, d_model: int, warmup_steps: int, scale: float = 1.0
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR that sets the optimizer's lr to Eq. 3 (the optimizer's own lr must be 1.0).

    LambdaLR counts from 0 at construction; Eq. 3 counts the first update as step 1.
    """
    for group in optimizer.param_groups:
        group["lr"] = 1.0
        group["initial_lr"] = 1.0
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: noam_lr(i + 1, d_model, warmup_steps, scale))


def warmup_cosine_lr(step: int, warmup_steps: int, peak: float, progress: float) -> float:
    """Linear warm-up to ``peak`` over ``warmup_steps`` (``step`` counted from 1), then half a cosine from ``peak``
    down to 0 as the decay's ``progress`` goes from 0 to 1 (clamped to [0, 1])."""
    step = max(step, 1)
    if step <= warmup_steps:
        return peak * step / warmup_steps
    return peak * 0.5 * (1.0 + math.cos(math.pi * min(1.0, max(0.0, progress))))


def cosine_lr(step: int, warmup_steps: int, total_steps: int, peak: float) -> float:
    """Linear warm-up to ``peak`` over ``warmup_steps``, then half a cosine down to 0 at ``total_steps``
    (the schedule ViT and most fine-tuning recipes use; ``step`` counted from 1)."""
    progress = (max(step, 1) - warmup_steps) / max(1, total_steps - warmup_steps)
    return warmup_cosine_lr(step, warmup_steps, peak, progress)


def cosine_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int,
                     peak: float) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR that sets the optimizer's lr to :func:`cosine_lr` (the optimizer's own lr must be 1.0)."""
    for group in optimizer.param_groups:
        group["lr"] = 1.0
        group["initial_lr"] = 1.0
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: cosine_lr(i + 1, warmup_steps, total_steps, peak))


def clock_cosine_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int, peak: float,
                           progress: Callable[[], float]) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR that sets the optimizer's lr to :func:`warmup_cosine_lr` with the decay's progress read from
    ``progress()`` at each step (the share of the time budget spent since the warm-up ended; the optimizer's own
    lr must be 1.0)."""
    for group in optimizer.param_groups:
        group["lr"] = 1.0
        group["initial_lr"] = 1.0
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: warmup_cosine_lr(i + 1, warmup_steps, peak,
                                                                                    progress()))


def build_scheduler(schedule: str, optimizer: torch.optim.Optimizer, *, d_model: int, warmup_steps: int,
                    lr_scale: float, lr: float, total_steps: int,
                    progress: Callable[[], float] | None = None) -> torch.optim.lr_scheduler.LambdaLR:
    """The scheduler ``train.schedule`` names: "noam" (Eq. 3, scaled by ``lr_scale``) or "cosine" (peak
    ``lr``, down to 0 at ``total_steps``, or, given ``progress``, as ``progress()`` reaches 1)."""
    if schedule == "cosine" and progress is not None:
        return clock_cosine_scheduler(optimizer, warmup_steps, lr, progress)
    if schedule == "cosine":
        return cosine_scheduler(optimizer, warmup_steps, total_steps, lr)
    return noam_scheduler(optimizer, d_model, warmup_steps, lr_scale)
