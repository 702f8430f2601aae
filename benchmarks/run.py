"""Run every speed benchmark side by side and print a markdown table and JSON.

    python benchmarks/run.py                               # small and base, 3 repeats (about an hour on 2 cores)
    python benchmarks/run.py --configs small --repeats 3   # the small workloads only
    python benchmarks/run.py --parts train --impls tformer,hf --repeats 1
    python benchmarks/run.py --configs small --parts matmul,train --train-precision fp32,bf16   # CPU bf16 autocast

Method: each measurement runs in a fresh process (so no run inherits another's allocator or thread
state), with warm-up steps first; within a repeat the implementations of one workload run one after
another, their order rotated from repeat to repeat, so slow drifts of a shared machine hit all of
them alike. The machine's fp32 matmul rate is measured in each repeat too. Reported: the median of
the repeats with min and max; ratios are of medians. Before decoding is timed, the greedy outputs of
every engine on the same weights are compared (``parity``).

Workloads, peers and the FLOP count are described in ``benchmarks/common.py``. Needs the ``bench``
extra (``pip install -e '.[bench]'``): transformers, ctranslate2, x-transformers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TRAIN_IMPLS = ("tformer", "hf", "torch", "xtransformers")
TRAIN_PEERS = ("hf", "torch", "xtransformers")
DECODE_IMPLS = ("tformer", "hf", "ct2", "tformer-int8", "ct2-int8")
# Untimed training steps first: on the 2-core machines a step takes up to 1.6x longer during the first ~8
# (allocator and page-fault warm-up, every implementation alike); a user's run is thousands of steps.
WARMUP_STEPS = {"small": "8", "base": "3"}


def worker(args: list[str], timeout: float = 1800) -> dict:
    """Run one measurement in a fresh Python process; return its BENCH_RESULT record (or the error)."""
    cmd = [sys.executable, *args]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=HERE, capture_output=True, text=True, timeout=timeout)
    for line in p.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            rec = json.loads(line[len("BENCH_RESULT "):])
            rec["wall_seconds"] = time.perf_counter() - t0
            return rec
    err = (p.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"{' '.join(args)}: exit {p.returncode}: {err}"}


def rotate(xs: tuple, r: int) -> list:
    r %= len(xs)
    return list(xs[r:] + xs[:r])


def stats(xs: list[float]) -> dict:
    ys = sorted(xs)
    m = len(ys) // 2
    med = ys[m] if len(ys) % 2 else (ys[m - 1] + ys[m]) / 2
    return {"median": med, "min": ys[0], "max": ys[-1], "n": len(ys)}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="small,base")
    ap.add_argument("--parts", default="matmul,train,decode")
    ap.add_argument("--impls", default="", help="comma-separated subset of implementations (default: all)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--modes", default="beam/32,greedy/32,greedy/1", help="decoding searches / batch sizes")
    ap.add_argument("--ct2-threads", type=int, default=1,
                    help="CTranslate2's intra_threads (default 1: on the 2-core machines here its 2-thread mode is "
                         "up to 6x slower; tformer and HF use torch's default threads)")
    ap.add_argument("--peer-adam", choices=("default", "fused"), default="default",
                    help="the training peers' Adam: torch's default (what their trainers use) or fused, as tformer's")
    ap.add_argument("--train-precision", default="fp32",
                    help="comma-separated fp32 and/or bf16 (every implementation's step under CPU bf16 autocast)")
    ap.add_argument("--train-steps", default="small:10,base:5", help="timed steps per training measurement")
    ap.add_argument("--work", type=Path, default=None, help="folder for converted weights (default: a temp dir)")
    ap.add_argument("--json-out", type=Path, default=None)
    ap.add_argument("--markdown-out", type=Path, default=None)
    args = ap.parse_args()
    configs = [c for c in args.configs.split(",") if c]
    parts = set(args.parts.split(","))
    only = set(args.impls.split(",")) if args.impls else None
    steps = dict(kv.split(":") for kv in args.train_steps.split(","))
    work = args.work or Path(tempfile.mkdtemp(prefix="tformer-bench-"))
    train_impls = tuple(i for i in TRAIN_IMPLS if only is None or i in only)
    precisions = tuple(args.train_precision.split(","))
    if not set(precisions) <= {"fp32", "bf16"}:
        ap.error("--train-precision takes fp32 and/or bf16")
    decode_impls = tuple(i for i in DECODE_IMPLS if only is None or i in only)
    modes = [(m.split("/")[0], int(m.split("/")[1])) for m in args.modes.split(",") if m]
    os.environ["CT2_THREADS"] = str(args.ct2_threads)

    records: list[dict] = []
    parity: dict = {}
    if "decode" in parts:
        for c in configs:
            d = work / c
            if not (d / "src.pt").exists():
                log(f"prepare decoding weights for {c} in {d}")
                subprocess.run([sys.executable, "decode.py", "prepare", "--config", c, "--dir", str(d)], cwd=HERE,
                               check=True)
            out = subprocess.run([sys.executable, "decode.py", "parity", "--dir", str(d)], cwd=HERE, check=True,
                                 capture_output=True, text=True)
            parity[c] = json.loads(out.stdout.strip().splitlines()[-1])
            log(f"parity {c}: {json.dumps(parity[c])}")

    for r in range(args.repeats):
        if "matmul" in parts:
            records.append(worker(["matmul.py"]))
            log(f"[{r}] matmul {records[-1].get('gflop_s', records[-1].get('error'))}")
        for c in configs:
            if "train" in parts:
                for impl, precision in rotate(tuple((i, p) for p in precisions for i in train_impls), r):
                    rec = worker(["train_step.py", "--impl", impl, "--config", c, "--steps", steps.get(c, "5"),
                                  "--warmup", WARMUP_STEPS.get(c, "3"), "--peer-adam", args.peer_adam,
                                  "--precision", precision])
                    records.append(rec)
                    log(f"[{r}] train {c} {impl} {precision}: {rec.get('tgt_tok_s', rec.get('error'))}")
            if "decode" in parts:
                for mode, batch in modes:
                    for impl in rotate(decode_impls, r):
                        rec = worker(["decode.py", "measure", "--dir", str(work / c), "--impl", impl, "--mode", mode,
                                      "--batch", str(batch)])
                        records.append(rec)
                        log(f"[{r}] decode {c} {mode}/{batch} {impl}: {rec.get('tgt_tok_s', rec.get('error'))}")

    summary = summarize(records, parity)
    table = markdown(summary)
    result = {"machine": machine(), "ct2_threads": args.ct2_threads, "date": time.strftime("%Y-%m-%d"),
              "repeats": args.repeats,
              "command": " ".join(["python", "benchmarks/run.py", *sys.argv[1:]]), "summary": summary,
              "parity": parity, "records": records}
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=1) + "\n")
    if args.markdown_out:
        args.markdown_out.write_text(table + "\n")
    print(table)
    print(json.dumps(result))


def machine() -> dict:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    for pkg in ("transformers", "ctranslate2", "x_transformers"):
        try:
            from importlib.metadata import version

            info[pkg] = version(pkg.replace("_", "-"))
        except Exception:  # noqa: BLE001 - a missing peer is reported, not fatal
            info[pkg] = None
    return info


def summarize(records: list[dict], parity: dict) -> dict:
    ok = [r for r in records if "error" not in r]
    out: dict = {"errors": [r["error"] for r in records if "error" in r]}
    mm = [r["gflop_s"] for r in ok if r["part"] == "matmul"]
    if mm:
        out["matmul_gflop_s"] = stats(mm)
    groups: dict[tuple, list[dict]] = {}
    for r in ok:
        if r["part"] == "train":
            groups.setdefault(("train", r["config"], "", 0, r["impl"]), []).append(r)
        elif r["part"] == "decode":
            groups.setdefault(("decode", r["config"], r["mode"], r["batch"], r["impl"]), []).append(r)
    rows = []
    for (part, config, mode, batch, impl), rs in groups.items():
        row = {"part": part, "config": config, "mode": mode, "batch": batch, "impl": impl,
               "tgt_tok_s": stats([r["tgt_tok_s"] for r in rs])}
        if part == "train":
            row["all_tok_s"] = stats([r["all_tok_s"] for r in rs])
            row["gflop_s"] = stats([r["gflop_s"] for r in rs])
            row["train_peak_mib"] = stats([r["train_peak_mib"] for r in rs])
            if mm:
                row["pct_of_matmul"] = 100 * row["gflop_s"]["median"] / out["matmul_gflop_s"]["median"]
        else:
            row["latency_per_batch_ms"] = stats([r["latency_per_batch_ms"] for r in rs])
        rows.append(row)

    def med(part, config, mode, batch, impl):
        for row in rows:
            if (row["part"], row["config"], row["mode"], row["batch"], row["impl"]) == (part, config, mode, batch,
                                                                                         impl):
                return row["tgt_tok_s"]["median"]
        return None

    for row in rows:
        key = (row["part"], row["config"], row["mode"], row["batch"])
        if row["part"] == "train":
            plain = row["impl"].split("+")[0]
            suffix = row["impl"][len(plain):]  # e.g. "+bf16" or "+compile+bf16": the peers in the same variant
            peers = [m for p in TRAIN_PEERS if (m := med(*key, p + suffix)) is not None]
            if peers and plain == "tformer":
                row["vs_fastest_peer"] = row["tgt_tok_s"]["median"] / max(peers)
            fp32_impl = row["impl"].removesuffix("+bf16")
            if fp32_impl != row["impl"] and (fp32 := med(*key, fp32_impl)):
                row["vs_fp32"] = row["tgt_tok_s"]["median"] / fp32
            hf = med(*key, "hf")
            if hf and row["impl"] == "tformer":
                row["peak_mib_vs_hf"] = row["train_peak_mib"]["median"] / next(
                    r["train_peak_mib"]["median"] for r in rows if r["part"] == "train" and r["config"] == row["config"]
                    and r["impl"] == "hf")
        else:
            base = {"tformer": "ct2", "tformer-int8": "ct2-int8"}.get(row["impl"])
            ref = med(*key, base) if base else None
            if ref:
                row[f"vs_{base}"] = row["tgt_tok_s"]["median"] / ref
            hf = med(*key, "hf")
            if hf and row["impl"].startswith("tformer"):
                row["vs_hf"] = row["tgt_tok_s"]["median"] / hf
        if row["part"] == "decode" and row["config"] in parity and row["mode"] == "greedy":
            row["greedy_identical_to_tformer"] = parity[row["config"]].get(row["impl"], {}).get("identical_sentences")
    out["rows"] = sorted(rows, key=lambda r: (r["part"] != "train", r["config"] != "small", r["mode"], -r["batch"],
                                             r["impl"]))
    return out


def _fmt(s: dict, digits: int = 0) -> str:
    return f"{s['median']:,.{digits}f} ({s['min']:,.{digits}f}-{s['max']:,.{digits}f})"


def markdown(summary: dict) -> str:
    lines = []
    if "matmul_gflop_s" in summary:
        lines.append(f"fp32 matmul rate (square 512-4096, best size): {_fmt(summary['matmul_gflop_s'])} GFLOP/s\n")
    train = [r for r in summary["rows"] if r["part"] == "train"]
    if train:
        lines += ["| training step | impl | target tok/s | all tok/s | GFLOP/s | % of matmul | peak MiB | ratio |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in train:
            ratio = f"**{r['vs_fastest_peer']:.2f}x** fastest peer" if "vs_fastest_peer" in r else ""
            if "peak_mib_vs_hf" in r:
                ratio += f", memory {r['peak_mib_vs_hf']:.2f}x HF"
            if "vs_fp32" in r:
                ratio += f"{', ' if ratio else ''}{r['vs_fp32']:.2f}x its fp32"
            pct = f"{r['pct_of_matmul']:.0f}%" if "pct_of_matmul" in r else ""
            lines.append(f"| {r['config']} | {r['impl']} | {_fmt(r['tgt_tok_s'])} | {r['all_tok_s']['median']:,.0f} | "
                         f"{r['gflop_s']['median']:.1f} | {pct} | {r['train_peak_mib']['median']:,.0f} | {ratio} |")
        lines.append("")
    dec = [r for r in summary["rows"] if r["part"] == "decode"]
    if dec:
        lines += ["| decoding | search / batch | impl | target tok/s | ms per batch | ratio | greedy = tformer |",
                  "|---|---|---|---|---|---|---|"]
        for r in dec:
            ratios = [f"**{r[k]:.2f}x** {k[3:]}" for k in ("vs_ct2", "vs_ct2-int8") if k in r]
            ratios += [f"{r['vs_hf']:.2f}x hf"] if "vs_hf" in r else []
            same = r.get("greedy_identical_to_tformer")
            lines.append(f"| {r['config']} | {r['mode']} {'4 ' if r['mode'] == 'beam' else ''}/ {r['batch']} | "
                         f"{r['impl']} | {_fmt(r['tgt_tok_s'])} | {r['latency_per_batch_ms']['median']:,.1f} | "
                         f"{', '.join(ratios)} | {'' if same is None else f'{same:.0%}'} |")
    if summary.get("errors"):
        lines += ["", "errors:"] + [f"- {e}" for e in summary["errors"]]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
