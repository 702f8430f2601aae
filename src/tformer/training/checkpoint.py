"""Checkpoints: everything needed to resume a run, written atomically.

A checkpoint is one ``.pt`` file holding the model, optimizer and scheduler states, the step,
epoch and position in the epoch, the RNG states, the early-stopping state, and the configs and
versions that made it. It is written to a temporary file in the same folder and renamed, so a
crash mid-write never leaves a half checkpoint under a real name. Loading uses
``torch.load(weights_only=True)``: no code is executed from a checkpoint file.

Run-directory layout::

    checkpoints/step-00001200.pt   the K most recent step checkpoints
    checkpoints/last.pt            the newest
    checkpoints/best.pt            the best by validation loss
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from tformer.errors import TformerError
from tformer.fileio import atomic_open

FORMAT = "tformer-checkpoint-1"
_STEP_RE = re.compile(r"step-(\d+)\.pt$")


class CheckpointError(TformerError):
    """A checkpoint is missing, truncated, corrupt or of another format."""


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as f:
        torch.save({"format": FORMAT, **state}, f)


def copy_checkpoint(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copy a checkpoint file atomically (used for last.pt and best.pt)."""
    with open(src, "rb") as fin, atomic_open(dst) as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint, raising :class:`CheckpointError` (one line naming the file) if it is unusable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, bad pickle, wrong file: all mean "unusable"
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"corrupt or unreadable checkpoint {path}: {msg[:200]}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a tformer checkpoint")
    return state


def step_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """The step checkpoints in ``directory``, oldest first."""
    d = Path(directory)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _STEP_RE.search(p.name))]
    return [p for _, p in sorted(found)]


def prune_checkpoints(directory: str | os.PathLike, keep: int) -> None:
    """Delete all but the ``keep`` newest step checkpoints (last.pt and best.pt are separate files)."""
    old = step_checkpoints(directory)
    for p in old[: max(0, len(old) - keep)]:
        p.unlink(missing_ok=True)


def latest_valid_checkpoint(directory: str | os.PathLike, warn=print) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint that loads (last.pt, then step files newest first); None if there is none.

    Unusable files are reported through ``warn`` and skipped.
    """
    d = Path(directory)
    candidates = [d / "last.pt", *reversed(step_checkpoints(d))]
    for p in candidates:
        if not p.exists():
            continue
        try:
            return p, load_checkpoint(p)
        except CheckpointError as e:
            warn(f"warning: {e}; trying an older checkpoint")
    return None
