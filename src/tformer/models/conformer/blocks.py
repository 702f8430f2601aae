"""The Conformer block (Gulati et al., 2020, §2.4, Eq. 1) and its convolution module (§2.2, Fig. 2).

A block sandwiches self-attention and a convolution between two half-step feed-forward modules (Macaron-Net):

    x~   = x + ½ FFN(x)
    x'   = x~ + MHSA(x~)
    x''  = x' + Conv(x')
    y    = LayerNorm(x'' + ½ FFN(x''))                                                (Eq. 1)

Each module normalises its own input (pre-norm) and drops out its output before the residual sum (Fig. 2-4):
the :class:`~tformer.nn.layers.Residual` of the Transformer's layers with ``pre_norm=True``.

* FFN (§2.3, Fig. 4): Linear D -> 4D, Swish, dropout, Linear 4D -> D
  (:class:`~tformer.nn.feedforward.PositionwiseFeedForward` with "silu").
* MHSA (§2.1, Fig. 3): relative or plain, from :mod:`tformer.models.conformer.positional`.
* Conv (§2.2, Fig. 2): pointwise conv D -> 2D, GLU, depthwise conv (odd kernel, "same" padding), BatchNorm,
  Swish, pointwise conv D -> D (:class:`ConvolutionModule`).

``ConformerConfig.block`` picks the block of a stack from :data:`CONFORMER_BLOCKS`: "conformer" (above) or
"transformer" (:class:`TransformerBlock`, the plain Transformer encoder layer in the same pre-norm form: the end
point of the paper's ablation, Table 3, which takes out the convolution module and the Macaron FFN).

Padding never leaks into a real frame: attention masks padded keys, and the convolution module zeroes padded
frames before its depthwise convolution (which then sees the zeros "same" padding would give an utterance
alone) and leaves them out of BatchNorm's batch statistics (:class:`MaskedBatchNorm1d`).

Shape legend: B batch, T frames, D d_model, F d_ff, H heads, K kernel size.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor, nn

from tformer.models.conformer.config import ConformerConfig
from tformer.models.conformer.positional import CONFORMER_POSITIONAL
from tformer.nn.feedforward import ACTIVATION_FUNCTIONS, PositionwiseFeedForward
from tformer.nn.layers import Residual
from tformer.nn.norms import build_norm
from tformer.registry import Registry


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` (same parameters and buffers) whose training statistics cover the real frames only.

    In evaluation, or without a mask, it is ``nn.BatchNorm1d``. In training with ``real`` (B, T), the mean and the
    (biased) variance that normalise are those of the real frames, and the running statistics are updated with
    them (the variance unbiased, as ``nn.BatchNorm1d`` does), so zeros of padding weigh on neither.
    """

    def forward(self, x: Tensor, real: Tensor | None = None) -> Tensor:  # type: ignore[override]
        """x (B, D, T), real (B, T) boolean True = a real frame -> (B, D, T)."""
        if not self.training or real is None:
            return super().forward(x)
        w = real[:, None, :].to(x.dtype)  # (B, 1, T)
        n = w.sum()  # real frames in the batch
        mean = (x * w).sum(dim=(0, 2)) / n  # (D,)
        var = ((x - mean[:, None]) ** 2 * w).sum(dim=(0, 2)) / n  # (D,), biased
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean.detach(), m)
                self.running_var.lerp_(var.detach() * n / (n - 1).clamp(min=1), m)
        y = (x - mean[:, None]) * torch.rsqrt(var[:, None] + self.eps)  # (B, D, T)
        return y * self.weight[:, None] + self.bias[:, None] if self.affine else y


class ConvolutionModule(nn.Module):
    """Fig. 2 without its LayerNorm and dropout (the block's :class:`Residual` has them): pointwise conv to 2D,
    GLU, depthwise conv of kernel K, BatchNorm, Swish, pointwise conv. No biases in the convolutions (as
    Hugging Face's and torchaudio's default)."""

    def __init__(self, d_model: int, kernel_size: int, activation: str = "silu") -> None:
        super().__init__()
        self.pointwise_in = nn.Conv1d(d_model, 2 * d_model, kernel_size=1, bias=False)
        self.depthwise = nn.Conv1d(d_model, d_model, kernel_size, padding=(kernel_size - 1) // 2, groups=d_model,
                                   bias=False)
        self.batch_norm = MaskedBatchNorm1d(d_model)
        self.activation = ACTIVATION_FUNCTIONS[activation]
        self.pointwise_out = nn.Conv1d(d_model, d_model, kernel_size=1, bias=False)

    def forward(self, x: Tensor, real: Tensor | None = None) -> Tensor:
        """x (B, T, D), real (B, T) boolean True = a real frame (None = all) -> (B, T, D)."""
        h = self.pointwise_in(x.transpose(1, 2))  # (B, T, D) -> (B, D, T) -> (B, 2D, T)
        h = nn.functional.glu(h, dim=1)  # (B, 2D, T) -> (B, D, T): first half * sigmoid(second half)
        if real is not None:
            h = h.masked_fill(~real[:, None, :], 0.0)  # padded frames do not reach the depthwise conv
        h = self.depthwise(h)  # (B, D, T), each channel its own kernel
        h = self.activation(self.batch_norm(h, real))
        return self.pointwise_out(h).transpose(1, 2)  # (B, D, T) -> (B, T, D)


