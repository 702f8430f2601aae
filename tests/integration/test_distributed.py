"""Data parallel training with real processes: 2 ranks of `tformer train` talk over PyTorch's Gloo backend on
the CPU. They must end where one process ends with the same global batch (one process with train.accumulate=2
sees the same 2 batches per update as 2 processes with 1 each), and a run must resume with another number of
processes.

`torchrun` itself starts the ranks of the run a signal stops (it passes the signal on to them); the other runs
start their ranks with `tformer_ranks` (real processes with torchrun's environment, forked from a server that
has imported torch and tformer once), and one-process runs go through main() in this process."""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from cli_helpers import default_dtype, start_fork_server, tformer_cli, tformer_ranks, torch_threads, write_recipe

from tformer.io.checkpoints import load_checkpoint

# no dropout, so that one process and two draw no random numbers that could differ
COMMON = ["model.dropout=0.0", "train.max_tokens=300", "train.eval_every=4", "train.log_every=2",
          "train.bleu_samples=4", "train.warmup_steps=4"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
# The runs compared with tolerances sum the same gradients in different orders (accumulation in one process,
# all-reduce, FSDP's reduce-scatter and sharded Adam). In float32 their rounding differs by ~1e-5 after a few
# updates, by an amount that depends on the CPU's kernels (AVX2 or AVX-512); in float64 by ~1e-13, far below
# the tolerances, so those runs train in float64 and are compared tightly. tformer has no float64 setting: the
# runs start with torch's default dtype set to float64, which makes every weight, and with them the activations,
# gradients and Adam's state, float64 (Gloo reduces float64 as it does float32).
CLI = [sys.executable, "-u", "-m", "tformer.cli.main"]


def train_args(recipe, run_dir, *extra):
    return ["train", str(recipe), f"run_dir={run_dir}", *COMMON, *extra, "--no-progress"]


def torchrun_cmd(recipe, run_dir, *extra):
    """`torchrun --nproc_per_node=2 --no-python python -m tformer.cli.main train ...`"""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "--no-python",
            *CLI, *train_args(recipe, run_dir, *extra)]


def one_process(recipe, run_dir, *extra):
    """One process, in float64, one thread as each rank: `tformer train` through main() in this process."""
    with default_dtype(torch.float64), torch_threads(1):
        return tformer_cli(*train_args(recipe, run_dir, *extra))


def two_processes(recipe, run_dir, *extra, float64=True):
    return tformer_ranks(*train_args(recipe, run_dir, *extra), processes=2, float64=float64)


def ok(r):
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1, r.stdout  # only rank 0 prints the summary
    return json.loads(lines[0])


def assert_close_runs(a, b):
    ca, cb = load_checkpoint(a / "checkpoints" / "last.pt"), load_checkpoint(b / "checkpoints" / "last.pt")
    assert ca["train_state"] == cb["train_state"] or (
        {k: v for k, v in ca["train_state"].items() if k != "best_valid_loss"}
        == {k: v for k, v in cb["train_state"].items() if k != "best_valid_loss"})
    assert ca["train_state"]["best_valid_loss"] == pytest.approx(cb["train_state"]["best_valid_loss"], rel=1e-12)
    for name, t in ca["model"].items():
        assert t.dtype == torch.float64, name  # trained in float64, which the tolerances assume
        if name.endswith("k_proj.bias"):
            continue  # its gradient is 0 up to rounding (softmax ignores a shift): Adam turns that noise into steps
        # float64 runs differ by ~1e-13 here (float32 ones by up to 3e-5); a real difference is far above 1e-10
        torch.testing.assert_close(cb["model"][name], t, rtol=1e-10, atol=1e-10, msg=name)
    for i, state in ca["optimizer"]["state"].items():  # Adam's first moment: the gradients' running mean (< 0.03)
        torch.testing.assert_close(cb["optimizer"]["state"][i]["exp_avg"], state["exp_avg"], rtol=1e-10, atol=1e-14)


