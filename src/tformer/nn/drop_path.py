"""Stochastic depth (Huang et al., 2016, "Deep Networks with Stochastic Depth"), per example: "DropPath".

In training, a residual branch y of a whole example is dropped with probability p and kept, scaled by 1 / (1 - p),
otherwise, so that ``x + drop_path(y)`` has the expected value of ``x + y``; in evaluation it is the identity.
Models that use it (the Swin Transformer, Liu et al., 2021, §4.1) let p rise linearly with depth, from 0 at the
first block to the rate of the last (:func:`linear_drop_path_rates`; Huang et al.'s "linear decay rule").

Shape legend: B batch; the other dimensions of an example are left as they are.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["DropPath", "drop_path", "linear_drop_path_rates"]


def drop_path(x: Tensor, p: float, training: bool) -> Tensor:
    """Functional form of :class:`DropPath`: x (B, ...) with each example's whole tensor kept (scaled by
    1 / (1 - p)) or zeroed, independently, with probability p of zeroing."""
    if not training or p == 0.0:
        return x
    keep = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device)  # (B, 1, ..., 1)
    keep.bernoulli_(1.0 - p)
    return x * keep.div_(1.0 - p)


def linear_drop_path_rates(rate: float, num_blocks: int) -> list[float]:
    """The rates of ``num_blocks`` blocks in order: linear from 0 (the first) to ``rate`` (the last)."""
    return [rate * i / max(num_blocks - 1, 1) for i in range(num_blocks)]


class DropPath(nn.Module):
    """Stochastic depth on a residual branch with drop probability ``p`` (see the module docs)."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop path probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return drop_path(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
