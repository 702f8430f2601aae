"""How a Conformer's self-attention knows the order of the frames: ``ConformerConfig.positional``, a registry.

* "relative" (the paper, §2.1): Transformer-XL's relative sinusoidal positions with the biases u, v
  (:class:`~tformer.nn.relative_attention.RelativeMultiHeadAttention`); the stack computes the sinusoids R of
  the 2T - 1 distances once and every block's attention reads them.
* "none" (torchaudio's Conformer): plain multi-head self-attention; only the convolution modules see the order.
* "sinusoidal" (the Transformer, §3.5): plain multi-head self-attention, and the fixed sinusoids PE(pos) added once
  to the frames before the first block (the plain Transformer encoder's positions).

An entry builds one block's attention, says what every attention of a stack receives besides x and the mask, and
what is added to the frames before the first block (``embed``; nothing for the first two).
Adding a scheme: an entry here and its name in :data:`~tformer.models.conformer.config.POSITIONAL_KINDS`.

Shape legend: B batch, T frames, D d_model, P = 2T - 1 relative distances.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from tformer.models.conformer.config import ConformerConfig
from tformer.nn.attention import MultiHeadAttention
from tformer.nn.positional import sinusoidal_table
from tformer.nn.relative_attention import RelativeMultiHeadAttention, relative_sinusoids
from tformer.registry import Registry

__all__ = ["CONFORMER_POSITIONAL", "ConformerPositional"]


@dataclass(frozen=True)
class ConformerPositional:
    """One positional scheme of the Conformer.

    Attributes:
        attention: builds one block's self-attention, called as ``attn(x, mask=..., need_weights=..., **inputs)``
            -> ((B, T, D), weights or None).
        inputs: x (B, T, D) -> the keyword arguments ``inputs`` every attention of the stack receives.
        embed: x (B, T, D) -> (B, T, D), the frames the first block reads (absolute positions added, or x).
    """

    attention: Callable[[ConformerConfig], nn.Module]
    inputs: Callable[[Tensor], dict[str, Any]]
    embed: Callable[[Tensor], Tensor] = lambda x: x


def _relative_inputs(x: Tensor) -> dict[str, Any]:
    return {"positions": relative_sinusoids(x.shape[1], x.shape[2], dtype=x.dtype, device=x.device)}  # (P, D)


def _plain_attention(cfg: ConformerConfig) -> nn.Module:
    return MultiHeadAttention(cfg.d_model, cfg.num_heads, cfg.attention_dropout, attention=cfg.attention)


def _add_sinusoids(x: Tensor) -> Tensor:
    return x + sinusoidal_table(x.shape[1], x.shape[2]).to(dtype=x.dtype, device=x.device)  # (B, T, D) + (T, D)


CONFORMER_POSITIONAL: Registry[ConformerPositional] = Registry("positional", {
    "relative": ConformerPositional(
        attention=lambda cfg: RelativeMultiHeadAttention(cfg.d_model, cfg.num_heads, cfg.attention_dropout,
                                                         attention=cfg.attention),
        inputs=_relative_inputs,
    ),
    "none": ConformerPositional(attention=_plain_attention, inputs=lambda x: {}),
    "sinusoidal": ConformerPositional(attention=_plain_attention, inputs=lambda x: {}, embed=_add_sinusoids),
})
"""``ConformerConfig.positional`` -> its scheme."""