def _residual(cfg: ConformerConfig) -> Residual:
    """A pre-norm residual connection with dropout on the module's output (Fig. 2-4)."""
    return Residual(build_norm("layer", cfg.d_model, cfg.layer_norm_eps), cfg.dropout, pre_norm=True)


class ConformerBlock(nn.Module):
    """Eq. 1: ½FFN, MHSA, Conv, ½FFN, each pre-norm with a residual connection, then a LayerNorm."""

    def __init__(self, cfg: ConformerConfig) -> None:
        super().__init__()
        residual = functools.partial(_residual, cfg)
        self.ffn1 = PositionwiseFeedForward(cfg.d_model, cfg.d_ff, cfg.activation, activation_dropout=cfg.dropout)
        self.ffn1_residual = residual()
        self.self_attn = CONFORMER_POSITIONAL.lookup(cfg.positional).attention(cfg)
        self.self_attn_residual = residual()
        self.conv = ConvolutionModule(cfg.d_model, cfg.conv_kernel_size, cfg.activation)
        self.conv_residual = residual()
        self.ffn2 = PositionwiseFeedForward(cfg.d_model, cfg.d_ff, cfg.activation, activation_dropout=cfg.dropout)
        self.ffn2_residual = residual()
        self.final_norm = build_norm("layer", cfg.d_model, cfg.layer_norm_eps)

    def forward(self, x: Tensor, real: Tensor | None = None, *, positional: dict[str, Any] | None = None,
                need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """x (B, T, D), real (B, T) boolean True = a real frame (None = all real) -> (B, T, D) and the
        self-attention weights (B, H, T, T) if asked. ``positional``: what the stack's positional scheme hands
        every attention (:class:`~tformer.models.conformer.positional.ConformerPositional`)."""
        mask = None if real is None else real[:, None, None, :]  # (B, 1, 1, T), True = may attend (a real key)
        r = self.ffn1_residual
        x = r.add(x, 0.5 * self.ffn1(r.normed_input(x)))  # x~ = x + ½ FFN(x)
        r = self.self_attn_residual
        h, weights = self.self_attn(r.normed_input(x), mask=mask, need_weights=need_weights, **(positional or {}))
        x = r.add(x, h)  # x' = x~ + MHSA(x~)
        r = self.conv_residual
        x = r.add(x, self.conv(r.normed_input(x), real))  # x'' = x' + Conv(x')
        r = self.ffn2_residual
        x = r.add(x, 0.5 * self.ffn2(r.normed_input(x)))  # x'' + ½ FFN(x'')
        return self.final_norm(x), weights  # y = LayerNorm(...)


class TransformerBlock(nn.Module):
    """The plain Transformer encoder layer (§3.1) in the Conformer block's pre-norm form, no convolution module:

        x'  = x + MHSA(x)                  (self-attention of the stack's positional scheme)
        y   = LayerNorm(x' + FFN(x'))      (one full-step FFN, d_ff wide)
    """

    def __init__(self, cfg: ConformerConfig) -> None:
        super().__init__()
        self.self_attn = CONFORMER_POSITIONAL.lookup(cfg.positional).attention(cfg)
        self.self_attn_residual = _residual(cfg)
        self.ffn = PositionwiseFeedForward(cfg.d_model, cfg.d_ff, cfg.activation, activation_dropout=cfg.dropout)
        self.ffn_residual = _residual(cfg)
        self.final_norm = build_norm("layer", cfg.d_model, cfg.layer_norm_eps)

    def forward(self, x: Tensor, real: Tensor | None = None, *, positional: dict[str, Any] | None = None,
                need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """As :meth:`ConformerBlock.forward`: x (B, T, D), real (B, T) -> (B, T, D) and the weights if asked."""
        mask = None if real is None else real[:, None, None, :]  # (B, 1, 1, T), True = may attend (a real key)
        r = self.self_attn_residual
        h, weights = self.self_attn(r.normed_input(x), mask=mask, need_weights=need_weights, **(positional or {}))
        x = r.add(x, h)
        r = self.ffn_residual
        return self.final_norm(r.add(x, self.ffn(r.normed_input(x)))), weights


CONFORMER_BLOCKS: Registry[type[nn.Module]] = Registry("block", {"conformer": ConformerBlock,
                                                                 "transformer": TransformerBlock})
"""``ConformerConfig.block`` -> the block class, built as ``cls(cfg)``."""
