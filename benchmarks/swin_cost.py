"""Why windows: one forward + backward of a ViT layer stack against a Swin stack of the same width, by image size.

    python benchmarks/swin_cost.py                                   # 32 .. 512 px, both stacks
    python benchmarks/swin_cost.py --sizes 32,64 --repeats 1         # a quick check
    python benchmarks/swin_cost.py --json /tmp/swin_cost.json --plot docs/pictures/swin_cost.png
    python benchmarks/swin_cost.py --from-json /tmp/swin_cost.json --plot PATH   # table and plot only

The claim (Liu et al., 2021, §3.2, Eq. 1-2): global multi-head self-attention over P = (S / patch)^2 patches costs
4 P C^2 + 2 P^2 C, window attention 4 P C^2 + 2 M^2 P C: quadratic against linear in P. Both stacks here see the
same P tokens of the same width C and have the same parameters but Swin's bias tables:

* "vit": ``--layers`` pre-norm encoder layers of :func:`tformer.nn.layers.layer_norm_layer` (C, ``--heads``, MLP 4C,
  GELU), global attention through PyTorch's SDPA;
* "swin": one stage of ``--layers`` Swin blocks (:func:`tformer.models.swin.builders.stages`; W-MSA and SW-MSA
  alternating, window ``--window``, MLP 4C), on the S / patch x S / patch map (padded to a multiple of the window).

One call is ``stack(x)`` on x (``--batch``, P, C) ~ N(0, 1) in training mode (dropout 0), then ``out.sum().backward()``.
Each (stack, size) runs in a fresh process: one warm-up call, then one call whose memory is measured (CPU: the
peak resident set during the call minus the one before it, with an allocator that returns freed blocks at once,
``common.MEASURABLE_MALLOC``; CUDA: ``torch.cuda.max_memory_allocated`` minus the memory allocated before it), then
``--repeats`` timed calls (median wall-clock seconds; CUDA synchronised).

Prints a markdown table, then the JSON document (also written to ``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from common import MEASURABLE_MALLOC

HERE = Path(__file__).resolve().parent
STACKS = {"vit": "ViT layers (global attention)", "swin": "Swin blocks (window attention)"}
SIZES = (32, 64, 128, 256, 512)


def build(stack: str, args: argparse.Namespace):
    """The layer stack, as a function x (B, P, C) -> (B, P, C)."""
    import torch

    if stack == "vit":
        from tformer.nn.layers import layer_norm_layer

        layers = torch.nn.ModuleList(
            layer_norm_layer(args.width, args.heads, 4 * args.width, dropout=0.0, attention_dropout=0.0,
                             activation="gelu", pre_norm=True, eps=1e-5) for _ in range(args.layers))

        def run(x):
            for layer in layers:
                x = layer(x)[0]
            return x

        return layers, run
    from tformer.models.swin.builders import stages
    from tformer.models.swin.config import SwinConfig

    cfg = SwinConfig(image_size=args.size, patch_size=args.patch, embed_dim=args.width, depths=(args.layers,),
                     num_heads=(args.heads,), window_size=args.window, drop_path_rate=0.0)
    stage = stages(cfg)[0]
    return stage, lambda x: stage(x)[0]


def measure(stack: str, args: argparse.Namespace) -> dict:
    import torch
    from common import median, peak_rss_since_reset_mib, reset_peak_rss, setup_threads

    threads = setup_threads()
    device = torch.device(args.device)
    torch.manual_seed(0)
    module, run = build(stack, args)
    module.to(device).train()
    tokens = (-(-args.size // args.patch)) ** 2
    cuda = device.type == "cuda"

    def call() -> float:
        x = torch.randn(args.batch, tokens, args.width, device=device, requires_grad=True)
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        run(x).sum().backward()
        if cuda:
            torch.cuda.synchronize()
        module.zero_grad(set_to_none=True)
        return time.perf_counter() - t0

    call()  # warm-up: kernels, thread pool, autograd engine
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device) / 2**20
        call()
        peak = torch.cuda.max_memory_allocated(device) / 2**20 - before
    else:
        before = reset_peak_rss()
        call()
        peak = peak_rss_since_reset_mib() - before
    times = [call() for _ in range(args.repeats)]
    return {"stack": stack, "size": args.size, "patches": tokens, "threads": threads, "device": str(device),
            "seconds": median(times), "seconds_all": times, "peak_mib": peak}


def run_worker(stack: str, size: int, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--stacks", stack, "--sizes", str(size)]
    for name in ("width", "heads", "layers", "window", "patch", "batch", "repeats", "device"):
        cmd += [f"--{name}", str(getattr(args, name))]
    try:
        p = subprocess.run(cmd, cwd=HERE, capture_output=True, text=True, timeout=args.timeout, env=MEASURABLE_MALLOC)
    except subprocess.TimeoutExpired:
        return {"stack": stack, "size": size, "error": f"timed out after {args.timeout} s"}
    for line in p.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            return json.loads(line[len("BENCH_RESULT "):])
    err = (p.stderr.strip().splitlines() or ["no output"])[-1]
    return {"stack": stack, "size": size, "error": f"exit {p.returncode}: {err}"}


def markdown(doc: dict) -> str:
    sizes = sorted({r["size"] for r in doc["results"]})
    cells = {(r["stack"], r["size"]): r for r in doc["results"]}
    lines = ["| stack | " + " | ".join(f"{s} px" for s in sizes) + " |", "|---" * (len(sizes) + 1) + "|"]
    for stack in dict.fromkeys(r["stack"] for r in doc["results"]):
        row = []
        for s in sizes:
            r = cells.get((stack, s))
            row.append("" if r is None else "error" if "error" in r
                       else f"{r['seconds'] * 1000:,.1f} ms / {r['peak_mib']:,.0f} MiB")
        lines.append(f"| {STACKS[stack]} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def plot(doc: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.4))
    for stack in dict.fromkeys(r["stack"] for r in doc["results"]):
        runs = [r for r in doc["results"] if r["stack"] == stack and "seconds" in r]
        patches = [r["patches"] for r in runs]
        ax_t.plot(patches, [r["seconds"] for r in runs], "o-", label=STACKS[stack])
        ax_m.plot(patches, [r["peak_mib"] for r in runs], "o-", label=STACKS[stack])
    for ax, ylabel in ((ax_t, "seconds per forward + backward"), (ax_m, "peak memory of the call (MiB)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("patches P (image side / patch)^2")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    s = doc["setup"]
    fig.suptitle(f"{s['layers']} layers of width {s['width']}, {s['heads']} heads, patch {s['patch']}, window "
                 f"{s['window']}, batch {s['batch']}, fp32, forward + backward on {doc['machine']['device']}")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stacks", default=",".join(STACKS), help=f"comma-separated, of {', '.join(STACKS)}")
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)), help="image sides in pixels")
    ap.add_argument("--width", type=int, default=96, help="C, the width of both stacks (Swin-T's stage 1)")
    ap.add_argument("--heads", type=int, default=3)
    ap.add_argument("--layers", type=int, default=2, help="layers (blocks) per stack; Swin alternates W- and SW-MSA")
    ap.add_argument("--window", type=int, default=8, help="M, Swin's window side in patches")
    ap.add_argument("--patch", type=int, default=4)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per measurement")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per measurement")
    ap.add_argument("--json", help="also write the JSON document here")
    ap.add_argument("--plot", help="write a two-panel PNG (time and peak memory against patches, log-log)")
    ap.add_argument("--from-json", help="measure nothing: print the table and plot from a JSON document written before")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    stacks, sizes = args.stacks.split(","), [int(s) for s in args.sizes.split(",")]
    if set(stacks) - set(STACKS):
        ap.error(f"unknown stack(s) {', '.join(sorted(set(stacks) - set(STACKS)))}; known: {', '.join(STACKS)}")
    if args.from_json:
        doc = json.loads(Path(args.from_json).read_text())
    elif args.worker:
        from common import emit

        args.size = sizes[0]
        emit(measure(stacks[0], args))
        return
    else:
        doc = measure_all(stacks, sizes, args)
    print(markdown(doc))
    if not args.from_json:
        text = json.dumps(doc, indent=2)
        print(text)
        if args.json:
            Path(args.json).write_text(text + "\n")
    if args.plot:
        plot(doc, args.plot)


def measure_all(stacks: list[str], sizes: list[int], args: argparse.Namespace) -> dict:
    import torch

    started, load_before = time.time(), os.getloadavg()
    results = []
    for size in sizes:
        for stack in stacks:
            results.append(run_worker(stack, size, args))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    return {
        "benchmark": "swin_cost",
        "setup": {k: getattr(args, k) for k in ("width", "heads", "layers", "window", "patch", "batch", "repeats")},
        "call": "stack(x), x (batch, patches, width) ~ N(0, 1), training mode, dropout 0, fp32; out.sum().backward()",
        "peak_memory": "MiB above the memory before the call (CPU: VmHWM - VmRSS with MALLOC_MMAP_THRESHOLD_=65536; "
                       "CUDA: max_memory_allocated - memory_allocated)",
        "time": "median seconds of the timed calls",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "device": args.device,
                    "threads": int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1)),
                    "torch": torch.__version__, "python": platform.python_version()},
        "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "wall_seconds": time.time() - started,
        "results": results,
    }


if __name__ == "__main__":
    main()
