"""Exact resume of real `tformer train` processes: stopped by SIGTERM, killed by SIGKILL, or killed while
a checkpoint was being written. Each resumed run must end bit-identical to an uninterrupted one.

The interrupted runs are real processes (a signal needs one), forked from a server that has imported torch and
tformer (cli_helpers.tformer_forked; test_distributed.py stops fresh `tformer train` processes under torchrun);
the uninterrupted reference and the resumed runs go through the same main() in this process. All of them use
one torch thread, so that they compute alike."""

import io
import json
import os
import pathlib
import re
import signal
import time

import pytest
import torch
from cli_helpers import start_fork_server, tformer_cli, tformer_forked, torch_threads, write_recipe

from tformer.io.checkpoints import load_checkpoint

# dropout (RNG state), accumulation (stops between micro-batches), checkpoints every 3 updates between
# validations, a log line every 4 updates (a partly filled log window at most checkpoints); 24 updates of
# 9 batches an epoch: the runs resume mid-epoch and go on through 2 more epochs and 2 validations
OVERRIDES = ["model.dropout=0.1", "train.accumulate=2", "train.max_tokens=300", "train.max_steps=24",
             "train.save_every=3", "train.eval_every=12", "train.log_every=4", "translation.bleu_samples=5"]
TIMING = ("tokens_per_s", "tgt_tokens_per_s")


def train_args(recipe, run_dir, *extra):
    return ["train", str(recipe), f"run_dir={run_dir}", *OVERRIDES, "--no-progress", *extra]


def train(*args):
    """`tformer train ARGS` in this process, with the forked processes' one thread."""
    with torch_threads(1):
        return tformer_cli(*args)


def resume(recipe, run_dir):
    r = train(*train_args(recipe, run_dir, "--resume"))
    assert r.returncode == 0, r.stderr
    assert "resumed from" in r.stderr and json.loads(r.stdout)["steps"] == 24
    return r


@pytest.fixture(scope="module")
def recipe(corpus, tmp_path_factory):
    start_fork_server()  # it imports while the straight run trains
    return write_recipe(corpus, tmp_path_factory.mktemp("unused"))


@pytest.fixture(scope="module")
def straight(recipe, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("straight")
    r = train(*train_args(recipe, run_dir))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["steps"] == 24
    return run_dir


def metrics(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


def assert_same_run(a, b):
    ca, cb = load_checkpoint(a / "checkpoints" / "last.pt"), load_checkpoint(b / "checkpoints" / "last.pt")
    for name, t in ca["model"].items():
        assert torch.equal(t, cb["model"][name]), name
    oa, ob = ca["optimizer"], cb["optimizer"]
    assert oa["param_groups"] == ob["param_groups"]
    for i, state in oa["state"].items():
        for k, t in state.items():
            assert torch.equal(t, ob["state"][i][k]), (i, k)
    assert ca["scheduler"] == cb["scheduler"] and ca["train_state"] == cb["train_state"]
    assert metrics(a) == metrics(b)
    assert (a / "model" / "model.safetensors").read_bytes() == (b / "model" / "model.safetensors").read_bytes()


def wait_for(path, proc, timeout=300):
    t0 = time.monotonic()
    while not path.exists():
        assert proc.poll() is None, "training ended before it could be interrupted"
        assert time.monotonic() - t0 < timeout
        time.sleep(0.002)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_a_signalled_run_resumes_to_the_same_end(recipe, straight, tmp_path, sig):
    run_dir = tmp_path / "run"
    proc = tformer_forked(*train_args(recipe, run_dir), threads=1)
    wait_for(run_dir / "checkpoints" / "step-00000006.pt", proc)
    proc.send_signal(sig)
    r = proc.wait()
    out, err = r.stdout, r.stderr
    if sig == signal.SIGTERM:  # finishes its update, checkpoints, exits 128 + 15
        assert r.returncode == 143, err
        summary = json.loads(out)
        assert summary["interrupted"] == "SIGTERM" and 6 <= summary["steps"] < 24
        assert "SIGTERM at step" in err and "--resume" in err
    else:
        assert r.returncode == -signal.SIGKILL
    resume(recipe, run_dir)
    assert_same_run(straight, run_dir)


def half_write_the_third_checkpoint(marker):
    """In the child: torch.save writes half of the third checkpoint, touches ``marker`` and waits to be killed."""
    import tformer.io.checkpoints as ck

    real, calls = torch.save, []

    def half_then_hang(obj, f):
        calls.append(1)
        if len(calls) < 3:
            return real(obj, f)
        buf = io.BytesIO()
        real(obj, buf)
        data = buf.getvalue()
        f.write(data[: len(data) // 2])
        f.flush()
        pathlib.Path(marker).touch()
        time.sleep(600)

    ck.torch.save = half_then_hang


def test_a_kill_mid_write_and_corrupt_checkpoints_are_survived(recipe, straight, tmp_path):
    """Killed while writing the step-9 checkpoint; then a bit flips in step-6 and last.pt. Resume removes the
    half-written file, names the corrupt checkpoint in one line, and falls back to step 3."""
    run_dir, marker = tmp_path / "run", tmp_path / "writing"
    proc = tformer_forked(*train_args(recipe, run_dir), threads=1,
                          before=(half_write_the_third_checkpoint, str(marker)))
    wait_for(marker, proc)
    proc.kill()
    assert proc.wait(60).returncode == -signal.SIGKILL
    ckpts = run_dir / "checkpoints"
    half = [p for p in os.listdir(ckpts) if p.startswith(".tmp-")]
    assert len(half) == 1  # the half-written file exists only under a temporary name
    assert sorted(p for p in os.listdir(ckpts) if p.endswith(".pt")) == ["last.pt", "step-00000003.pt",
                                                                          "step-00000006.pt"]
    for name in ("last.pt", "step-00000006.pt"):
        assert load_checkpoint(ckpts / name)["train_state"]["step"] == 6
        data = bytearray((ckpts / name).read_bytes())  # a flipped bit in the middle of the weights
        data[len(data) // 2] ^= 0x01
        (ckpts / name).write_bytes(bytes(data))
    r = resume(recipe, run_dir)
    assert f"removed 1 unfinished file(s) of an interrupted write: {half[0]}" in r.stderr
    assert re.search(r"warning: corrupt checkpoint \S*step-00000006.pt: checksum mismatch in record \S+; trying an "
                     r"older checkpoint\n", r.stderr)
    assert "step-00000003.pt at step 3" in r.stderr  # step files come before last.pt, which is not needed
    assert not [p for p in os.listdir(ckpts) if p.startswith(".tmp-")]
    assert_same_run(straight, run_dir)
