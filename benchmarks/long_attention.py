"""Attention for long inputs: time and peak memory of one self-attention layer, forward + backward, per kind.

    python benchmarks/long_attention.py                                    # every variant, 512 .. 16384 positions
    python benchmarks/long_attention.py --lengths 512,2048 --variants chunked,sliding
    python benchmarks/long_attention.py --json /tmp/long_attention.json --plot docs/pictures/long_attention.png
    python benchmarks/long_attention.py --from-json /tmp/long_attention.json --plot PATH   # table and plot only

The layer: one :class:`tformer.nn.attention.MultiHeadAttention`, d_model 256, 4 heads (Dh 64), batch 1,
fp32, training mode, attention dropout 0, with each :class:`tformer.config.AttentionConfig` kind at its
defaults (chunk_size 512, window 256, linformer_k 256, lsh_bucket_size 64, lsh_rounds 4). One call is
``layer(x)`` on x (1, T, 256) ~ N(0, 1), then ``out.sum().backward()`` (gradients of the weights and of x).
"full (materialised)" is the same layer asked for its weights (``need_weights=True``), which runs the
written-out ``attention_reference`` and stores the (H, T, T) scores and weights: the quadratic baseline.
"full (SDPA)" is the default path, PyTorch's ``scaled_dot_product_attention``.

Method: each (variant, length) runs in a fresh process. It makes one warm-up call at 64 positions (kernels,
thread pool, autograd engine), then one call at T whose memory is measured: the peak resident set of the process
during the call (``VmHWM``, reset just before it by writing 5 to ``/proc/self/clear_refs``) minus the resident
set before it, measured in a process of its own whose allocator returns every freed block over 64 KiB to the
system at once (``common.MEASURABLE_MALLOC``; with glibc's defaults the heap keeps freed blocks and its growth
overstates what the call needs: also reported, as ``peak_mib_default_malloc``). In another process with the
normal allocator, ``repeats`` calls are timed: the median wall-clock time is reported (5 calls up to
2048 positions, 3 above), and each call's CPU time is recorded too (a wall time far above CPU time / threads
means the machine was busy). A configuration whose estimated memory exceeds ``--budget`` x MemAvailable is
skipped and reported with the estimate.

Approximation error (``--error-length``, default 2048): the approximate kinds' outputs against exact attention on
random q, k, v ~ N(0, 1) (B 1, H 4, Dh 64): linformer (E, F at their initialisation) and sliding against full
softmax attention, lsh against dense shared-QK attention with Reformer's self rule (its exact counterpart), each
as ||approx - exact|| / ||exact||; with, as a yardstick, the error of answering every query with the mean of V.

Prints a markdown table, then the JSON document (also written to ``--json``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from common import MEASURABLE_MALLOC

HERE = Path(__file__).resolve().parent
B, D, H = 1, 256, 4  # batch, d_model, heads
WARMUP_LENGTH = 64
VARIANTS = {  # name -> (label, AttentionConfig kind, need_weights)
    "materialised": ("full (materialised)", "full", True),
    "sdpa": ("full (SDPA)", "full", False),
    "chunked": ("chunked", "chunked", False),
    "sliding": ("sliding", "sliding", False),
    "linformer": ("linformer", "linformer", False),
    "lsh": ("lsh", "lsh", False),
}
LENGTHS = (512, 1024, 2048, 4096, 8192, 16384)


def _proc_kib(field: str, path: str = "/proc/self/status") -> int:
    """A ``kB`` field of /proc/self/status or /proc/meminfo, in KiB."""
    for line in Path(path).read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def default_repeats(t: int) -> int:
    """Timed calls per (variant, length): fewer for long inputs."""
    return 5 if t <= 2048 else 3


def estimate_bytes(variant: str, t: int) -> int:
    """A rough estimate of a call's peak memory, for skipping what cannot fit (fp32, defaults of
    AttentionConfig). Quadratic only for the materialised path: scores, weights and their gradients."""
    from tformer.config import AttentionConfig

    a, f, bh = AttentionConfig(), 4, B * H
    linear = 40 * B * t * D * f  # x, Q, K, V, outputs and their gradients
    extra = {
        "materialised": 5 * bh * t * t * f,
        "sdpa": 0,
        "chunked": 5 * bh * min(a.chunk_size, t) * t * f,  # one query block's recomputed scores, all key blocks
        "sliding": 5 * bh * t * 3 * a.window * f,
        "linformer": 5 * bh * t * a.linformer_k * f + 4 * a.linformer_k * t * f,
        "lsh": 10 * bh * a.lsh_rounds * t * 2 * a.lsh_bucket_size * f,
    }[variant]
    return linear + extra


# ---- one measurement (a fresh process) ---------------------------------------------------------------------
def measure(variant: str, t: int, repeats: int) -> dict:
    import torch
    from common import median, peak_rss_since_reset_mib, reset_peak_rss, setup_threads

    from tformer.config import AttentionConfig
    from tformer.nn.attention import MultiHeadAttention

    threads = setup_threads()
    label, kind, need_weights = VARIANTS[variant]
    torch.manual_seed(0)
    layer = MultiHeadAttention(D, H, attention=AttentionConfig(kind=kind), max_len=t).train()

    def call(n: int) -> tuple[float, float]:
        """Wall-clock and CPU seconds of one forward + backward at n positions."""
        x = torch.randn(B, n, D, requires_grad=True)
        t0, c0 = time.perf_counter(), time.process_time()
        out, _ = layer(x, need_weights=need_weights)
        out.sum().backward()
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        layer.zero_grad(set_to_none=True)
        return seconds, cpu

    call(WARMUP_LENGTH)
    gc.collect()
    rss_before = reset_peak_rss()  # the peak resident set starts again from the current one
    first, _ = call(t)
    peak_mib = peak_rss_since_reset_mib() - rss_before
    times, cpus = zip(*(call(t) for _ in range(repeats)), strict=True)
    return {
        "variant": label, "key": variant, "length": t, "threads": threads, "repeats": repeats,
        "seconds": median(list(times)), "seconds_all": list(times), "cpu_seconds_all": list(cpus),
        "first_call_seconds": first, "peak_mib": peak_mib, "estimated_mib": estimate_bytes(variant, t) / 2**20,
    }


# ---- approximation error ----------------------------------------------------------------------------------
def approximation_errors(t: int) -> dict:
    import torch
    import torch.nn.functional as F

    from tformer.config import AttentionConfig
    from tformer.nn.attention import attention_fast, attention_reference
    from tformer.nn.attention_algorithms import attention_chunked, attention_lsh, attention_sliding
    from tformer.nn.attention_algorithms.linformer import LinformerAttention

    a = AttentionConfig()
    torch.manual_seed(0)
    q, k, v = (torch.randn(B, H, t, D // H) for _ in range(3))

    def rel(x, exact) -> float:
        return float((x - exact).norm() / exact.norm())

    with torch.no_grad():
        full = attention_fast(q, k, v)
        eye = torch.eye(t, dtype=torch.bool)
        shared_qk = attention_reference(q, F.normalize(q, dim=-1), v, ~eye)[0]  # no self unless alone: T > 1
        mean_v = v.mean(dim=-2, keepdim=True).expand_as(full)
        return {
            "length": t, "shape": f"B={B}, H={H}, Dh={D // H}, q, k, v ~ N(0, 1), seed 0",
            "chunked_max_abs_diff_vs_full": float((attention_chunked(q, k, v, chunk_size=a.chunk_size) - full)
                                                  .abs().max()),
            "linformer_vs_full": rel(LinformerAttention(a, t)(q, k, v), full),
            "sliding_vs_full": rel(attention_sliding(q, k, v, window=a.window), full),
            "lsh_vs_dense_shared_qk": rel(attention_lsh(q, v, bucket_size=a.lsh_bucket_size, n_rounds=a.lsh_rounds,
                                                        seed=a.lsh_seed), shared_qk),
            "mean_of_v_vs_full": rel(mean_v, full),
            "mean_of_v_vs_dense_shared_qk": rel(mean_v, shared_qk),
            "settings": {"linformer_k": a.linformer_k, "window": a.window, "lsh_bucket_size": a.lsh_bucket_size,
                         "lsh_rounds": a.lsh_rounds},
        }


# ---- the driver --------------------------------------------------------------------------------------------
def run_worker(variant: str, t: int, repeats: int, timeout: float) -> dict:
    """Time in a process with the normal allocator; memory in another whose allocator returns freed blocks at
    once (``common.MEASURABLE_MALLOC``): with glibc's defaults, blocks freed during the call stay in its heap and
    the heap's growth, not the call's need, is what the resident set shows (up to 3x more for chunked)."""
    timed = _worker(variant, t, repeats, timeout, None)
    if "error" in timed:
        return timed
    memory = _worker(variant, t, 1, timeout, MEASURABLE_MALLOC)
    if "error" in memory:
        return memory
    return {**timed, "peak_mib": memory["peak_mib"], "peak_mib_default_malloc": timed["peak_mib"]}


def _worker(variant: str, t: int, repeats: int, timeout: float, env: dict | None) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--variants", variant, "--lengths", str(t),
           "--repeats", str(repeats)]
    try:
        p = subprocess.run(cmd, cwd=HERE, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"variant": VARIANTS[variant][0], "key": variant, "length": t, "error": f"timed out after {timeout} s"}
    for line in p.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            return json.loads(line[len("BENCH_RESULT "):])
    err = (p.stderr.strip().splitlines() or ["no output"])[-1]
    return {"variant": VARIANTS[variant][0], "key": variant, "length": t, "error": f"exit {p.returncode}: {err}"}


def markdown(doc: dict) -> str:
    lengths = sorted({r["length"] for r in doc["results"]})
    cells = {(r["key"], r["length"]): r for r in doc["results"]}
    lines = ["| variant | " + " | ".join(f"T={t:,}" for t in lengths) + " |", "|---" * (len(lengths) + 1) + "|"]
    for key in dict.fromkeys(r["key"] for r in doc["results"]):
        row = []
        for t in lengths:
            r = cells.get((key, t))
            if r is None:
                row.append("")
            elif r.get("skipped"):
                row.append(f"skipped (est. {r['estimated_mib'] / 1024:,.1f} GiB)")
            elif "error" in r:
                row.append("error")
            else:
                row.append(f"{r['seconds'] * 1000:,.0f} ms / {r['peak_mib']:,.0f} MiB")
        lines.append(f"| {VARIANTS[key][0]} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def plot(doc: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(12, 4.6))
    lengths = sorted({r["length"] for r in doc["results"]})
    for key in dict.fromkeys(r["key"] for r in doc["results"]):
        runs = [r for r in doc["results"] if r["key"] == key and "seconds" in r]
        skipped = [r for r in doc["results"] if r["key"] == key and r.get("skipped")]
        label = VARIANTS[key][0]
        if runs:
            line, = ax_t.plot([r["length"] for r in runs], [r["seconds"] for r in runs], "o-", label=label)
            ax_m.plot([r["length"] for r in runs], [r["peak_mib"] for r in runs], "o-", color=line.get_color(),
                      label=label)
            if skipped:
                ax_m.plot([r["length"] for r in skipped], [r["estimated_mib"] for r in skipped], "x",
                          color=line.get_color(), markersize=9, label=f"{label}: skipped (estimate)")
    for ax, ylabel in ((ax_t, "seconds per forward + backward"), (ax_m, "peak memory of the call (MiB)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(lengths, [f"{t:,}" for t in lengths])
        ax.set_xlabel("sequence length T")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    ax_m.axhline(doc["budget_mib"], color="grey", linestyle=":", linewidth=1)
    ax_m.annotate("memory budget (skip above)", (lengths[-1], doc["budget_mib"]), textcoords="offset points",
                  xytext=(-10, -12), fontsize=8, color="grey", ha="right")
    ax_t.legend(fontsize=8, loc="upper left")
    ax_m.legend(fontsize=8, loc="upper left")
    fig.suptitle(f"One self-attention layer (d_model {D}, {H} heads, batch {B}, fp32), forward + backward, "
                 f"{doc['machine']['threads']} CPU threads")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    ap.add_argument("--lengths", default=",".join(map(str, LENGTHS)))
    ap.add_argument("--repeats", type=int, default=0, help="timed calls per measurement (0 = 5, 3 or 2 by length)")
    ap.add_argument("--budget", type=float, default=0.6, help="skip above this fraction of MemAvailable")
    ap.add_argument("--error-length", type=int, default=2048, help="length of the approximation-error check (0 = off)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per measurement")
    ap.add_argument("--json", help="also write the JSON document here")
    ap.add_argument("--plot", help="write a two-panel PNG (time and peak memory against length, log-log)")
    ap.add_argument("--from-json", help="measure nothing: print the table and plot from a JSON document written before")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    variants = args.variants.split(",")
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        ap.error(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    lengths = [int(t) for t in args.lengths.split(",")]
    if args.from_json:
        doc = json.loads(Path(args.from_json).read_text())
        print(markdown(doc))
        if args.plot:
            plot(doc, args.plot)
        return
    if args.worker:
        from common import emit

        emit(measure(variants[0], lengths[0], args.repeats or default_repeats(lengths[0])))
        return

    available = _proc_kib("MemAvailable", "/proc/meminfo") * 1024
    budget = args.budget * available
    load_before = os.getloadavg()
    started = time.time()
    results = []
    for t in lengths:
        for v in variants:
            est = estimate_bytes(v, t)
            if est > budget:
                results.append({"variant": VARIANTS[v][0], "key": v, "length": t, "skipped": True,
                                "estimated_mib": est / 2**20, "reason": "estimated memory above the budget"})
            else:
                results.append(run_worker(v, t, args.repeats or default_repeats(t), args.timeout))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    import torch

    doc = {
        "benchmark": "long_attention",
        "layer": f"MultiHeadAttention(d_model={D}, num_heads={H}), batch {B}, fp32, training mode, forward + "
                 "backward of out.sum(), AttentionConfig defaults",
        "peak_memory": "VmHWM - VmRSS around the first call at T (after a warm-up at 64), MiB, in a process whose "
                       "allocator returns freed blocks over 64 KiB at once (MALLOC_MMAP_THRESHOLD_=65536); "
                       "peak_mib_default_malloc: the same with glibc's defaults, in the timing process",
        "time": "median seconds of the timed calls after it",
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                    "threads": int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1)),
                    "torch": torch.__version__, "python": platform.python_version()},
        "mem_available_mib": available / 2**20, "budget_mib": budget / 2**20,
        "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "wall_seconds": time.time() - started,
        "results": results,
        "errors": approximation_errors(args.error_length) if args.error_length else None,
    }
    print(markdown(doc))
    text = json.dumps(doc, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    if args.plot:
        plot(doc, args.plot)


if __name__ == "__main__":
    main()
