"""Where tformer's decoding time goes: torch.profiler over the benchmark's decoding workloads.

    python benchmarks/profile_decode.py --dir DIR     # DIR from `python benchmarks/decode.py prepare`

Prints the top operators of one beam 4 / batch 32 batch (fp32 and int8), then, for greedy batch 1 (8
sentences, 24 tokens each; fp32 and int8): milliseconds per step unprofiled, the operators' own time per step
(the rest is Python: module calls, the search loop), the part spent in the linear layers with the bandwidth
that implies (the decoder's weights are read once per step), and aten calls per step. The numbers quoted in
the README's speed section come from this script; the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

import tformer
from tformer.nn.quantize import quantize_dynamic_int8

LINEAR = ("aten::addmm", "aten::mm", "quantized::linear_dynamic")


def beam_table(model, batch: torch.Tensor, name: str) -> None:
    for _ in range(2):  # warm-up
        model.generate(batch, beam_size=4, max_len=24, min_len=24, length_penalty=1.0)
    with profile(activities=[ProfilerActivity.CPU]) as prof, torch.inference_mode():
        model.generate(batch, beam_size=4, max_len=24, min_len=24, length_penalty=1.0)
    print(f"{name} beam 4 / batch 32, one batch:")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))


def decoder_step_bytes(model) -> int:
    """Bytes of weights one greedy step reads: the decoder's linear layers (not the cross-attention W^K, W^V,
    applied once per source) and the output layer."""
    total = 0
    for name, m in model.named_modules():
        if name.startswith("decoder") and ("k_proj" in name or "v_proj" in name) and "cross" in name:
            continue
        if name.startswith(("decoder", "output_projection")):
            if isinstance(m, torch.nn.Linear):
                total += m.weight.numel() * m.weight.element_size()
            elif hasattr(m, "weight") and callable(m.weight) and "quantized" in type(m).__module__:
                total += m.weight().numel()  # int8
    return total


def greedy_profile(model, sentences: torch.Tensor, name: str) -> dict:
    steps = len(sentences) * 24

    def one_by_one():
        with torch.inference_mode():
            for s in sentences:
                model.generate(s[None], beam_size=1, max_len=24, min_len=24)

    one_by_one()
    t0 = time.perf_counter()
    one_by_one()
    per_step = (time.perf_counter() - t0) / steps * 1e3
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        one_by_one()
    ev = [e for e in prof.key_averages() if "::" in e.key]
    own = sum(e.self_cpu_time_total for e in ev) / 1e3 / steps
    linear = sum(e.self_cpu_time_total for e in ev if e.key in LINEAR) / 1e3 / steps
    calls = sum(e.count for e in ev if e.key.startswith("aten::")) / steps
    mb = decoder_step_bytes(model) / 1e6
    rec = {"engine": name, "ms_per_step": round(per_step, 3), "operators_ms": round(own, 3),
           "linear_ms": round(linear, 3), "weights_mb_per_step": round(mb, 1),
           "linear_gb_s": round(mb / linear, 1) if linear else None, "aten_calls": round(calls)}
    print(f"{name} greedy batch 1: {per_step:.2f} ms per step; operators' own time {own:.2f} ms (the rest is "
          f"Python), of which the linear layers {linear:.2f} ms for {mb:.1f} MB of weights ({rec['linear_gb_s']} "
          f"GB/s); {calls:.0f} aten calls per step")
    return rec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    model = tformer.Transformer.from_pretrained(args.dir / "tformer").eval()
    int8 = quantize_dynamic_int8(model)
    src = torch.load(args.dir / "src.pt")
    beam_table(model, src[:32], "fp32")
    beam_table(int8, src[:32], "int8")
    recs = [greedy_profile(model, src[:8], "fp32"), greedy_profile(int8, src[:8], "int8")]
    print(json.dumps({"threads": torch.get_num_threads(), "greedy_batch_1": recs}))


if __name__ == "__main__":
    main()
