"""SpecAugment's frequency and time masking (Park et al., 2019, §2), a training-time transform of the features.

For each utterance of length τ frames and ν channels:

* ``freq_masks`` times: a width f drawn uniformly from [min_freq_width, max_freq_width] (the paper's F), a start
  f0 from [0, ν - f]; channels f0 .. f0 + f - 1 are masked;
* ``time_masks`` times: a width t from [min_time_width, min(max_time_width, floor(p τ))] (the paper's T and
  upper bound p), a start t0 from [0, τ - t]; frames t0 .. t0 + t - 1 are masked.

Masks fall on real frames only (τ is the utterance's own length), and masked values become ``mask_value``
(0: the mean of normalised features). Time warping, the paper's third policy, is left out (its ablation finds
it helps least). The Conformer trains with F = 27, two frequency masks, and ten time masks of ratio p = 0.05
(Gulati et al., 2020, §3.1). Every draw comes from the ``generator`` given, so a seed repeats a batch's masks.

Shape legend: B batch, T frames, M channels (n_mels), n masks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from tformer.data.audio.features import frame_mask
from tformer.errors import ConfigError

__all__ = ["SpecAugment"]


def _bands(size: Tensor, count: int, low: int, high: Tensor, extent: int, generator: torch.Generator | None
           ) -> Tensor:
    """``count`` random bands per row inside [0, size[b]): widths uniform in [low, high[b]] (at most size[b]),
    starts uniform in [0, size[b] - width]. Returns (B, extent) boolean, True = inside a band."""
    b = size.shape[0]
    if count == 0:
        return torch.zeros(b, extent, dtype=torch.bool, device=size.device)
    high = torch.maximum(high, torch.full_like(high, low))[:, None]  # (B, 1)
    u = torch.rand(b, count, generator=generator, dtype=torch.float64).to(size.device)  # (B, n)
    width = (low + (u * (high - low + 1)).floor().long()).minimum(size[:, None])  # (B, n)
    u = torch.rand(b, count, generator=generator, dtype=torch.float64).to(size.device)  # (B, n)
    start = (u * (size[:, None] - width + 1)).floor().long()  # (B, n)
    pos = torch.arange(extent, device=size.device)[None, None, :]  # (1, 1, extent)
    inside = (pos >= start[..., None]) & (pos < (start + width)[..., None])  # (B, n, extent)
    return inside.any(dim=1)  # (B, extent)


@dataclass(frozen=True)
class SpecAugment:
    """Frequency and time masks (SpecAugment §2); call it on a padded batch of features during training.

    Attributes:
        freq_masks: m_F, frequency masks per utterance.
        max_freq_width, min_freq_width: the range of each frequency mask's width (F is the maximum).
        time_masks: m_T, time masks per utterance.
        max_time_width, min_time_width: the range of each time mask's width (T is the maximum).
        max_time_ratio: p, a time mask covers at most floor(p τ) frames of a τ-frame utterance.
        mask_value: what masked features become.
    """

    freq_masks: int = 2
    max_freq_width: int = 27
    time_masks: int = 2
    max_time_width: int = 40
    max_time_ratio: float = 1.0
    min_freq_width: int = 0
    min_time_width: int = 0
    mask_value: float = 0.0

    def __post_init__(self) -> None:
        for name in ("freq_masks", "max_freq_width", "time_masks", "max_time_width", "min_freq_width",
                     "min_time_width"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        for kind in ("freq", "time"):
            low, high = getattr(self, f"min_{kind}_width"), getattr(self, f"max_{kind}_width")
            if low > high:
                raise ConfigError(f"min_{kind}_width ({low}) must be <= max_{kind}_width ({high})")
        if not 0.0 < self.max_time_ratio <= 1.0:
            raise ConfigError(f"max_time_ratio must be in (0, 1], got {self.max_time_ratio}")

    def masks(self, features: Tensor, lengths: Tensor | None = None, generator: torch.Generator | None = None
              ) -> Tensor:
        """Where the masks fall: (B, T, M) boolean, True = masked; nothing on padded frames.

        Args:
            features: (B, T, M), right-padded (only its shape and device are read).
            lengths: (B,) real frames of each row (None = all T).
            generator: the source of every draw (None = torch's default one); a CPU generator.
        """
        b, t, m = features.shape
        device = features.device
        if lengths is None:
            lengths = torch.full((b,), t, dtype=torch.long, device=device)
        channels = torch.full((b,), m, dtype=torch.long, device=device)
        freq = _bands(channels, self.freq_masks, self.min_freq_width, torch.full_like(channels, self.max_freq_width),
                      m, generator)  # (B, M)
        longest = (lengths.to(torch.float64) * self.max_time_ratio).floor().long().clamp(max=self.max_time_width)
        time = _bands(lengths, self.time_masks, self.min_time_width, longest, t, generator)  # (B, T)
        real = frame_mask(lengths, t)  # (B, T)
        return (freq[:, None, :] | time[:, :, None]) & real[:, :, None]  # (B, T, M)

    def __call__(self, features: Tensor, lengths: Tensor | None = None, generator: torch.Generator | None = None
                 ) -> Tensor:
        """features (B, T, M) -> the same with the drawn masks set to ``mask_value`` (a new tensor)."""
        return features.masked_fill(self.masks(features, lengths, generator), self.mask_value)
