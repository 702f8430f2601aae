"""Where training runs and in what precision: the device, the autocast dtype, and batches moved onto the device."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import warnings
from typing import Any

import torch
from torch import Tensor

from tformer.errors import TformerError


def pick_device(name: str, index: int | None = None) -> torch.device:
    """The device ``train.device`` names ("auto": cuda, then mps, then cpu); ``index`` picks one of
    several GPUs (a torchrun process's LOCAL_RANK)."""
    device = _device_type(name)
    return torch.device(device.type, index) if index is not None and device.type == "cuda" else device


def _device_type(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TformerError("train.device is cuda but no CUDA device is available")
    return torch.device(name)


def pick_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for plain fp32.

    "auto" is bf16 on a CUDA GPU that has it, else fp16 there, and fp32 elsewhere. "fast" is "auto", and bf16
    also on a CPU that multiplies bf16 natively (AVX512-BF16 or AMX: 1.65x the fp32 speed of the small
    Transformer's training step, about 1.3x over a Multi30k run, on a 2-core AMD EPYC), fp32 on other CPUs (where
    bf16 is emulated, slower than fp32).
    "bf16" and "fp16" are autocast to that dtype on any device whose autocast has it (the CPU's has both in
    recent torch, emulated where the CPU lacks them: what tests and debugging of the mixed-precision paths run
    on); fp16 comes with a gradient scaler.
    """
    if name == "fast":  # "auto" off the CPU; on it, bf16 only where the CPU computes bf16 natively
        native = device.type == "cpu" and cpu_has_native_bf16() and _cpu_autocasts_to(torch.bfloat16)
        name = "bf16" if native else "fp32" if device.type == "cpu" else "auto"
    if name == "fp32" or (name == "auto" and device.type != "cuda"):
        return None
    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    dtype = torch.bfloat16 if name == "bf16" else torch.float16
    if device.type == "cpu" and not _cpu_autocasts_to(dtype):
        raise TformerError(f"train.precision {name} needs a GPU with this torch ({torch.__version__}): its CPU "
                           f"autocast has no {name}; use fp32 on the CPU")
    return dtype


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 dot-product instructions (AVX512-BF16 or AMX tiles), which oneDNN's bf16
    matrix products use; without them a bf16 product is emulated in fp32 and slower than fp32 itself."""
    probes = (getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return any(probe is not None and probe() for probe in probes)  # (torch's own CPU-feature probes)


@functools.cache
def _cpu_autocasts_to(dtype: torch.dtype) -> bool:
    """Whether this torch's CPU autocast computes a linear layer in ``dtype`` (an unsupported dtype only warns
    and leaves autocast off)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.autocast("cpu", dtype=dtype):
            return torch.nn.functional.linear(torch.ones(1, 1), torch.ones(1, 1)).dtype == dtype


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` to ``dtype`` on ``device``; nothing for plain fp32 (``dtype`` None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def to_device(batch: Any, device: torch.device, pin_memory: bool) -> Any:
    """``batch.to(device)``; with ``pin_memory`` (CUDA) through page-locked memory, so that the copy
    (``non_blocking``) runs while the GPU computes."""
    return _pinned(batch).to(device, non_blocking=True) if pin_memory else batch.to(device)


def _pinned(batch: Any) -> Any:
    """The batch (a dataclass of tensors and counts) with its tensors in page-locked memory."""
    tensors = {f.name: getattr(batch, f.name) for f in dataclasses.fields(batch)}
    return dataclasses.replace(batch, **{k: v.pin_memory() for k, v in tensors.items() if isinstance(v, Tensor)})
