"""Everything that needs a CUDA GPU, in one call of at most about 8 minutes, written as JSON into one folder.

    bash benchmarks/gpu_check.sh OUTDIR [--cpu-dry-run]       # picks the Python whose torch has CUDA
    python benchmarks/gpu_check.py OUTDIR [--cpu-dry-run] [--budget 450] [--steps train_base_bf16,decode]

The steps, in this order (the slowest to compile last, so that the call's time budget cuts those first):

    env                        versions, the device, the packages; the measured matmul rate and copy bandwidth
    gpu_tests                  pytest -m gpu tests/gpu: CUDA attention, decoding, fused loss, pinned memory, compile
    train_base_bf16            gpu_train.py: tokens/s and MFU of the paper's base model, bf16 autocast
    train_big_bf16             the same for the big model
    torchrun                   gpu_torchrun.py under torchrun --nproc_per_node 1: DDP over NCCL, tokens/s
    decode                     gpu_decode.py: tformer against CTranslate2 (and HF), fp32 and fp16,
                               beam 4 / batch 32 and greedy / batch 1
    train_base_bf16_compile    gpu_train.py --compile (inductor), base
    train_big_bf16_compile     the same, big

Each step runs in its own process group with its own time limit, clipped to what is left of ``--budget``
seconds (a step that would get less than ``MIN_STEP_S`` is skipped, with that reason); a step that fails
or runs out of time is recorded and the next one runs. ``--cpu-dry-run`` runs every step on the CPU in a
tiny form (the tiny workload, 2 timed updates, 4 sentences; torchrun over Gloo; compile with the "eager"
backend, tracing only), two at a time, so that all the entry points run in the default test suite
(``tests/unit/test_gpu_check.py``).

OUTDIR receives at most 8 files (what a device call brings back): ``summary.json`` (every step's status,
wall time, time limit and its headline numbers; rewritten after each step, so a call cut short still
leaves it), one JSON per kind of step with the full records (``env.json``, ``tests.json``, ``train.json``,
``torchrun.json``, ``decode.json``) and ``log.txt`` (each step's command and the end of its output).
Exit status 0 when every step is "ok" or "skipped", else 1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MIN_STEP_S = 20  # a step with less time left than this is skipped rather than started
LOG_TAIL = 12000  # characters of each step's output kept in log.txt


@dataclass
class Step:
    """One process of the check: ``args`` after the interpreter; it writes its JSON to ``{json}``."""

    name: str
    kind: str  # env, tests, train, torchrun, decode: the OUTDIR file its record goes to
    args: list[str]
    timeout: float
    result: dict = field(default_factory=dict)


def plan(dry_run: bool) -> list[Step]:
    """The steps of a real run on a GPU, or their tiny forms on the CPU."""
    py = [sys.executable]
    tests = [*py, "-m", "pytest", "-m", "gpu", "tests/gpu", "-p", "no:cacheprovider", "-q", "-rs",
             "--junitxml", "{junit}"]
    torchrun = [*py, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
                str(HERE / "gpu_torchrun.py")]
    train, decode = [*py, str(HERE / "gpu_train.py")], [*py, str(HERE / "gpu_decode.py")]
    out = ["--json-out", "{json}"]
    if dry_run:
        tiny = ["--config", "tiny", "--device", "cpu", "--precision", "bf16", "--steps", "2", "--warmup", "1",
                "--max-tokens", "330", "--length", "10", *out]
        return [  # run two at a time, the longest first
            Step("decode", "decode",
                 [*decode, "--config", "tiny", "--device", "cpu", "--sentences", "4", "--warmup", "0", *out], 120),
            Step("train_tiny_bf16_compile", "train", [*train, *tiny, "--compile", "--compile-backend", "eager"], 90),
            Step("torchrun", "torchrun", [*torchrun, *tiny], 60),
            Step("gpu_tests", "tests", tests, 120),
            Step("train_tiny_bf16", "train", [*train, *tiny], 60),
            Step("env", "env", [*py, str(HERE / "gpu_env.py"), "--device", "cpu", *out], 60),
        ]
    common = ["--precision", "bf16", "--device", "cuda", *out]
    return [
        Step("env", "env", [*py, str(HERE / "gpu_env.py"), "--device", "cuda", *out], 60),
        Step("gpu_tests", "tests", tests, 150),
        Step("train_base_bf16", "train", [*train, "--config", "base", "--steps", "30", "--warmup", "5", *common], 90),
        Step("train_big_bf16", "train", [*train, "--config", "big", "--steps", "30", "--warmup", "5", *common], 90),
        Step("torchrun", "torchrun", [*torchrun, "--config", "base", "--steps", "20", "--warmup", "5", *common], 90),
        Step("decode", "decode", [*decode, "--config", "base", "--device", "cuda", *out], 150),
        Step("train_base_bf16_compile", "train",
             [*train, "--config", "base", "--steps", "20", "--warmup", "3", "--compile", *common], 150),
        Step("train_big_bf16_compile", "train",
             [*train, "--config", "big", "--steps", "20", "--warmup", "3", "--compile", *common], 150),
    ]


# ---- what each kind of step reports ------------------------------------------------------------------------
def junit_counts(path: Path) -> dict:
    """Counts, failures and skip reasons from pytest's JUnit XML."""
    suite = ET.parse(path).getroot()
    suite = suite.find("testsuite") if suite.tag == "testsuites" else suite
    cases = {"passed": 0, "failed": 0, "skipped": 0}
    failures, skips = [], {}
    for case in suite.iter("testcase"):
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        if bad is not None:
            cases["failed"] += 1
            failures.append({"test": name, "message": (bad.get("message") or "")[:500]})
        elif case.find("skipped") is not None:
            cases["skipped"] += 1
            reason = (case.find("skipped").get("message") or "").removeprefix("Skipped: ")
            skips[reason] = skips.get(reason, 0) + 1
        else:
            cases["passed"] += 1
    return {**cases, "failures": failures, "skip_reasons": skips}


