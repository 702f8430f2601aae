"""Normalisation layers, found by name: LayerNorm (Ba et al., 2016), as the paper's §3.1 uses, and RMSNorm
(Zhang & Sennrich, 2019), as T5 uses:

    LayerNorm(x) = (x - mean(x)) / sqrt(var(x) + eps) * g + b
    RMSNorm(x)   = x / sqrt(mean(x²) + eps) * g                  (no mean subtraction, no bias)

Adding one: an entry of :data:`NORMS` (a name -> a constructor ``(d_model, eps) -> nn.Module``) and the name in
the configs' allowed values (``TransformerConfig.norm_type``).

Shape legend: D d_model.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from tformer.registry import Registry

NORMS: Registry[Callable[[int, float], nn.Module]] = Registry("norm_type", {
    "layer": lambda d_model, eps: nn.LayerNorm(d_model, eps=eps),  # the paper (§3.1)
    "rms": lambda d_model, eps: nn.RMSNorm(d_model, eps=eps),  # T5
})


def build_norm(name: str, d_model: int, eps: float) -> nn.Module:
    """The norm ``name`` over the last dim D: ``nn.LayerNorm`` for "layer", ``nn.RMSNorm`` for "rms"."""
    return NORMS.lookup(name)(d_model, eps)
