"""Checkpoints: everything needed to resume a run, written atomically.

A checkpoint is one ``.pt`` file holding the model, optimizer and scheduler states, the step,
epoch and position in the epoch, the RNG states, the early-stopping state, and the configs and
versions that made it. It is written to a temporary file in the same folder, flushed to disk and
renamed, so a crash mid-write never leaves a half checkpoint under a real name (only a ``.tmp-*``
file, which :func:`remove_unfinished` deletes on resume).

Loading checks the file before trusting it: the CRC-32 of every record in the file's zip container
(``torch.save`` writes them; ``torch.load`` does not verify them, so a flipped bit in a weight would
otherwise load silently), then ``torch.load(weights_only=True)``, so no code is executed from a
checkpoint file. Any failure is one line naming the file.

Run-directory layout::

    checkpoints/step-00001200.pt   the K most recent step checkpoints
    checkpoints/last.pt            the newest (a copy of the newest step checkpoint)
    checkpoints/best.pt            the best by validation loss
"""

from __future__ import annotations

import os
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any

import torch

from tformer.errors import TformerError
from tformer.io.files import atomic_open

FORMAT = "tformer-checkpoint-1"
_STEP_RE = re.compile(r"step-(\d+)\.pt$")


class CheckpointError(TformerError):
    """A checkpoint is missing, truncated, corrupt or of another format."""


class _Writer:
    """A file wrapper that remembers the OSError of a failed write: ``torch.save`` reports one only as
    ``RuntimeError: unexpected pos``, which would hide a full disk."""

    def __init__(self, f) -> None:
        self.f, self.error = f, None

    def write(self, b) -> int:
        try:
            return self.f.write(b)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.f.flush()


def _write_error(path: str | os.PathLike, e: OSError) -> CheckpointError:
    return CheckpointError(f"cannot write checkpoint {path}: {e.strerror or e} "
                           f"(the checkpoints already in {Path(path).parent} are intact)")


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename).

    Raises:
        CheckpointError: the file cannot be written (full disk, no permission); ``path`` is unchanged.
    """
    writer = None
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path) as f:
            writer = _Writer(f)
            torch.save({"format": FORMAT, **state}, writer)
    except OSError as e:
        raise _write_error(path, e) from None
    except RuntimeError:
        if writer is not None and writer.error is not None:
            raise _write_error(path, writer.error) from None
        raise


def copy_checkpoint(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copy a checkpoint file atomically (used for last.pt and best.pt); errors as :func:`save_checkpoint`."""
    try:
        with open(src, "rb") as fin, atomic_open(dst) as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
    except OSError as e:
        raise _write_error(dst, e) from None


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint, raising :class:`CheckpointError` (one line naming the file) if it is unusable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()  # reads every record and compares its CRC-32
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise CheckpointError(f"corrupt or unreadable checkpoint {path}: {e}") from None
    if bad is not None:
        raise CheckpointError(f"corrupt checkpoint {path}: checksum mismatch in record {bad}")
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


def remove_unfinished(directory: str | os.PathLike) -> list[Path]:
    """Delete the temporary files of writes that never finished (a crash or kill mid-write); return them."""
    d = Path(directory)
    found = sorted(d.glob(".tmp-*")) if d.is_dir() else []
    for p in found:
        p.unlink(missing_ok=True)
    return found


def latest_valid_checkpoint(directory: str | os.PathLike, warn=print) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint that loads (step files newest first, then last.pt); None if there is none.

    Step files come first because a run killed between writing ``step-N.pt`` and copying it to
    ``last.pt`` leaves ``last.pt`` one checkpoint behind. Unusable files are reported through ``warn``
    and skipped.
    """
    d = Path(directory)
    candidates = [*reversed(step_checkpoints(d)), d / "last.pt"]
    for p in candidates:
        if not p.exists():
            continue
        try:
            return p, load_checkpoint(p)
        except CheckpointError as e:
            warn(f"warning: {e}; trying an older checkpoint")
    return None
