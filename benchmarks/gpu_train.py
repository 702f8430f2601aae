"""A short training run through tformer's own Trainer: tokens/s and model FLOPs utilisation (MFU).

    python benchmarks/gpu_train.py [--config base] [--steps 60] [--precision auto] [--compile]
                                   [--max-tokens 25000] [--length 32] [--json-out FILE]

For the README's GPU figure: the paper's base model (``--config base``; vocabulary 8,000) or big model
(``--config big``) trains on synthetic pairs whose source and target all have ``--length`` tokens, so
that every batch has the same shape (``max_tokens // (length + 1)`` pairs) and the matmul FLOPs of a
step are known exactly (:func:`common.train_matmul_flops`). The Trainer runs as ``tformer train`` does
(autocast, gradient scaler for fp16, fused Adam, pinned memory, ``train.compile``); the first
``--warmup`` updates (compilation, allocator warm-up) are left out of the timing, and the first update's
time is reported on its own (with ``--compile``: mostly compilation).

MFU = achieved matmul FLOP/s / the GPU's dense peak for the precision (from the table below, by GPU
name; ``--peak-tflops`` overrides). On a CPU it reports tokens/s only. Prints one JSON document (and
writes it to ``--json-out``). :func:`measure` is also what ``gpu_torchrun.py`` runs in each process.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import torch
from common import CONFIGS, Workload, train_matmul_flops

# The speed benchmarks' workloads, the paper's big model (Table 3) and a tiny one for `gpu_check.sh --cpu-dry-run`.
WORKLOADS = {**CONFIGS, "big": Workload("big", 1024, 6, 16, 4096, dropout=0.3), "tiny": Workload("tiny", 32, 1, 2, 64)}

# Dense (no sparsity) peak TFLOP/s from the vendors' data sheets: bf16/fp16 tensor cores, and fp32 (tf32 off).
PEAK_TFLOPS = {
    "H100 80GB HBM3": {"bf16": 989.4, "fp16": 989.4, "fp32": 66.9},  # SXM5
    "H100 PCIe": {"bf16": 756.5, "fp16": 756.5, "fp32": 51.2},
    "H100 NVL": {"bf16": 835.5, "fp16": 835.5, "fp32": 60.0},
    "H200": {"bf16": 989.4, "fp16": 989.4, "fp32": 66.9},
    "A100": {"bf16": 312.0, "fp16": 312.0, "fp32": 19.5},
}


def peak_for(name: str, precision: str) -> float | None:
    for key, peaks in PEAK_TFLOPS.items():
        if key in name:
            return peaks[precision]
    return None


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", choices=sorted(WORKLOADS), default="base")
    ap.add_argument("--steps", type=int, default=60, help="timed updates")
    ap.add_argument("--warmup", type=int, default=10, help="updates before timing")
    ap.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--compile-backend", default="inductor",
                    help="torch.compile's backend (aot_eager: tracing without code generation, for quick checks)")
    ap.add_argument("--max-tokens", type=int, default=25000)
    ap.add_argument("--length", type=int, default=32)
    ap.add_argument("--peak-tflops", type=float, default=None)
    ap.add_argument("--json-out", type=Path, default=None)
    return ap


def measure(args: argparse.Namespace, dist=None) -> dict:
    """Train ``args.warmup + args.steps`` updates of the workload; the timing and MFU as a dict.

    ``dist``: a :class:`tformer.training.distributed.Distributed` for the Trainer (under torchrun)."""
    from tformer import Transformer, TransformerConfig
    from tformer.tasks.translation import ParallelData, TranslationTask
    from tformer.training.config import RunConfig, TrainConfig
    from tformer.training.task_loss import CompiledOrEager
    from tformer.training.trainer import Trainer

    w = WORKLOADS[args.config]
    per_batch = args.max_tokens // (args.length + 1)
    steps = args.warmup + args.steps
    world = dist.world_size if dist is not None else 1  # batches per update: one per process
    g = torch.Generator().manual_seed(0)
    pairs = [(torch.randint(4, w.vocab, (args.length,), generator=g).tolist(),
              torch.randint(4, w.vocab, (args.length,), generator=g).tolist())
             for _ in range(per_batch * steps * world)]
    train = TrainConfig(max_tokens=args.max_tokens, max_steps=steps, warmup_steps=4000, log_every=steps,
                        precision=args.precision, device=args.device, compile=args.compile, keep_checkpoints=0)
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=w.vocab, d_model=w.d_model, num_heads=w.num_heads,
                                          d_ff=w.d_ff, num_encoder_layers=w.num_layers,
                                          num_decoder_layers=w.num_layers, dropout=w.dropout))
    with tempfile.TemporaryDirectory() as run_dir:
        task = TranslationTask(ParallelData(None, pairs))
        trainer = Trainer(RunConfig(run_dir=run_dir, seed=0, train=train), model, task, show_progress=False,
                          dist=dist)
        if args.compile and args.compile_backend != "inductor":
            trainer.loss_fn = CompiledOrEager(trainer.loss_fn.module, backend=args.compile_backend)
        sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
        batches = trainer.sampler.batches_for_epoch(0)
        assert all(len(b) == per_batch for b in batches), "batches of unequal shape"
        trainer.model.train()
        times, skipped, first = [], 0, (0.0, 0)
        for i in range(steps):
            sync()
            t0 = time.perf_counter()
            skipped += not trainer._update(batches[i * world : (i + 1) * world])
            sync()
            times.append(time.perf_counter() - t0)
            if i == 0:  # the summed loss so far (read outside the timed region)
                first = (float(trainer.window.loss), trainer.window.tgt)
        loss_first = first[0] / max(first[1], 1)
        loss_rest = (float(trainer.window.loss) - first[0]) / max(trainer.window.tgt - first[1], 1)
        device = trainer.device
        precision = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[trainer.amp_dtype]
        compile_failed = getattr(trainer.loss_fn, "failed", None)
        strategy = trainer.parallel.name or "single process"
    timed = sorted(times[args.warmup :])
    sec = timed[len(timed) // 2]
    flops = train_matmul_flops(w, per_batch, args.length + 1, args.length + 1)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = args.peak_tflops or (peak_for(name, precision) if device.type == "cuda" else None)
    achieved = flops / sec / 1e12
    return {
        "benchmark": "tformer Trainer, one update (forward, backward, Adam) on fixed-shape batches",
        "device": name, "torch": torch.__version__, "config": args.config, "precision": precision,
        "compile": args.compile, "compile_backend": args.compile_backend if args.compile else None,
        "compile_failed": compile_failed, "strategy": strategy, "pairs_per_batch": per_batch,
        "length": args.length + 1, "updates": steps, "timed_updates": len(timed), "skipped_updates": skipped,
        "first_step_seconds": times[0], "median_step_seconds": sec,
        "tokens_per_s": world * per_batch * 2 * (args.length + 1) / sec,  # of all processes together
        "target_tokens_per_s": world * per_batch * (args.length + 1) / sec,
        "matmul_tflop_per_step": flops / 1e12, "achieved_tflop_s": achieved,  # per process (GPU)
        "peak_tflop_s": peak, "mfu": achieved / peak if peak else None,
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
        # loss per target token of the first update and the mean of the later ones (finite: training is sound)
        "loss_first_update": _number(loss_first), "loss_later_updates": _number(loss_rest),
    }


def _number(x: float) -> float | str:
    """``x``, or its name where JSON has no number for it (nan, inf)."""
    return x if math.isfinite(x) else str(x)


def main() -> None:
    args = parser().parse_args()
    result = measure(args)
    text = json.dumps(result, indent=1)
    print(text)
    if args.json_out:
        args.json_out.write_text(text + "\n")


if __name__ == "__main__":
    main()
