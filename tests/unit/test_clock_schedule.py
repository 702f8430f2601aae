"""train.decay_over: minutes: the cosine schedule decays over the run's time budget, read off the clock.

The trainer's clock is replaced by one that advances exactly one second each time it is read, so that the
budget, the lr at each update and the stop are the same on every machine.
"""

import json
import math
from types import SimpleNamespace

import pytest
import torch
from test_trainer import _pairs, _trainer

from tformer.errors import TformerError
from tformer.training.schedule import clock_cosine_scheduler, warmup_cosine_lr
from tformer.training.state import RunClock

PEAK, WARM = 1e-2, 5


@pytest.fixture
def ticking(monkeypatch):
    """The trainer's time.perf_counter, one second later at each read."""
    now = iter(range(1_000_000))
    monkeypatch.setattr("tformer.training.trainer.time", SimpleNamespace(perf_counter=lambda: float(next(now))))


def _clocked(path, **train):
    train = {"schedule": "cosine", "decay_over": "minutes", "lr": PEAK, "warmup_steps": WARM, "max_minutes": 0.5,
             "max_steps": 1000, "max_tokens": 50, **train}
    return _trainer(path, _pairs(30, 4), **train)


def _lrs(run_dir):
    """{step: the lr the next update uses}, from metrics.jsonl."""
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["lr"] for r in lines if r["kind"] == "train"}


def test_the_scheduler_warms_up_by_steps_then_follows_the_given_progress():
    progress = iter([0.0] * 4 + [0.0, 0.25, 0.5, 1.0, 1.7])
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = clock_cosine_scheduler(opt, 4, PEAK, lambda: next(progress))
    seen = [opt.param_groups[0]["lr"]]
    for _ in range(8):
        opt.step()
        sched.step()
        seen.append(opt.param_groups[0]["lr"])
    cos = [PEAK * 0.5 * (1 + math.cos(math.pi * p)) for p in (0.25, 0.5, 1.0, 1.0)]  # 1.7 is clamped to 1
    assert seen == pytest.approx([PEAK / 4, PEAK / 2, PEAK * 3 / 4, PEAK, PEAK, *cos], abs=1e-15)
    assert warmup_cosine_lr(9, 4, PEAK, -0.5) == PEAK  # before the decay starts: the peak


def test_the_decay_reaches_zero_as_the_time_budget_ends(tmp_path, ticking):
    t = _clocked(tmp_path)
    summary = t.train()
    # two reads as training starts, then one an update: update k reads k + 1 s, so the 30-second budget
    # (0.5 minutes) is passed at update 30
    assert summary["out_of_time"] and summary["steps"] == 30 and t.clock.seconds == 31
    lrs = _lrs(tmp_path)
    decaying = [lrs[s] for s in sorted(lrs) if s >= WARM]
    assert decaying[0] == pytest.approx(PEAK) and decaying[-1] < PEAK * 0.01
    assert all(a >= b for a, b in zip(decaying, decaying[1:], strict=False)) and decaying[len(decaying) // 2] < PEAK
    # the closed form at each update, from the warm-up's end on the clock
    start = t.clock.decay_from
    for step in sorted(lrs):
        if step > WARM:
            seconds = start + (step - WARM)  # a second an update
            p = (seconds - start) / (30 - start)
            assert lrs[step] == pytest.approx(PEAK * 0.5 * (1 + math.cos(math.pi * min(p, 1.0))), abs=1e-12), step


def test_a_resumed_run_goes_on_with_the_clock_it_saved(tmp_path, ticking):
    straight = _clocked(tmp_path / "straight")
    straight.train()
    first = _clocked(tmp_path / "resumed", max_steps=12)
    first.train()  # ends at step 12, 13 seconds into its budget
    second = _clocked(tmp_path / "resumed")
    assert second.resume() and second.clock.seconds == first.clock.seconds
    second.train()
    # the budget is the run's: the second invocation trains only for what the first left
    assert abs(second.state.step - straight.state.step) <= 1  # (each invocation reads the clock once more)
    assert second.clock.seconds == pytest.approx(straight.clock.seconds, abs=1)
    assert _lrs(tmp_path / "resumed")[13] < PEAK  # the decay goes on where it was, not from the peak

    spent = _clocked(tmp_path / "resumed")  # its budget is spent: a finished run, nothing to train
    assert spent.resume()
    summary = spent.train()
    assert summary["out_of_time"] and summary["steps"] == second.state.step and spent.clock == second.clock
    fresh = _clocked(tmp_path / "resumed", reset_optimizer=True)  # a fresh schedule, and a fresh clock
    assert fresh.resume() and fresh.clock == RunClock()
    assert fresh.train()["steps"] > second.state.step


def test_decay_over_minutes_needs_the_cosine_schedule_and_a_budget(tmp_path):
    with pytest.raises(TformerError, match="decay_over: minutes needs"):
        _clocked(tmp_path, schedule="noam")
    with pytest.raises(TformerError, match="decay_over: minutes needs"):
        _clocked(tmp_path, max_minutes=0)
    with pytest.raises(TformerError, match="must be steps or minutes"):
        _clocked(tmp_path, decay_over="hours")
