"""Gradient checkpointing: peak memory and time of one training forward + backward, with and without.

    python benchmarks/checkpointing.py [--config small] [--batch 8] [--lengths 128 256 512] [--repeats 3]

Each (length, checkpointing) pair runs in a fresh process: the model (dropout 0.1, training mode) and a
batch of ``--batch`` pairs with source and target of ``length`` tokens are built, one step warms up,
then the resident-memory high-water mark is reset and ``--repeats`` steps of teacher-forced loss +
backward are timed. Peak memory is the peak resident memory during the steps minus the resident memory
before them (weights, gradients and the batch are already there): what the activations cost. (glibc's
allocator is told to return every freed block over 64 KiB to the system at once, ``MEASURABLE_MALLOC``,
so that memory freed after the warm-up does not hide in the "before".) Prints
one JSON document: per length, both runs, the memory ratio and the time ratio.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from common import CONFIGS, MEASURABLE_MALLOC, emit, median, peak_rss_since_reset_mib, reset_peak_rss, setup_threads


def worker(config: str, batch: int, length: int, checkpointing: bool, repeats: int) -> None:
    import torch

    from tformer import Transformer, TransformerConfig
    from tformer.nn.gradient_checkpointing import set_gradient_checkpointing
    from tformer.tasks.translation import sequence_loss

    threads = setup_threads()
    w = CONFIGS[config]
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=w.vocab, d_model=w.d_model, num_heads=w.num_heads, d_ff=w.d_ff,
                                          num_encoder_layers=w.num_layers, num_decoder_layers=w.num_layers,
                                          dropout=w.dropout, max_len=length + 1)).train()
    if checkpointing:
        set_gradient_checkpointing(model)
    g = torch.Generator().manual_seed(1)
    src = torch.randint(4, w.vocab, (batch, length), generator=g)
    tgt = torch.randint(4, w.vocab, (batch, length + 1), generator=g)

    def step() -> None:
        out = sequence_loss(model, src, tgt[:, :-1], tgt[:, 1:], 0.1)
        (out.loss / out.num_tokens).backward()

    step()  # warm-up: gradients allocated, kernels chosen
    times = []
    before = reset_peak_rss()
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    emit({"length": length, "checkpointing": checkpointing, "seconds": median(times),
          "peak_activation_mib": round(peak_rss_since_reset_mib() - before, 1), "threads": threads})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="small", choices=sorted(CONFIGS))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lengths", type=int, nargs="+", default=[128, 256, 512])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--worker", nargs=2, metavar=("LENGTH", "CHECKPOINTING"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.config, args.batch, int(args.worker[0]), args.worker[1] == "1", args.repeats)
        return
    rows = []
    for length in args.lengths:
        pair = {}
        for ckpt in (False, True):
            cmd = [sys.executable, __file__, "--config", args.config, "--batch", str(args.batch),
                   "--repeats", str(args.repeats), "--worker", str(length), str(int(ckpt))]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=MEASURABLE_MALLOC).stdout
            pair[ckpt] = json.loads(next(x for x in out.splitlines() if x.startswith("BENCH_RESULT "))[13:])
        rows.append({"length": length, "plain": pair[False], "checkpointed": pair[True],
                     "memory_ratio": round(pair[True]["peak_activation_mib"] / pair[False]["peak_activation_mib"], 3),
                     "time_ratio": round(pair[True]["seconds"] / pair[False]["seconds"], 3)})
    w = CONFIGS[args.config]
    workload = {"config": args.config, "d_model": w.d_model, "layers": f"{w.num_layers}+{w.num_layers}",
                "batch": args.batch, "source = target length": args.lengths}
    print(json.dumps({"benchmark": "gradient checkpointing, one training forward + backward", "workload": workload,
                      "results": rows}, indent=1))


if __name__ == "__main__":
    main()