TRAIN_KEYS = ("device", "config", "precision", "compile", "compile_failed", "strategy", "pairs_per_batch",
              "median_step_seconds", "first_step_seconds", "tokens_per_s", "target_tokens_per_s",
              "achieved_tflop_s", "mfu", "peak_memory_gib", "skipped_updates", "loss_first_update",
              "loss_later_updates")


def headline(step: Step, record: dict) -> dict:
    """The numbers of a step's record that go into summary.json."""
    if step.kind == "env":
        keys = ("device", "torch", "torch_cuda", "python", "matmul_tflop_s", "copy_gb_s", "packages")
        return {k: record[k] for k in keys if k in record}
    if step.kind == "tests":
        return record
    if step.kind in ("train", "torchrun"):
        keys = TRAIN_KEYS + (("backend", "world_size") if step.kind == "torchrun" else ())
        return {k: record.get(k) for k in keys}
    if step.kind == "decode":
        speeds = {f"{r['impl']} {r['precision']} {r['mode']}/{r['batch']}":
                  round(r["tgt_tok_s"], 1) if "tgt_tok_s" in r else r.get("skipped") or r.get("error")
                  for r in record.get("results", [])}
        return {"config": record.get("config"), "device": record.get("device"), "tgt_tok_s": speeds,
                "ratios": record.get("ratios", {}),
                "identical_to_tformer_fp32_greedy": record.get("identical_to_tformer_fp32_greedy")}
    return record


