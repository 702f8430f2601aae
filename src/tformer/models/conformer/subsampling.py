"""The Conformer's front end (Gulati et al., 2020, §2 and Fig. 1): convolutional subsampling, then a linear map.

``ConformerConfig.subsampling`` picks it from :data:`FRONT_ENDS`: 4 is the paper's (below); 1 is
:class:`LinearFrontEnd`, one linear map of each frame to d_model and no change of the frame rate, for inputs of few
frames (a spoken digit's 18 MFCC frames would leave 3 after 4x subsampling).

Two Conv2d layers of kernel 3 and stride 2, each followed by ReLU, run over the (time, frequency) plane of the
features (as ESPnet's ``Conv2dSubsampling``, which the paper's front end follows); they reduce the frames
4x (and the mel channels alike). The C channels of the F' remaining frequencies of each frame are then mapped by
one linear layer to d_model. Without padding, a length-L input has

    L' = ((L - 1) // 2 - 1) // 2                                                       (:func:`subsampled_lengths`)

output frames, and each of them reads input frames 4t' .. 4t' + 6 only, all real when t' < L': padding never
reaches a real output frame, so the lengths of a padded batch are those of its utterances alone.

Shape legend: B batch, T input frames, T' = ((T - 1) // 2 - 1) // 2 output frames, F n_mels,
F' = ((F - 1) // 2 - 1) // 2, C channels, D d_model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch.nn.functional as F
from torch import Tensor, nn

from tformer.nn.linear import Linear
from tformer.registry import Registry

N = TypeVar("N", int, Tensor)


def subsampled_lengths(lengths: N) -> N:
    """Frames left of ``lengths`` input frames by two convolutions of kernel 3, stride 2 (an int or an int64
    tensor; ``L' = floor((floor((L - 1) / 2) - 1) / 2)``, about L / 4)."""
    return ((lengths - 1) // 2 - 1) // 2


class ConvSubsampling(nn.Module):
    """Features (B, T, F) -> frames (B, T', D): Conv2d (3x3, stride 2) + ReLU, twice, then a linear map C·F' -> D."""

    def __init__(self, n_mels: int, channels: int, d_model: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, kernel_size=3, stride=2)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, stride=2)
        self.linear = Linear(channels * subsampled_lengths(n_mels), d_model)

    def forward(self, features: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """features (B, T, F), lengths (B,) int64 real frames -> frames (B, T', D), lengths (B,) of real frames."""
        x = features[:, None]  # (B, T, F) -> (B, 1, T, F)
        x = F.relu(self.conv1(x))  # (B, C, (T - 1) // 2, (F - 1) // 2)
        x = F.relu(self.conv2(x))  # (B, C, T', F')
        x = x.transpose(1, 2).flatten(2)  # (B, C, T', F') -> (B, T', C, F') -> (B, T', C·F')
        return self.linear(x), subsampled_lengths(lengths)  # (B, T', D)


class LinearFrontEnd(nn.Module):
    """Features (B, T, F) -> frames (B, T, D): one linear map of each frame (no subsampling)."""

    def __init__(self, n_mels: int, d_model: int) -> None:
        super().__init__()
        self.linear = Linear(n_mels, d_model)

    def forward(self, features: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """features (B, T, F), lengths (B,) -> frames (B, T, D), the same lengths."""
        return self.linear(features), lengths


@dataclass(frozen=True)
class FrontEnd:
    """One front end: ``build(cfg)`` -> the module, called as ``(features, lengths) -> (frames, lengths)``, and
    ``lengths``: the output frames of inputs of that many frames (an int or an int64 tensor)."""

    build: Callable[[Any], nn.Module]
    lengths: Callable[[Any], Any]


FRONT_ENDS: Registry[FrontEnd] = Registry("subsampling", {
    "4": FrontEnd(lambda cfg: ConvSubsampling(cfg.n_mels, cfg.channels, cfg.d_model), subsampled_lengths),
    "1": FrontEnd(lambda cfg: LinearFrontEnd(cfg.n_mels, cfg.d_model), lambda lengths: lengths),
})
"""``str(ConformerConfig.subsampling)`` -> its front end (the keys of
:data:`~tformer.models.conformer.config.SUBSAMPLING_MIN_FRAMES`, validated without torch)."""
