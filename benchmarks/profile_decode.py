"""Where tformer's decoding time goes: torch.profiler over the benchmark's decoding workloads.

    python benchmarks/profile_decode.py --dir DIR     # DIR from `python benchmarks/decode.py prepare`

Prints the top operators of one int8 beam 4 / batch 32 batch, then, for greedy batch 1 (8 sentences,
24 tokens each), milliseconds per step, the part spent in matmul and attention kernels, and aten calls
per step. Numbers quoted in the README's speed section come from this script.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

import tformer
from tformer.nn.quantize import quantize_dynamic_int8

KERNELS = ("aten::addmm", "aten::mm", "aten::bmm", "aten::_scaled_dot_product_flash_attention_for_cpu")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, required=True)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    model = tformer.Transformer.from_pretrained(args.dir / "tformer").eval()
    src = torch.load(args.dir / "src.pt")

    int8 = quantize_dynamic_int8(model)
    batch = src[:32]
    for _ in range(2):  # warm-up
        int8.generate(batch, beam_size=4, max_len=24, min_len=24, length_penalty=1.0)
    with profile(activities=[ProfilerActivity.CPU]) as prof, torch.inference_mode():
        int8.generate(batch, beam_size=4, max_len=24, min_len=24, length_penalty=1.0)
    print("int8 beam 4 / batch 32, one batch:")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))


    sentences = src[:8]
    steps = len(sentences) * 24

    def greedy_one_by_one():
        for s in sentences:
            model.generate(s[None], beam_size=1, max_len=24, min_len=24)

    greedy_one_by_one()
    t0 = time.perf_counter()
    greedy_one_by_one()
    per_step = (time.perf_counter() - t0) / steps
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        greedy_one_by_one()
    ev = prof.key_averages()
    kernels = sum(e.self_cpu_time_total for e in ev if e.key in KERNELS) / 1e3 / steps
    calls = sum(e.count for e in ev if e.key.startswith("aten::")) / steps
    print(f"greedy batch 1: {per_step * 1e3:.2f} ms per step, {kernels:.2f} ms of it in matmul and attention "
          f"kernels, {calls:.0f} aten calls per step")

if __name__ == "__main__":
    main()
