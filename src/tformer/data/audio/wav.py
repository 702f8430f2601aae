"""Reading audio files with ``soundfile`` (libsndfile: WAV, FLAC, OGG, ...), an optional dependency imported on
first use.

Shape legend: C channels, N samples.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor

from tformer.errors import TformerError, first_line

__all__ = ["read_wav"]


def _soundfile():
    try:
        import soundfile
    except ImportError:
        raise TformerError("reading audio files needs the soundfile package: pip install soundfile") from None
    return soundfile


def read_wav(path: str | os.PathLike, *, mono: bool = True) -> tuple[Tensor, int]:
    """The samples of an audio file as float32 in [-1, 1], and its sample rate.

    Args:
        path: a file libsndfile reads (WAV and others).
        mono: average the channels into one.

    Returns:
        (waveform (N,) when ``mono``, else (C, N); sample rate in Hz).

    Raises:
        TformerError: soundfile is not installed, or the file is missing or unreadable, in one line.
    """
    soundfile = _soundfile()
    if not Path(path).is_file():
        raise TformerError(f"audio file not found: {path}")
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)  # (N, C)
    except (RuntimeError, OSError, ValueError) as e:  # soundfile's errors derive from RuntimeError
        raise TformerError(f"cannot read {path}: {first_line(e)}") from None
    waveform = torch.from_numpy(data.T.copy())  # (N, C) -> (C, N)
    return (waveform.mean(dim=0) if mono else waveform), int(rate)
