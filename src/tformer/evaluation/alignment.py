"""How well an attention alignment follows the input in order: the diagonal focus rate and the monotonic rate.

For tasks whose output follows its input in order (speech, transliteration, grapheme to phoneme), the
encoder-decoder attention of output step t (of T) should peak near source position n ≈ t·N/T (of N), and
the peak should never move backwards. Over the steps of many alignments A (T, S), each step's peak
n*_t = argmax_n A[t, n] is scored two ways:

* **diagonal focus rate**: the share of steps whose peak lies within ``band`` of the diagonal, measured
  between cell centres, |(n*_t + ½)/N − (t + ½)/T| ≤ band + 1/(2N) (the half source cell lets the source
  position nearest the diagonal count, however short the source);
* **monotonic rate**: the share of steps whose peak is not behind the previous step's, n*_t ≥ n*_{t−1} (the
  first step counts as monotonic: there is nothing to move back from).

A perfectly diagonal alignment scores 1 on both; an anti-diagonal one about 2/N on the first and 1/T on the
second. Alignments come from :func:`tformer.generation.alignment.step_alignment`.

Shape legend: T output steps, S (= N) source positions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

from tformer.errors import TformerError

DEFAULT_BAND = 0.1  # a tenth of the source length either side of the diagonal


@dataclass(frozen=True)
class AlignmentRates:
    """The two shares over all steps of all alignments scored, and how many steps there were."""

    diagonal_focus_rate: float
    monotonic_rate: float
    steps: int
    band: float


def peaks(alignment: Tensor) -> Tensor:
    """Each step's attention peak: (T, S) -> (T,) source positions (the first of equal maxima)."""
    return alignment.argmax(dim=-1)


def on_diagonal(peak: Tensor, s: int, band: float) -> Tensor:
    """Whether each step's peak (T,) of a source of length ``s`` lies within ``band`` of the diagonal, (T,) bool."""
    t_len = peak.shape[0]
    t = torch.arange(t_len, device=peak.device, dtype=torch.float64)
    distance = ((peak.double() + 0.5) / s - (t + 0.5) / t_len).abs()  # between cell centres
    return distance <= band + 0.5 / s


def moves_forward(peak: Tensor) -> Tensor:
    """Whether each step's peak (T,) is not behind the previous step's, (T,) bool (the first step: True)."""
    return torch.cat([peak.new_ones(1, dtype=torch.bool), peak[1:] >= peak[:-1]])


def check_band(band: float) -> None:
    """A one-line :class:`TformerError` unless ``band`` is a valid half-width of the diagonal band (>= 0, not NaN)."""
    if not band >= 0:
        raise TformerError(f"the diagonal band must be >= 0, got {band}")


def alignment_rates(alignments: Iterable[Tensor], band: float = DEFAULT_BAND) -> AlignmentRates:
    """The diagonal focus rate and the monotonic rate over every step of ``alignments``, each (T_i, S_i) (one
    sentence's output steps by its real source positions, rows summing to 1).

    Raises:
        TformerError: a negative band, or an alignment that is not a non-empty matrix.
    """
    check_band(band)
    diagonal = forward = steps = 0
    for a in alignments:
        if a.dim() != 2 or 0 in a.shape:
            raise TformerError(f"an alignment is a non-empty (T, S) matrix, got shape {tuple(a.shape)}")
        p = peaks(a)
        diagonal += int(on_diagonal(p, a.shape[1], band).sum())
        forward += int(moves_forward(p).sum())
        steps += a.shape[0]
    if not steps:
        return AlignmentRates(0.0, 0.0, 0, band)
    return AlignmentRates(diagonal / steps, forward / steps, steps, band)
