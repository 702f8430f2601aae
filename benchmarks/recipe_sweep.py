"""Step-matched Multi30k recipe variants, many at once on one GPU, scored on the full validation set.

    python benchmarks/recipe_sweep.py OUTDIR --data DIR [--seconds 300] [--jobs 12] [--only a,b]
    python benchmarks/recipe_sweep.py OUTDIR --data DIR --cpu-dry-run      # every job, 12 updates, on the CPU

The hour-long CPU recipes (``configs/multi30k_*.yaml``) make 1,200-3,100 updates, depending on the machine. A
setting is judged by what it gives at a fixed number of updates (``train.decay_over=steps``), so the runs that
pick settings need not run on the CPU that will use them: one GPU trains a dozen of these small models side by
side in minutes. Each job is ``tformer train`` (bf16 autocast, as on an AVX512-BF16 CPU; the whole cosine over
``STEPS`` updates; greedy BLEU on 200 validation sentences every 500) and then ``tformer evaluate`` of its last
checkpoint on the full validation set, beam 4, alpha 1.0: the recipes' decoding. Test sets are never read.

OUTDIR receives ``sweep.json`` (each job: its overrides, status, updates, wall time, the validation records of
``metrics.jsonl`` and the evaluation's BLEU / ``bleu_tok`` / chrF; rewritten as each job ends) and
``logs.tgz`` (each job's output). Jobs run ``--jobs`` at a time in the order of :data:`JOBS`; when ``--seconds``
have passed, the jobs still running are stopped and recorded with what they logged so far.

It needs what ``tformer evaluate`` needs, sacremoses included (installed as a package: ``bleu_tok`` records its
version), in the Python that runs it; a GPU machine's own Python may lack it (README, round nine).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LANGS = {"en-de": ("en", "de"), "de-en": ("de", "en")}

# The recipe as round nine found it in both config files (the files have moved on since: en -> de peaks at 2e-3),
# so that every job below still means what it meant there; a job's own overrides come after these and win.
BASE = ["train.schedule=cosine", "train.lr=0.00138", "train.warmup_steps=400", "model.dropout=0.1",
        "train.label_smoothing=0.1", "data.vocab_size=8000", "train.max_tokens=4096"]
# name: (direction, updates, overrides of BASE)
JOBS: dict[str, tuple[str, int, list[str]]] = {
    "en-de 6000 dropout 0.2": ("en-de", 6000, ["model.dropout=0.2"]),
    "en-de 3000": ("en-de", 3000, []),
    "en-de 3000 dropout 0.2": ("en-de", 3000, ["model.dropout=0.2"]),
    "en-de 1750": ("en-de", 1750, []),
    "de-en 1750": ("de-en", 1750, []),
    "en-de 1750 seed 2": ("en-de", 1750, ["seed=2"]),
    "en-de 1750 bpe 6000": ("en-de", 1750, ["data.vocab_size=6000"]),
    "en-de 1750 bpe 4000": ("en-de", 1750, ["data.vocab_size=4000"]),
    "en-de 1750 label smoothing 0.2": ("en-de", 1750, ["train.label_smoothing=0.2"]),
    "en-de 1750 lr 2e-3": ("en-de", 1750, ["train.lr=0.002"]),
    "en-de 1750 lr 3e-3": ("en-de", 1750, ["train.lr=0.003"]),
    "en-de 2000 d_ff 512": ("en-de", 2000, ["model.d_ff=512"]),
    "en-de 1750 warm-up 200": ("en-de", 1750, ["train.warmup_steps=200"]),
}


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


class Sweep:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = Path(args.outdir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = Path(tempfile.mkdtemp(prefix="recipe_sweep_"))
        self.end = time.monotonic() + args.seconds
        self.lock = threading.Lock()
        self.results: dict[str, dict] = {}
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]),
            "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}

    def tformer(self, argv: list[str], log: Path, stdout: Path | None = None) -> int | None:
        """Runs ``tformer ARGV`` (its output into ``log``, or its stdout into ``stdout``) until it ends or the sweep's
        time is up (then None)."""
        with log.open("a") as f, contextlib.ExitStack() as files:
            out = files.enter_context(stdout.open("w")) if stdout else f
            f.write(f"$ tformer {' '.join(argv)}\n")
            f.flush()
            p = subprocess.Popen([sys.executable, "-m", "tformer.cli.main", *argv], cwd=ROOT, env=self.env,
                                 stdout=out, stderr=f, start_new_session=True)
            try:
                return p.wait(timeout=max(1.0, self.end - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
                return None

    def job(self, name: str) -> None:
        direction, steps, overrides = JOBS[name]
        src, tgt = LANGS[direction]
        run_dir, log = self.work / slug(name), self.work / f"{slug(name)}.log"
        if self.args.cpu_dry_run:
            steps = 12
        record: dict = {"direction": direction, "updates": steps, "overrides": overrides}
        t0 = time.monotonic()
        if self.end - t0 < 30:
            record["status"] = "not started: out of time"
            return self.save(name, record)
        data = Path(self.args.data).resolve()
        train = [
            "train", f"configs/multi30k_{src}_{tgt}.yaml", f"run_dir={run_dir}", f"data.data_dir={data}",
            "train.decay_over=steps", f"train.max_steps={steps}", "train.max_minutes=0",
            f"train.eval_every={min(500, steps)}", f"train.save_every={steps}", "train.keep_checkpoints=1",
            "train.log_every=250", f"train.precision={'fp32' if self.args.cpu_dry_run else 'bf16'}",
            f"train.device={'cpu' if self.args.cpu_dry_run else 'cuda'}", *BASE, *overrides, "--no-progress",
        ]
        if self.args.cpu_dry_run:
            train[-1:-1] = ["train.warmup_steps=4", "translation.bleu_samples=8", "data.vocab_size=1000"]
        rc = self.tformer(train, log)
        record["train_seconds"] = round(time.monotonic() - t0, 1)
        metrics = run_dir / "metrics.jsonl"
        lines = [json.loads(x) for x in metrics.read_text().splitlines()] if metrics.exists() else []
        record["valid"] = [{k: round(v, 4) if isinstance(v, float) else v for k, v in m.items() if k != "kind"}
                           for m in lines if m.get("kind") == "valid"]
        done = [m["step"] for m in lines if "step" in m]
        record["last_logged_step"] = max(done) if done else 0
        if rc != 0:
            record["status"] = "train: out of time" if rc is None else f"train: exit {rc}"
            return self.save(name, record)
        val = ["--src", str(data / f"val.{src}.gz"), "--ref", str(data / f"val.{tgt}.gz")]
        if self.args.cpu_dry_run:  # the first 16 validation sentences
            val = self.head(data, src, tgt, 16)
        evaluate = ["evaluate", str(run_dir), *val, "--beam", "4", "--alpha", "1.0", "--lang", tgt,
                    "--device", "cpu" if self.args.cpu_dry_run else "cuda"]
        scores = self.work / f"{slug(name)}.json"
        t1 = time.monotonic()
        rc = self.tformer(evaluate, log, stdout=scores)
        record["eval_seconds"] = round(time.monotonic() - t1, 1)
        if rc != 0:
            why = "out of time" if rc is None else f"exit {rc}: {log.read_text().strip()[-300:]}"
            record["status"] = f"evaluate: {why}"
            return self.save(name, record)
        s = json.loads(scores.read_text().strip().splitlines()[-1])
        record.update(status="ok", **{k: s[k] for k in ("bleu", "bleu_tok", "chrf") if k in s})
        self.save(name, record)

    def head(self, data: Path, src: str, tgt: str, n: int) -> list[str]:
        import gzip

        paths = []
        for lang in (src, tgt):
            path = self.work / f"val16.{lang}"
            with gzip.open(data / f"val.{lang}.gz", "rt", encoding="utf-8") as f:
                path.write_text("".join(next(f) for _ in range(n)), encoding="utf-8")
            paths.append(str(path))
        return ["--src", paths[0], "--ref", paths[1]]

    def save(self, name: str, record: dict) -> None:
        with self.lock:
            self.results[name] = record
            print(f"recipe_sweep: {name}: {record.get('status')} "
                  f"{record.get('bleu', '')} {record.get('bleu_tok', '')}", flush=True)
            tmp = self.out / "sweep.json.tmp"
            tmp.write_text(json.dumps({"seconds": self.args.seconds, "jobs": self.results}, indent=1))
            tmp.replace(self.out / "sweep.json")

    def run(self, names: list[str]) -> None:
        try:
            with ThreadPoolExecutor(self.args.jobs) as pool:
                for future in [pool.submit(self.job, n) for n in names]:
                    try:
                        future.result()
                    except Exception as e:  # one job's failure is recorded; the others go on
                        print(f"recipe_sweep: a job failed: {type(e).__name__}: {e}", flush=True)
        finally:
            with tarfile.open(self.out / "logs.tgz", "w:gz") as tar:
                for log in sorted(self.work.glob("*.log")):
                    tar.add(log, arcname=log.name)
                for metrics in sorted(self.work.glob("*/metrics.jsonl")):
                    tar.add(metrics, arcname=f"{metrics.parent.name}.metrics.jsonl")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("outdir")
    p.add_argument("--data", required=True, help="the Multi30k folder (train/val .en.gz and .de.gz)")
    p.add_argument("--seconds", type=float, default=300.0, help="wall-clock budget of the whole sweep")
    p.add_argument("--jobs", type=int, default=12, help="jobs at a time")
    p.add_argument("--only", default="", help="comma-separated job names (default: all, in order)")
    p.add_argument("--cpu-dry-run", action="store_true", help="each job 12 updates on the CPU, 16 sentences")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(JOBS)
    unknown = [n for n in names if n not in JOBS]
    if unknown:
        p.error(f"unknown job(s): {', '.join(unknown)}; the jobs are: {', '.join(JOBS)}")
    Sweep(args).run(names)
    return 0


if __name__ == "__main__":
    sys.exit(main())
