"""The Swin Transformer's stages, assembled from their parts (:mod:`tformer.models.swin.blocks`) for a config.

Stage s works on an R_s x R_s map at width C_s (:class:`~tformer.models.swin.config.SwinConfig`); its blocks
alternate W-MSA and SW-MSA (§3.2), with the window and shift of :func:`~tformer.models.swin.windows.window_and_shift`;
the stochastic-depth rate rises linearly over all blocks of all stages (§4.1).
"""

from __future__ import annotations

from torch import nn

from tformer.models.swin.blocks import PatchMerging, SwinBlock, SwinStage, WindowAttention
from tformer.models.swin.config import PATCH_NORM_EPS, SwinConfig
from tformer.models.swin.windows import window_and_shift
from tformer.nn.drop_path import linear_drop_path_rates
from tformer.nn.feedforward import PositionwiseFeedForward


def block(cfg: SwinConfig, stage: int, index: int, drop_path: float) -> SwinBlock:
    """Block ``index`` (0-based) of ``stage``: shifted windows when ``index`` is odd."""
    dim, resolution = cfg.stage_dims[stage], cfg.stage_resolutions[stage]
    window, shift = window_and_shift(resolution, cfg.window_size)
    attn = WindowAttention(dim, cfg.num_heads[stage], window, qkv_bias=cfg.qkv_bias,
                           attention_dropout=cfg.attention_dropout)
    ffn = PositionwiseFeedForward(dim, cfg.stage_d_ff[stage], cfg.activation)
    return SwinBlock(attn, ffn, attn_norm=nn.LayerNorm(dim, eps=cfg.layer_norm_eps),
                     ffn_norm=nn.LayerNorm(dim, eps=cfg.layer_norm_eps), resolution=resolution,
                     shift=shift if index % 2 else 0, dropout=cfg.dropout, drop_path=drop_path)


def stages(cfg: SwinConfig) -> list[SwinStage]:
    """Every stage of ``cfg``: stage 0 its blocks, each later one patch merging of the map before and its blocks."""
    rates = linear_drop_path_rates(cfg.drop_path_rate, sum(cfg.depths))
    out, first = [], 0
    for s, depth in enumerate(cfg.depths):
        merge = None if s == 0 else PatchMerging(cfg.stage_dims[s - 1], cfg.stage_resolutions[s - 1], PATCH_NORM_EPS)
        layers = [block(cfg, s, i, rates[first + i]) for i in range(depth)]
        out.append(SwinStage(layers, merge))
        first += depth
    return out
