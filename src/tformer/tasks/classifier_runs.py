"""What the predictors of classifier runs share (``classify``, ``vision``, ``audio_classify``): loading the run's
model on a device, token-budget batches that keep the inputs' order, and one answer from a row of logits.

Errors about one input name it as ``input N`` (counted from 1), which ``tformer predict`` turns into the line
number of its input file (one input a line).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from tformer.config import ConfigError
from tformer.data.batching import TokenBatchSampler
from tformer.errors import TformerError
from tformer.models.registry import load_pretrained
from tformer.tasks.predictor import CONFIG_FILE
from tformer.training.config import RunConfig
from tformer.training.config_file import read_run_config

MODEL_DIR = "model"


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch.device (one-line TformerError for an unknown name or a missing CUDA device)."""
    try:
        d = torch.device(device)
    except (RuntimeError, TypeError):
        raise TformerError(f"unknown device {device!r} (cpu, cuda, cuda:1, mps, ...)") from None
    if d.type == "cuda" and not torch.cuda.is_available():
        raise TformerError("device cuda was asked for but no CUDA device is available")
    return d


def run_model(run_dir: str | os.PathLike, device: torch.device, classes: tuple[type[nn.Module], ...],
              task: str) -> nn.Module:
    """The best model of the run in ``run_dir`` (its ``model/``), in evaluation mode on ``device``.

    Raises:
        TformerError: no such run, no model yet, a damaged folder, or a model of another class than ``classes``
            (a run of another task), in one line.
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise TformerError(f"{run} is a file, not a run directory" if run.exists() else f"run directory not found: "
                                                                                          f"{run}")
    if not (run / MODEL_DIR).is_dir():
        raise TformerError(f"{run} has no {MODEL_DIR}/ yet (it is written at the first validation)")
    try:
        model = load_pretrained(run / MODEL_DIR, map_location=device)
    except ConfigError as e:
        raise TformerError(f"cannot load the model of {run}: {e}") from None
    if not isinstance(model, classes):
        raise TformerError(f"{run / MODEL_DIR} holds a {type(model).__name__}; a {task} run has a "
                           f"{' or '.join(c.__name__ for c in classes)}")
    return model.eval()


def run_config(run_dir: str | os.PathLike) -> RunConfig | None:
    """The run's config (its ``config.yaml``), or None when it has none or it cannot be read."""
    try:
        return read_run_config(Path(run_dir) / CONFIG_FILE)
    except (TformerError, OSError):
        return None


def token_batches(costs: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Indices of inputs in batches under ``max_tokens`` padded tokens, inputs of similar cost together
    (:class:`~tformer.data.batching.TokenBatchSampler` without shuffling, as ``translate`` batches); ``costs`` are
    the tokens each input occupies. Every index appears once; callers put the answers back in input order."""
    if max_tokens < 1:
        raise TformerError(f"max_tokens must be >= 1, got {max_tokens}")
    lengths = [max(int(c), 1) - 1 for c in costs]  # the sampler adds 1 to each length
    return TokenBatchSampler(lengths, [0] * len(lengths), max_tokens, shuffle=False).batches_for_epoch(0)


def answers(labels: Sequence[str], logits: Tensor) -> list[dict[str, Any]]:
    """One answer per row of ``logits`` (B, K): the most likely label and every label's probability (softmax,
    in float64 so that they sum to 1 to rounding)."""
    probs = torch.softmax(logits.detach().double().cpu(), dim=-1)  # (B, K)
    out = []
    for row in probs.tolist():
        best = max(range(len(row)), key=row.__getitem__)
        out.append({"label": labels[best], "probabilities": dict(zip(labels, row, strict=True))})
    return out


def input_error(n: int, message: str) -> TformerError:
    """The one-line error about input ``n`` (counted from 1)."""
    return TformerError(f"input {n}: {message}")
