"""The machine's fp32 matmul rate: square matrices 512 to 4096, GFLOP/s (2 n^3 FLOPs per product).

    python benchmarks/matmul.py        # prints one BENCH_RESULT {json} line

This is the ceiling for training: a training step is mostly matmuls, so its achieved GFLOP/s
divided by this rate says how much of the machine it uses.
"""

from __future__ import annotations

import time

import torch
from common import emit, median, setup_threads


def rate(n: int, repeats: int = 3) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / median(times) / 1e9


def main() -> None:
    threads = setup_threads()
    by_size = {n: rate(n) for n in (512, 1024, 2048, 4096)}
    emit({"part": "matmul", "impl": "torch.mm", "threads": threads, "gflop_s_by_size": by_size,
          "gflop_s": max(by_size.values())})


if __name__ == "__main__":
    main()
