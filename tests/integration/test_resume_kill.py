"""Exact resume of real `tformer train` processes: stopped by SIGTERM, killed by SIGKILL, or killed while
a checkpoint was being written. Each resumed run must end bit-identical to an uninterrupted one."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from cli_helpers import tformer_cli, write_recipe

from tformer.io.checkpoints import load_checkpoint

# dropout (RNG state), accumulation (stops between micro-batches), checkpoints every 3 updates between
# validations, a log line every 4 updates (a partly filled log window at most checkpoints)
OVERRIDES = ["model.dropout=0.1", "train.accumulate=2", "train.max_tokens=300", "train.max_steps=60",
             "train.save_every=3", "train.eval_every=20", "train.log_every=4", "translation.bleu_samples=5"]
TIMING = ("tokens_per_s", "tgt_tokens_per_s")


def train_cmd(recipe, run_dir, *extra):
    return [sys.executable, "-m", "tformer.cli.main", "train", str(recipe), f"run_dir={run_dir}", *OVERRIDES,
            "--no-progress", *extra]


@pytest.fixture(scope="module")
def recipe(corpus, tmp_path_factory):
    return write_recipe(corpus, tmp_path_factory.mktemp("unused"))


@pytest.fixture(scope="module")
def straight(recipe, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("straight")
    r = subprocess.run(train_cmd(recipe, run_dir), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["steps"] == 60
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
    proc = subprocess.Popen(train_cmd(recipe, run_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(run_dir / "checkpoints" / "step-00000006.pt", proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=300)
    if sig == signal.SIGTERM:  # finishes its update, checkpoints, exits 128 + 15
        assert proc.returncode == 143, err
        summary = json.loads(out)
        assert summary["interrupted"] == "SIGTERM" and 6 <= summary["steps"] < 60
        assert "SIGTERM at step" in err and "--resume" in err
    else:
        assert proc.returncode == -signal.SIGKILL
    r = tformer_cli("train", str(recipe), f"run_dir={run_dir}", *OVERRIDES, "--no-progress", "--resume")
    assert r.returncode == 0, r.stderr
    assert "resumed from" in r.stderr and json.loads(r.stdout)["steps"] == 60
    assert_same_run(straight, run_dir)


# The child trains with torch.save replaced by one that writes half of the third checkpoint, tells the
# test, and waits to be killed.
KILL_MID_WRITE = textwrap.dedent("""
    import io, sys, time, pathlib, torch
    import tformer.io.checkpoints as ck
    real, calls = torch.save, []
    def half_then_hang(obj, f):
        calls.append(1)
        if len(calls) < 3:
            return real(obj, f)
        buf = io.BytesIO(); real(obj, buf); data = buf.getvalue()
        f.write(data[: len(data) // 2]); f.flush()
        pathlib.Path(sys.argv[1]).touch()
        time.sleep(600)
    ck.torch.save = half_then_hang
    from tformer.cli.main import main
    sys.exit(main(sys.argv[2:]))
""")


def test_a_kill_mid_write_and_corrupt_checkpoints_are_survived(recipe, straight, tmp_path):
    """Killed while writing the step-9 checkpoint; then a bit flips in step-6 and last.pt. Resume removes the
    half-written file, names the corrupt checkpoint in one line, and falls back to step 3."""
    run_dir, marker = tmp_path / "run", tmp_path / "writing"
    cmd = train_cmd(recipe, run_dir)[3:]  # the arguments after `-m tformer.cli.main`
    proc = subprocess.Popen([sys.executable, "-c", KILL_MID_WRITE, str(marker), *cmd], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_for(marker, proc)
    proc.kill()
    proc.communicate(timeout=60)
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
    r = tformer_cli("train", str(recipe), f"run_dir={run_dir}", *OVERRIDES, "--no-progress", "--resume")
    assert r.returncode == 0, r.stderr
    assert f"removed 1 unfinished file(s) of an interrupted write: {half[0]}" in r.stderr
    assert re.search(r"warning: corrupt checkpoint \S*step-00000006.pt: checksum mismatch in record \S+; trying an "
                     r"older checkpoint\n", r.stderr)
    assert "step-00000003.pt at step 3" in r.stderr  # step files come before last.pt, which is not needed
    assert not [p for p in os.listdir(ckpts) if p.startswith(".tmp-")]
    assert_same_run(straight, run_dir)
