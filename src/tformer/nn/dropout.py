"""Dropout (§5.4: P_drop = 0.1 on every sub-layer output and on the embedding sums).

Each element is zeroed with probability p and the survivors are scaled by 1 / (1 - p), so the
expected value is unchanged; at evaluation time dropout is the identity.

On the CPU, :class:`Dropout` draws its keep-mask from 31-bit random integers (``r >= p * 2^31``,
exact to 2^-31) instead of torch's per-element Bernoulli sampling, which costs several times more
there: a training step of the small model spends about a tenth of its time drawing dropout masks
with ``nn.Dropout``. The mask is kept as booleans for the backward pass. On other devices, where
torch's dropout is a fused kernel, it is ``torch.nn.functional.dropout``. Both use torch's default
generator, so ``torch.manual_seed`` makes them repeatable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_RANGE = 2**31  # int32 random_() draws from [0, 2^31 - 1]


class _CpuDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, p: float) -> Tensor:
        r = torch.empty(x.shape, dtype=torch.int32, device=x.device).random_()  # uniform on [0, 2^31 - 1]
        keep = r >= round(p * _RANGE)  # P(keep) = 1 - p
        scale = 1.0 / (1.0 - p)
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return torch.where(keep, x, 0.0).mul_(scale)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (keep,) = ctx.saved_tensors
        return torch.where(keep, grad, 0.0).mul_(ctx.scale), None


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Functional form of :class:`Dropout`."""
    if not training or p == 0.0:
        return x
    if x.device.type == "cpu" and p < 1.0:
        return _CpuDropout.apply(x, p)
    return F.dropout(x, p, training=True)


class Dropout(nn.Module):
    """Drop-in for ``nn.Dropout(p)`` (same ``p`` attribute, same semantics), faster on the CPU."""

    def __init__(self, p: float = 0.1) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
