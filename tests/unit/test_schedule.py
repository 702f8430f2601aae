"""Eq. 3: lrate = d_model^-0.5 * min(step^-0.5, step * warmup^-1.5), through a real optimizer."""

import pytest
import torch

from tformer.training.schedule import noam_lr, noam_scheduler


@pytest.mark.parametrize("step", [1, 10, 3999, 4000, 4001, 10000, 100000])
def test_eq3_at_chosen_steps(step):
    expected = 512**-0.5 * min(step**-0.5, step * 4000**-1.5)
    assert noam_lr(step, 512, 4000) == pytest.approx(expected, rel=1e-12)


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
