"""Eq. 3: lrate = d_model^-0.5 * min(step^-0.5, step * warmup^-1.5), through a real optimizer."""

import pytest
import torch

from tformer.training.schedule import noam_lr, noam_scheduler


@pytest.mark.parametrize(
    "step,expected",
    [
        (4000, 6.98771e-4),  # the peak: 1 / sqrt(512 * 4000) = 1 / 1431.08
        (1000, 1.74693e-4),  # warm-up is linear: a quarter of the peak
        (16000, 3.49386e-4),  # 4x the warm-up: half the peak (inverse square root)
        (1, 1.74693e-7),  # 1 / sqrt(512) * 4000^-1.5
    ],
)
def test_eq3_at_chosen_steps(step, expected):
    # Values worked out by hand from Eq. 3 with d_model = 512, warmup_steps = 4000 (the paper's).
    assert noam_lr(step, 512, 4000) == pytest.approx(expected, rel=1e-5)


def test_peak_is_at_warmup_and_equals_closed_form():
    lrs = [noam_lr(s, 512, 4000) for s in range(1, 20000)]
    assert max(range(len(lrs)), key=lrs.__getitem__) + 1 == 4000
    assert max(lrs) == pytest.approx(512**-0.5 * 4000**-0.5)


def test_scheduler_sets_the_optimizer_lr_for_each_update():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=123.0)
    sched = noam_scheduler(opt, d_model=256, warmup_steps=10, scale=2.0)
    seen = []
    for _ in range(30):
        seen.append(opt.param_groups[0]["lr"])  # the lr the next update (step 1, 2, ...) uses
        opt.step()
        sched.step()
    assert seen == pytest.approx([2.0 * noam_lr(s, 256, 10) for s in range(1, 31)])


def test_cosine_schedule_warms_up_linearly_then_follows_half_a_cosine_to_zero():
    import math

    from tformer.training.schedule import cosine_lr, cosine_scheduler

    peak, warm, total = 2e-3, 10, 110
    assert cosine_lr(5, warm, total, peak) == peak * 5 / 10 and cosine_lr(10, warm, total, peak) == peak
    assert cosine_lr(60, warm, total, peak) == pytest.approx(peak * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert cosine_lr(110, warm, total, peak) == pytest.approx(0.0, abs=1e-12)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = cosine_scheduler(opt, warm, total, peak)
    seen = []
    for _ in range(total):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([cosine_lr(i, warm, total, peak) for i in range(1, total + 1)])
