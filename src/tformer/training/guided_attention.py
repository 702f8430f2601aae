"""The guided attention loss (Tachibana et al., 2017, "Efficiently trainable text-to-speech system based on deep
convolutional networks with guided attention", §4.1): where the output follows the input in order, attention
far from the diagonal is penalised.

    W_nt = 1 - exp(-(n/N - t/T)^2 / (2 g^2))         L_att = mean over the real cells (t, n) of A_nt W_nt

A (B, H, T, N) are encoder-decoder attention weights (output step t of T attending to input position n of N,
both 0-based, N and T each sentence's own lengths); W is 0 on the diagonal n/N = t/T and tends to 1 away from
it, g (``sigma``) setting the width of the cheap band. The mean runs over the cells where neither the source
position nor the target position is padding, and over the chosen heads and layers. The loss is added to the
training loss with a weight (:class:`~tformer.training.config.GuidedAttentionConfig`) and logged on its own.

The weights come from beside the fast attention path: a model that takes an
:class:`~tformer.nn.attention.AttentionProbe` (``decoder_states(..., cross_attention=probe)``) returns the
chosen layers' weights of the chosen heads only. Any encoder-decoder whose loss can ask its model so can use
:func:`with_guided_attention` (the translation task does, :mod:`tformer.tasks.translation`).

Shape legend: B batch, H heads (the chosen ones), T target positions, N (= S) source positions.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tformer.nn.attention import AttentionProbe
from tformer.training.config import GuidedAttentionConfig
from tformer.training.label_smoothing import LossOutput

TERM = "guided_attention"  # its name in LossOutput.terms and in the train records of metrics.jsonl


def probe(cfg: GuidedAttentionConfig) -> AttentionProbe:
    """The layers and heads whose cross-attention weights the loss needs."""
    return AttentionProbe(layers=cfg.layers, heads=cfg.heads)


def guide_matrix(tgt_lengths: Tensor, src_lengths: Tensor, t: int, s: int, sigma: float,
                 dtype: torch.dtype = torch.float32) -> Tensor:
    """W (B, T, S): W_nt = 1 - exp(-(n/N - t/T)^2 / (2 sigma^2)) of each sentence's lengths T (B,) and N (B,),
    over a padded grid of t by s cells (cells past a sentence's lengths are filled but meaningless)."""
    steps = torch.arange(t, device=tgt_lengths.device, dtype=dtype)[None, :, None] / tgt_lengths[:, None, None]
    inputs = torch.arange(s, device=src_lengths.device, dtype=dtype)[None, None, :] / src_lengths[:, None, None]
    return 1.0 - torch.exp(-((inputs - steps) ** 2) / (2.0 * sigma**2))  # (B, T, S)


def guided_attention_loss(weights: Tensor | list[Tensor], src_mask: Tensor, tgt_mask: Tensor,
                          sigma: float) -> Tensor:
    """L_att: the mean of A_nt W_nt over the real cells of every head of every layer given.

    Args:
        weights: cross-attention weights (B, H, T, S), or a list of them (one per layer, each with H heads).
        src_mask: (B, S) True = real source position (right-padded).
        tgt_mask: (B, T) True = real target position (right-padded).
        sigma: g of W.

    Returns:
        A scalar in [0, 1) (0: all weight on the diagonal).
    """
    a = torch.stack(list(weights), dim=1) if isinstance(weights, (list, tuple)) else weights[:, None]
    a = a.flatten(1, 2)  # (B, L, H, T, S) -> (B, L*H, T, S)
    dtype = a.dtype if a.dtype == torch.float64 else torch.float32  # (bf16/fp16 weights under autocast)
    a = a.to(dtype)
    t, s = a.shape[-2:]
    w = guide_matrix(tgt_mask.sum(dim=1), src_mask.sum(dim=1), t, s, sigma, dtype)  # (B, T, S)
    real = (tgt_mask[:, :, None] & src_mask[:, None, :]).to(dtype)  # (B, T, S) 1 = neither side is padding
    penalty = (a * (w * real)[:, None]).sum()
    return penalty / (real.sum() * a.shape[1]).clamp(min=1)


def with_guided_attention(out: LossOutput, weights: list[Tensor], src_mask: Tensor, tgt_mask: Tensor,
                          cfg: GuidedAttentionConfig) -> LossOutput:
    """``out`` with the weighted guided attention loss added, per target token as the loss is summed (so that
    the trainer's division by the target tokens leaves ``cfg.weight * L_att``), and L_att itself recorded in
    ``out.terms[TERM]`` (summed the same way) for the train records."""
    g = guided_attention_loss(weights, src_mask, tgt_mask, cfg.sigma)
    n = out.num_tokens
    return LossOutput(out.loss + cfg.weight * n * g, out.nll, n, {**out.terms, TERM: g.detach() * n})
