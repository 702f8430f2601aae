"""The machine of a GPU check: versions, the device, the packages the other steps need, and its two ceilings.

    python benchmarks/gpu_env.py --json-out FILE [--device cuda]

The ceilings, measured rather than taken from a data sheet: the matmul rate (bf16 on the tensor cores,
and fp32 with TF32 off, the precision of ``gpu_train.py``'s fp32 MFU) on random data, median of 10
products after 3 warm-ups, and the device-to-device copy bandwidth (bytes read + written). On the CPU
(``--device cpu``, the dry run) a small fp32 product only.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

PACKAGES = ("tformer", "tokenizers", "sacrebleu", "safetensors", "yaml", "tqdm", "pytest", "hypothesis",
            "transformers", "ctranslate2")


def timed(fn, device: torch.device, reps: int = 10) -> float:
    """Median seconds of ``fn()`` after 3 warm-up calls (synchronised around each call on a GPU)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def matmul_tflops(n: int, dtype: torch.dtype, device: torch.device) -> float:
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    return 2 * n**3 / timed(lambda: a @ b, device) / 1e12


def nvidia_smi() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    query = "name,memory.total,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,power.draw"
    p = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"], capture_output=True,
                       text=True, timeout=30)
    return p.stdout.strip() or p.stderr.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json-out", type=Path, required=True)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    args = ap.parse_args()
    info = {"python": sys.version.split()[0], "executable": sys.executable, "platform": platform.platform(),
            "torch": torch.__version__, "cuda_available": torch.cuda.is_available(), "torch_cuda": torch.version.cuda,
            "packages": {p: importlib.util.find_spec(p) is not None for p in PACKAGES}, "nvidia_smi": nvidia_smi()}
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda, but torch sees no CUDA device")
        props = torch.cuda.get_device_properties(device)
        info.update(device=props.name, capability=f"{props.major}.{props.minor}",
                    memory_gib=props.total_memory / 2**30, multiprocessors=props.multi_processor_count,
                    bf16_supported=torch.cuda.is_bf16_supported())
        torch.backends.cuda.matmul.allow_tf32 = False
        info["matmul_tflop_s"] = {"bf16": matmul_tflops(8192, torch.bfloat16, device),
                                  "fp32": matmul_tflops(4096, torch.float32, device)}
        x = torch.empty(2**30 // 4, device=device)  # 1 GiB
        y = torch.empty_like(x)
        info["copy_gb_s"] = 2 * x.numel() * 4 / timed(lambda: y.copy_(x), device) / 1e9
    else:
        info.update(device="cpu", threads=torch.get_num_threads())
        info["matmul_tflop_s"] = {"fp32": matmul_tflops(256, torch.float32, device)}
    text = json.dumps(info, indent=1)
    args.json_out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
