"""benchmarks/gpu_check.sh: its CPU dry run passes every step and writes the JSON a GPU run writes, so that the
check cannot rot between the rare calls on a GPU; its driver records failures and time-outs and goes on."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import gpu_check  # noqa: E402  (a script beside the benchmarks, not a package)

DRY_STEPS = {"env": "env", "gpu_tests": "tests", "train_tiny_bf16": "train", "train_tiny_bf16_compile": "train",
             "torchrun": "torchrun", "decode": "decode"}
KIND_FILES = {"env.json", "tests.json", "train.json", "torchrun.json", "decode.json"}


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    env = {**os.environ, "TFORMER_PYTHON": sys.executable}  # this interpreter, whatever the venv is called
    p = subprocess.run(["bash", str(BENCHMARKS / "gpu_check.sh"), str(out), "--cpu-dry-run"], capture_output=True,
                       text=True, timeout=300, env=env)
    return p, out, json.loads((out / "summary.json").read_text())


@pytest.mark.slow  # 17 s of subprocesses: ./dev slow runs it; the driver's own tests below stay in the default suite
def test_the_dry_run_passes_every_step(dry_run):
    p, out, summary = dry_run
    assert p.returncode == 0, p.stderr[-3000:]
    assert summary["dry_run"] and summary["finished"] and summary["all_ok"]
    assert {name: s["kind"] for name, s in summary["steps"].items()} == DRY_STEPS
    for name, step in summary["steps"].items():
        assert step["status"] in ("ok", "skipped"), (name, step)
        if step["status"] == "skipped":  # only where the machine lacks a package, with the reason
            assert name == "decode" and "not installed" in step["reason"], step
        assert step["wall_s"] >= 0 and step["timeout_s"] > 0 and step["returncode"] == 0
    # what a device call brings back: at most 8 files, none in subfolders
    files = {f.name for f in out.iterdir()}
    assert {"summary.json", "log.txt"} <= files <= {"summary.json", "log.txt"} | KIND_FILES and len(files) <= 8
    assert all(f"===== {name}: " in (out / "log.txt").read_text() for name in DRY_STEPS)


@pytest.mark.slow
def test_the_dry_run_writes_the_numbers_of_a_gpu_run(dry_run):
    _, out, summary = dry_run
    steps = summary["steps"]
    assert steps["env"]["numbers"]["device"] == "cpu" and steps["env"]["numbers"]["matmul_tflop_s"]["fp32"] > 0
    tests = steps["gpu_tests"]["numbers"]
    assert tests["failed"] == 0 and tests["passed"] + tests["skipped"] > 20  # collected and run (skipped: no CUDA)
    assert all("CUDA" in reason for reason in tests["skip_reasons"])
    for name, compiled in (("train_tiny_bf16", False), ("train_tiny_bf16_compile", True)):
        n = steps[name]["numbers"]
        assert n["compile"] is compiled and n["compile_failed"] is None and n["precision"] == "bf16"
        assert n["tokens_per_s"] > 0 and n["skipped_updates"] == 0 and n["strategy"] == "single process"
        assert 0 < n["loss_later_updates"] < n["loss_first_update"] < 20  # finite, and falling
    run = steps["torchrun"]["numbers"]
    assert (run["backend"], run["world_size"], run["strategy"]) == ("gloo", 1, "DDP") and run["tokens_per_s"] > 0
    assert set(json.loads((out / "train.json").read_text())) == {"train_tiny_bf16", "train_tiny_bf16_compile"}
    if steps["decode"]["status"] == "ok":
        _check_decode(steps["decode"]["numbers"], json.loads((out / "decode.json").read_text())["decode"])


def _check_decode(numbers, record):
    speeds = numbers["tgt_tok_s"]
    assert {f"{impl} {p} {m}" for impl in ("tformer", "ct2", "hf") for p in ("fp32", "fp16")
            for m in ("beam/32", "greedy/1")} == set(speeds)
    assert all(speeds[f"tformer {p} {m}"] > 0 for p in ("fp32", "fp16") for m in ("beam/32", "greedy/1"))
    assert all("float16" in speeds[f"ct2 fp16 {m}"] for m in ("beam/32", "greedy/1"))  # none on the CPU: said so
    ct2_here = isinstance(speeds["ct2 fp32 beam/32"], float)
    assert ct2_here or "not installed" in speeds["ct2 fp32 beam/32"]
    assert ("tformer/ct2 fp32 beam/32" in numbers["ratios"]) == ct2_here
    assert numbers["identical_to_tformer_fp32_greedy"]["hf fp32"] == 1.0  # same weights, same greedy outputs
    assert all(r.get("sentences") == 4 for r in record["results"] if "tgt_tok_s" in r)


# ---- the driver: a failing step and one out of time are recorded, and the next step runs ----------------------
def _step(name, code, timeout=30):
    return gpu_check.Step(name, "train", [sys.executable, "-c", code], timeout)


def test_failures_and_timeouts_are_recorded_and_the_check_goes_on(tmp_path):
    steps = [_step("fails", "import sys; print('something broke'); sys.exit(3)"),
             _step("hangs", "import subprocess, sys, time; c = subprocess.Popen([sys.executable, '-c', 'import time; "
                            "time.sleep(60)'], start_new_session=True); open(sys.argv[1], 'w').write(str(c.pid)); "
                            "time.sleep(60)", timeout=2),  # its child in a session of its own, as torchrun's workers
             _step("works", "import json, sys; open(sys.argv[1], 'w').write(json.dumps({'tokens_per_s': 5}))"),
             _step("says_skipped", "import json, sys; open(sys.argv[1], 'w').write(json.dumps({'skipped': 'why'}))")]
    child = tmp_path / "child.pid"
    steps[1].args.append(str(child))
    for s in steps[2:]:
        s.args.append("{json}")
    check = gpu_check.Check(tmp_path, dry_run=True, budget=60, jobs=1)
    assert not check.main(steps)
    summary = json.loads((tmp_path / "summary.json").read_text())["steps"]
    assert summary["fails"]["status"] == "failed" and "exit status 3: something broke" in summary["fails"]["reason"]
    assert summary["hangs"]["status"] == "timeout" and summary["hangs"]["wall_s"] < 20
    assert not gpu_check.alive(int(child.read_text()))  # its child was ended too
    assert summary["works"]["status"] == "ok" and summary["works"]["numbers"]["tokens_per_s"] == 5
    assert summary["says_skipped"] == {**summary["says_skipped"], "status": "skipped", "reason": "why"}
    assert json.loads((tmp_path / "train.json").read_text()) == {"works": {"tokens_per_s": 5}}


def test_steps_beyond_the_time_budget_are_skipped_with_the_reason(tmp_path):
    check = gpu_check.Check(tmp_path, dry_run=False, budget=10, jobs=1)
    assert check.main([_step("late", "pass")])
    late = json.loads((tmp_path / "summary.json").read_text())["steps"]["late"]
    assert late["status"] == "skipped" and "time budget" in late["reason"]


def test_the_gpu_plan_names_the_workloads_of_the_issue():
    steps = {s.name: s for s in gpu_check.plan(dry_run=False)}
    assert list(steps) == ["env", "gpu_tests", "train_base_bf16", "train_big_bf16", "torchrun", "decode",
                           "train_base_bf16_compile", "train_big_bf16_compile"]
    for name in ("train_base_bf16", "train_big_bf16", "torchrun"):
        assert "--compile" not in steps[name].args and "bf16" in steps[name].args
    assert all("--compile" in steps[n].args for n in ("train_base_bf16_compile", "train_big_bf16_compile"))
    assert all(Path(a).exists() for s in steps.values() for a in s.args if a.endswith(".py"))
    assert "gpu" in steps["gpu_tests"].args and sum(s.timeout for s in steps.values()) > 450  # the budget clips
