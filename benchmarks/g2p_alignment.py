"""Grapheme to phoneme on CMUdict: plain, guided, location-aware and monotonic attention, and the monotonic window
at inference, several seeds each under one budget (the README's "Guided and monotonic attention" G2P table).

Each (method, seed) trains ``configs/g2p_cmudict.yaml`` for the same number of updates with one thread
(``OMP_NUM_THREADS=1``; its CPU seconds are recorded), ``--jobs`` runs side by side, then is scored with
``tformer evaluate --metric per`` (greedy) on valid, test and test_long. For every run the monotonic window is
chosen on valid among ``WINDOWS`` and "none"; test and test_long are scored with the choice. Prints one JSON line
per run (also appended to ROOT/results.jsonl, so a rerun skips what is done) and then a summary: the mean and
the range over seeds of each number, per method.

    ./dev data cmudict                                       # once
    python benchmarks/g2p_alignment.py --seeds 1 --method guided-w50 --method monotonic   # the settings not chosen
    python benchmarks/g2p_alignment.py --seeds 1 2 3 --jobs 2                            # the chosen, 3 seeds
    python benchmarks/g2p_alignment.py --root runs/g2p-compare --summary        # the table again, no training
    python benchmarks/g2p_alignment.py --root runs/g2p-compare --rescore        # add what a newer version scores

``--set METHOD=OVERRIDE`` replaces a method's settings (for the choice on valid, e.g. another guided weight
under a new method name: ``--method guided-w2 --set guided-w2=train.guided_attention.weight=2``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

RECIPE = "configs/g2p_cmudict.yaml"
DATA = Path("data/cmudict")
SPLITS = ("valid", "test", "test_long")
WINDOWS = (1, 2, 4)  # positions ahead of the focus (one back) tried on valid
FIXED_WINDOW = 4  # also scored on test and test_long for every run, chosen or not (what the window does anyway)
GUIDED = ["train.guided_attention.sigma=0.2", "train.guided_attention.layers=[-1]"]  # g and the last decoder layer
METHODS: dict[str, list[str]] = {
    "plain": [],
    "guided": ["train.guided_attention.weight=10", *GUIDED],
    "guided-w50": ["train.guided_attention.weight=50", *GUIDED],
    "location": ["model.cross_attention.kind=location"],  # 10 filters of width 31
    "monotonic": ["model.cross_attention.kind=monotonic"],  # Raffel et al.'s r = -4 and noise 1
    "monotonic-n4": ["model.cross_attention.kind=monotonic", "model.cross_attention.monotonic_noise=4"],
}
CHOSEN = ("plain", "guided", "location", "monotonic-n4")  # the default --method list: the settings chosen on the
# validation PER of seed 1 (guided over guided-w50, monotonic-n4 over monotonic)
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def train(run: Path, method: list[str], seed: int, steps: int, warmup: int, minutes: float) -> tuple[float, float]:
    """Train one run; returns its wall seconds and its CPU seconds (user + system, as /usr/bin/time counts them:
    the budget, which a run beside another keeps while its wall time grows)."""
    log, cpu = run.with_suffix(".log"), run.with_suffix(".cpu")
    t0 = time.perf_counter()
    cmd = ["/usr/bin/time", "-f", "%U %S", "-o", str(cpu), "tformer", "train", RECIPE, f"run_dir={run}",
           f"seed={seed}", f"train.max_steps={steps}", f"train.warmup_steps={warmup}", f"train.max_minutes={minutes}",
           *method, "--no-progress"]
    with open(log, "w") as f:
        subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=ONE_THREAD, check=True)
    user, system = (float(x) for x in cpu.read_text().split()[-2:])
    return time.perf_counter() - t0, user + system


def evaluate(run: Path, split: str, window: int | None) -> dict:
    cmd = ["tformer", "evaluate", str(run), "--src", str(DATA / f"{split}.graphemes"),
           "--ref", str(DATA / f"{split}.phonemes"), "--metric", "per", "--beam", "1"]
    if window is not None:
        cmd += ["--monotonic-window", str(window), "--monotonic-window-back", "1"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=ONE_THREAD, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def measure(run: Path) -> dict:
    """PER/WER and alignment rates on each split, plain and with the window chosen on valid."""
    res: dict = {f"{s}": evaluate(run, s, None) for s in SPLITS}
    tried = {w: evaluate(run, "valid", w) for w in WINDOWS}
    res["valid_windows"] = {str(w): r["per"] for w, r in tried.items()}
    best = min(WINDOWS, key=lambda w: tried[w]["per"])
    chosen = best if tried[best]["per"] < res["valid"]["per"] else None
    res["window"] = chosen
    for s in ("test", "test_long"):
        res[f"{s}_window"] = res[s] if chosen is None else evaluate(run, s, chosen)
    res.update(fixed_window(run, res))
    return res


def fixed_window(run: Path, res: dict) -> dict:
    """test and test_long under the window of FIXED_WINDOW positions ahead, whether validation chose it or not."""
    key = f"window{FIXED_WINDOW}"
    if res.get("window") == FIXED_WINDOW:
        return {f"test_{key}": res["test_window"], f"test_long_{key}": res["test_long_window"]}
    return {f"{s}_{key}": evaluate(run, s, FIXED_WINDOW) for s in ("test", "test_long")}


def one(root: Path, name: str, method: list[str], seed: int, args: argparse.Namespace) -> dict:
    run = root / f"{name}-s{seed}"
    seconds, cpu = train(run, method, seed, args.steps, args.warmup, args.max_minutes)
    steps = max(json.loads(line).get("step", 0) for line in open(run / "metrics.jsonl"))
    return {"method": name, "seed": seed, "run": str(run), "train_seconds": round(seconds, 1),
            "train_cpu_seconds": round(cpu, 1), "updates": steps, "overrides": method, **measure(run)}


def summary(rows: list[dict]) -> dict:
    """Per method: mean [min, max] over seeds of the main numbers."""
    keys = {"valid PER": ("valid", "per"), "test PER": ("test", "per"), "test WER": ("test", "wer"),
            "test_long PER": ("test_long", "per"), "test_long WER": ("test_long", "wer"),
            "test focus": ("test", "diagonal_focus_rate"), "test_long focus": ("test_long", "diagonal_focus_rate"),
            "test_long monotonic": ("test_long", "monotonic_rate"),
            "test PER, window": ("test_window", "per"), "test_long PER, window": ("test_long_window", "per"),
            "test_long WER, window": ("test_long_window", "wer"),
            "test PER, window 4": ("test_window4", "per"), "test_long PER, window 4": ("test_long_window4", "per")}
    out: dict = {}
    for name in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == name]
        entry: dict = {"seeds": [r["seed"] for r in mine], "windows": [r["window"] for r in mine],
                       "train_cpu_seconds": statistics.median(r["train_cpu_seconds"] for r in mine),
                       "updates": [r["updates"] for r in mine]}
        for label, (split, key) in keys.items():
            vals = [r[split][key] for r in mine if key in r.get(split, {})]
            if vals:
                entry[label] = [round(statistics.mean(vals), 4), round(min(vals), 4), round(max(vals), 4)]
        out[name] = entry
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="runs/g2p-compare")
    p.add_argument("--method", action="append",
                   help=f"methods to run, names of METHODS or new ones with --set (default: {' '.join(CHOSEN)})")
    p.add_argument("--set", action="append", default=[], metavar="METHOD=OVERRIDE",
                   help="an override for METHOD (repeatable; the first for a method replaces its defaults)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--steps", type=int, default=500, help="updates a run (the schedule's end)")
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--max-minutes", type=float, default=30.0,
                   help="a run's wall-clock guard (train.max_minutes); the budget is --steps")
    p.add_argument("--jobs", type=int, default=2, help="runs side by side, one thread each")
    p.add_argument("--summary", action="store_true", help="print the summary of ROOT/results.jsonl and stop")
    p.add_argument("--rescore", action="store_true",
                   help="add the fixed-window scores to the rows of ROOT/results.jsonl that lack them, then summarise")
    args = p.parse_args()
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    results = root / "results.jsonl"
    done = [json.loads(line) for line in open(results)] if results.exists() else []
    if args.rescore:
        for row in done:
            if f"test_long_window{FIXED_WINDOW}" not in row:
                row.update(fixed_window(Path(row["run"]), row))
        tmp = results.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(row) + "\n" for row in done))
        os.replace(tmp, results)
    elif not args.summary:
        methods = dict(METHODS)
        for item in args.set:
            name, _, override = item.partition("=")
            methods[name] = [override] if methods.get(name) is METHODS.get(name) else [*methods[name], override]
        todo = [(m, s) for s in args.seeds for m in (args.method or list(CHOSEN))
                if not any(r["method"] == m and r["seed"] == s for r in done)]
        with ThreadPoolExecutor(args.jobs) as pool:
            futures = [pool.submit(one, root, m, methods[m], s, args) for m, s in todo]
            for f in futures:
                row = f.result()
                print(json.dumps(row), flush=True)
                with open(results, "a") as fh:
                    fh.write(json.dumps(row) + "\n")
                done.append(row)
    print(json.dumps(summary(done), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