def train_losses(run_dir):
    return [r["loss"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
            if r["kind"] == "train"]


@pytest.fixture(scope="module")
def recipe(corpus, tmp_path_factory):
    start_fork_server()  # it imports while the first one-process run trains
    return write_recipe(corpus, tmp_path_factory.mktemp("unused"))


@pytest.fixture(scope="module")
def single(recipe, tmp_path_factory):
    """The reference: one process, 2 batches per update, 8 updates."""
    run_dir = tmp_path_factory.mktemp("single")
    assert ok(one_process(recipe, run_dir, "train.accumulate=2", "train.max_steps=8"))["steps"] == 8
    return run_dir


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_processes_end_at_the_weights_of_one_with_the_same_global_batch(recipe, single, tmp_path, parallel):
    run_dir = tmp_path / parallel
    r = two_processes(recipe, run_dir, "train.max_steps=8", f"train.parallel={parallel}")
    summary = ok(r)
    assert f"x 2 processes ({parallel.upper()})" in r.stderr
    assert summary["steps"] == 8 and summary["processes"] == 2
    assert_close_runs(single, run_dir)
    # rank 0 alone wrote the metrics: one line per logged step, global losses equal to one process's
    assert train_losses(run_dir) == pytest.approx(train_losses(single), rel=1e-12)
    assert len(train_losses(run_dir)) == 4
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(p.name for p in single.iterdir())


def test_a_run_resumes_with_another_number_of_processes(recipe, single, tmp_path):
    run_dir = tmp_path / "changing"
    ok(two_processes(recipe, run_dir, "train.max_steps=4"))  # 2 processes x 1 batch for 4 updates,
    r = one_process(recipe, run_dir, "train.accumulate=2", "train.max_steps=8", "--resume")  # then 1 x 2
    assert ok(r)["steps"] == 8
    assert "the run had 2 process(es), now 1" in r.stderr
    assert_close_runs(single, run_dir)


def test_a_sharded_run_resumes_from_and_into_unsharded_checkpoints(recipe, single, tmp_path):
    """FSDP checkpoints hold whole tensors, in the plain format: 1 process -> 2 sharded -> 1 again."""
    run_dir = tmp_path / "fsdp"
    ok(one_process(recipe, run_dir, "train.accumulate=2", "train.max_steps=3"))
    ok(two_processes(recipe, run_dir, "train.max_steps=6", "train.parallel=fsdp", "--resume"))
    r = one_process(recipe, run_dir, "train.accumulate=2", "train.max_steps=8", "--resume")
    assert ok(r)["steps"] == 8
    assert_close_runs(single, run_dir)


def test_an_uneven_last_update_keeps_the_ranks_in_step(recipe, tmp_path):
    """19 batches an epoch, 4 per update: the epoch's fifth update has 3, dealt 2 and 1. The rank with one
    makes up its second pass with a batch that counts zero (FSDP communicates in every pass); the result
    is still one process's with train.accumulate=4."""
    small = ["train.max_tokens=280", "train.max_steps=6", "train.eval_every=6"]
    one = tmp_path / "one"
    ok(one_process(recipe, one, *small, "train.accumulate=4"))
    assert load_checkpoint(one / "checkpoints" / "last.pt")["train_state"]["epoch"] == 1  # past the uneven update
    sharded = tmp_path / "sharded"
    r = two_processes(recipe, sharded, *small, "train.accumulate=2", "train.parallel=fsdp")
    assert ok(r)["processes"] == 2 and "x 2 processes (FSDP)" in r.stderr
    assert_close_runs(one, sharded)
    # rank 0 alone wrote the metrics, with the global losses of one process; the same files
    assert train_losses(sharded) == pytest.approx(train_losses(one), rel=1e-12) and len(train_losses(one)) == 3
    assert sorted(p.name for p in sharded.iterdir()) == sorted(p.name for p in one.iterdir())


def test_a_signal_stops_every_process_after_the_same_update_and_the_run_resumes_exactly(recipe, tmp_path):
    """SIGTERM to torchrun reaches both processes; they finish the same update, rank 0 checkpoints, and
    --resume with 2 processes (each restoring its own dropout stream) ends bit-identical to a run never
    stopped. Bit-identical needs no float64: these runs train in tformer's own float32, one thread a rank."""
    run = ["model.dropout=0.1", "train.max_steps=12", "train.eval_every=12", "train.log_every=1"]
    straight = tmp_path / "straight"
    ok(two_processes(recipe, straight, *run, float64=False))
    stopped = tmp_path / "stopped"
    p = subprocess.Popen(torchrun_cmd(recipe, stopped, *run), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=ENV)
    for line in p.stderr:  # rank 0's log lines; stop once step 3 is done
        if line.startswith("step 3 |"):
            p.send_signal(signal.SIGTERM)
            break
    _, err = p.communicate(timeout=300)
    assert p.returncode != 0 and "saved a checkpoint" in err, err[-2000:]
    state = load_checkpoint(stopped / "checkpoints" / "last.pt")["train_state"]
    assert 3 <= state["step"] < 12
    assert ok(two_processes(recipe, stopped, *run, "--resume", float64=False))["steps"] == 12
    a, b = (load_checkpoint(d / "checkpoints" / "last.pt") for d in (straight, stopped))
    assert all(torch.equal(t, b["model"][name]) for name, t in a["model"].items())
    assert train_losses(stopped) == train_losses(straight)