# ---- running ------------------------------------------------------------------------------------------------
def descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (children, their children, ...), from Linux's /proc; [] elsewhere."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])  # the field after "(command)" is ppid
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, ended but not yet reaped, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class Check:
    def __init__(self, out: Path, dry_run: bool, budget: float, jobs: int) -> None:
        self.out, self.dry_run, self.budget, self.jobs = out, dry_run, budget, jobs
        self.work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
        self.t0 = time.monotonic()
        self.lock = threading.Lock()
        self.steps: list[Step] = []
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]), "PYTHONUNBUFFERED": "1"}
        self.env.update(TQDM_DISABLE="1", HF_HUB_DISABLE_PROGRESS_BARS="1", TRANSFORMERS_VERBOSITY="error")
        if dry_run and jobs > 1:  # one thread per step (torch, the benchmarks, CTranslate2): no oversubscription
            self.env.update(OMP_NUM_THREADS="1", BENCH_THREADS="1", CT2_THREADS="1")
        (out / "log.txt").write_text(f"gpu_check {'(cpu dry run) ' if dry_run else ''}with {sys.executable}\n")

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.t0)

    def run(self, step: Step) -> None:
        limit = min(step.timeout, self.left() - 5)
        env = next((s for s in self.steps if s.kind == "env"), None)
        if limit < MIN_STEP_S and not self.dry_run:
            self.skip(step, f"out of the call's time budget ({self.budget:.0f} s)")
        elif env is not None and env is not step and env.result.get("status") not in (None, "ok"):
            self.skip(step, f"the env step did not pass ({env.result.get('reason')})")
        else:
            self.run_process(step, limit)

    def skip(self, step: Step, reason: str) -> None:
        step.result = {"status": "skipped", "reason": reason, "wall_s": 0.0}
        self.record(step, "", [])

    def run_process(self, step: Step, limit: float) -> None:
        files = {"json": self.work / f"{step.name}.json", "junit": self.work / f"{step.name}.xml"}
        args = [a.replace("{json}", str(files["json"])).replace("{junit}", str(files["junit"])) for a in step.args]
        t0 = time.monotonic()
        with open(self.work / f"{step.name}.out", "w+", errors="replace") as log:  # a file, not a pipe: a process
            proc = subprocess.Popen(args, cwd=ROOT, env=self.env, stdout=log,  # left behind cannot hold the step
                                    stderr=subprocess.STDOUT, start_new_session=True)
            try:
                proc.wait(timeout=max(limit, 1))
                timed_out = False
            except subprocess.TimeoutExpired:
                self.stop(proc)
                timed_out = True
            wall = time.monotonic() - t0
            log.seek(0)
            output = log.read()
        step.result = {"wall_s": round(wall, 2), "timeout_s": round(limit, 1), "returncode": proc.returncode}
        record = None
        if step.kind == "tests":
            record = junit_counts(files["junit"]) if files["junit"].exists() else None
        elif files["json"].exists():
            record = json.loads(files["json"].read_text())
        if timed_out:
            step.result.update(status="timeout", reason=f"stopped after its time limit of {limit:.0f} s")
        elif record is not None and "skipped" in record and len(record) == 1:
            step.result.update(status="skipped", reason=record["skipped"])
            record = None
        elif proc.returncode != 0 or record is None:
            last = [line for line in output.strip().splitlines() if line.strip()][-1:] or ["no output"]
            step.result.update(status="failed", reason=f"exit status {proc.returncode}: {last[0][:500]}")
        else:
            step.result["status"] = "ok"
        if record is not None:
            step.result["numbers"] = headline(step, record)
        self.record(step, output, args, record)

    @staticmethod
    def stop(proc: subprocess.Popen) -> None:
        """End the step's process group and every process it started (torchrun starts its workers in sessions
        of their own): TERM, up to 10 s to finish, then KILL whatever is left."""
        pids = set(descendants(proc.pid))  # before the leader ends: its orphans are no longer found below it
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for kill, target in [(os.killpg, proc.pid), *((os.kill, p) for p in sorted(pids) if alive(p))]:
                try:
                    kill(target, sig)
                except (ProcessLookupError, PermissionError):
                    pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pids |= set(descendants(proc.pid))
                continue
            if not any(alive(p) for p in pids):
                break

    def record(self, step: Step, output: str, args: list[str], record: dict | None = None) -> None:
        with self.lock:
            if record is not None:
                path = self.out / f"{step.kind}.json"
                doc = json.loads(path.read_text()) if path.exists() else {}
                doc[step.name] = record
                path.write_text(json.dumps(doc, indent=1) + "\n")
            with open(self.out / "log.txt", "a") as log:
                log.write(f"\n===== {step.name}: {step.result['status']} in {step.result['wall_s']} s\n")
                log.write(f"$ {' '.join(args)}\n" if args else "")
                log.write(output[-LOG_TAIL:])
            self.write_summary()
            print(f"gpu_check: {step.name}: {step.result['status']} ({step.result['wall_s']} s)"
                  + (f": {step.result['reason']}" if "reason" in step.result else ""), file=sys.stderr, flush=True)

    def write_summary(self, done: bool = False) -> None:
        steps = {s.name: {"kind": s.kind, **(s.result or {"status": "pending"})} for s in self.steps}
        summary = {"check": "benchmarks/gpu_check.sh", "dry_run": self.dry_run, "python": sys.executable,
                   "budget_s": self.budget, "wall_s": round(time.monotonic() - self.t0, 2), "finished": done,
                   "all_ok": all(s.get("status") in ("ok", "skipped") for s in steps.values()), "steps": steps}
        tmp = self.out / "summary.json.tmp"
        tmp.write_text(json.dumps(summary, indent=1) + "\n")
        tmp.replace(self.out / "summary.json")

    def main(self, steps: list[Step]) -> bool:
        self.steps = steps
        self.write_summary()
        try:
            if self.jobs > 1:
                with ThreadPoolExecutor(self.jobs) as pool:
                    list(pool.map(self.run, steps))
            else:
                for step in steps:
                    self.run(step)
        finally:
            shutil.rmtree(self.work, ignore_errors=True)
        self.write_summary(done=True)
        return all(s.result["status"] in ("ok", "skipped") for s in steps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="folder for summary.json and the other results (created)")
    ap.add_argument("--cpu-dry-run", action="store_true", help="every step on the CPU in a tiny form")
    ap.add_argument("--budget", type=float, default=None, help="seconds for all steps (default 450; dry run 300)")
    ap.add_argument("--steps", default="", help="comma-separated step names to run (default: all)")
    ap.add_argument("--jobs", type=int, default=None, help="steps at a time (default 1; dry run 2)")
    args = ap.parse_args()
    steps = plan(args.cpu_dry_run)
    if args.steps:
        wanted = args.steps.split(",")
        unknown = sorted(set(wanted) - {s.name for s in steps})
        if unknown:
            ap.error(f"unknown step(s) {', '.join(unknown)}; the steps: {', '.join(s.name for s in steps)}")
        steps = [s for s in steps if s.name in wanted]
    args.out.mkdir(parents=True, exist_ok=True)
    for old in ("summary.json", "env.json", "tests.json", "train.json", "torchrun.json", "decode.json"):
        (args.out / old).unlink(missing_ok=True)
    budget = args.budget or (300.0 if args.cpu_dry_run else 450.0)
    jobs = args.jobs or (2 if args.cpu_dry_run else 1)
    ok = Check(args.out, args.cpu_dry_run, budget, jobs).main(steps)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
