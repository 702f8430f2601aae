"""The Swin Transformer (Liu et al., 2021, "Swin Transformer: Hierarchical Vision Transformer using Shifted
Windows"): a hierarchy of Transformer stages whose self-attention stays inside local windows.

The image is cut into patch_size x patch_size patches, each mapped to C channels by one linear map (a Conv2d with
kernel = stride = patch_size: "patch partition" and "linear embedding", §3.1). Stage s runs blocks of window
attention on an R_s x R_s map of width C_s (Eq. 3, Eq. 4; shifted windows in every second block, §3.2); each later
stage first merges 2 x 2 neighbouring patches (R halves, C doubles), so the cost stays linear in the number of
patches where ViT's global attention is quadratic. A final LayerNorm and average pooling over the last map give one
vector per image, and a linear head the class scores (§3.3, Table 1).

* :class:`SwinConfig` (:mod:`tformer.models.swin.config`): the frozen, validated configuration.
* :class:`PatchEmbedding`: pixels -> one C vector per patch, with an optional LayerNorm.
* :class:`SwinTransformer`: pixels -> the last stage's hidden states and their average (:class:`SwinOutput`).
* :class:`SwinClassifier`: a :class:`SwinTransformer` and a linear head on the pooled output -> logits.

Shape legend: B batch, C channels (pixels: colour channels, stated where used), S image side, P patch side,
R_0 = ceil(S / P), L tokens of the last stage, F = embed_dim * 2^(stages - 1) its width, K classes.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tformer.config import check
from tformer.io.pretrained import Pretrained
from tformer.models.swin.blocks import WindowAttention
from tformer.models.swin.builders import stages
from tformer.models.swin.config import PATCH_NORM_EPS, SwinConfig
from tformer.nn.dropout import Dropout
from tformer.nn.modes import eval_mode


def init_linear(module: nn.Linear, std: float | None) -> None:
    """W Xavier-uniform (``std`` None) or truncated normal with ``std``, cut at ±2 std; b zero."""
    if std is None:
        nn.init.xavier_uniform_(module.weight)
    else:
        nn.init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std)
    if module.bias is not None:
        nn.init.zeros_(module.bias)


class SwinOutput(NamedTuple):
    """What :class:`SwinTransformer` returns."""

    last_hidden_state: Tensor  # (B, L, F), after the final LayerNorm, row-major over the last map
    pooled_output: Tensor  # (B, F), the average of last_hidden_state over its L tokens
    weights: list[Tensor] | None = None  # per block, in order: (B * nW, H, N, N), when asked for


class PatchEmbedding(nn.Module):
    """Patch partition and linear embedding (§3.1): a Conv2d with kernel and stride ``patch_size``, applied to the
    image padded with zeros at the bottom and right to a multiple of the patch (as Hugging Face), then an optional
    LayerNorm."""

    def __init__(self, image_size: int, patch_size: int, num_channels: int, embed_dim: int, norm: bool) -> None:
        super().__init__()
        self.image_size, self.patch_size, self.num_channels = image_size, patch_size, num_channels
        self.projection = nn.Conv2d(num_channels, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim, eps=PATCH_NORM_EPS) if norm else None

    def forward(self, pixel_values: Tensor) -> Tensor:
        """pixel_values (B, C, S, S) -> (B, R_0^2, embed_dim), patches in row-major order."""
        s = self.image_size
        if pixel_values.dim() != 4 or pixel_values.shape[1:] != (self.num_channels, s, s):
            raise ValueError(f"expected pixel_values of shape (B, {self.num_channels}, {s}, {s}), "
                             f"got {tuple(pixel_values.shape)}")
        pad = -s % self.patch_size
        if pad:
            pixel_values = F.pad(pixel_values, (0, pad, 0, pad))  # (B, C, S + pad, S + pad)
        x = self.projection(pixel_values).flatten(2).transpose(1, 2)  # (B, C', R_0, R_0) -> (B, R_0^2, C')
        return x if self.norm is None else self.norm(x)


class SwinTransformer(Pretrained, nn.Module):
    """Pixels -> the last stage's hidden states (B, L, F) and their average (B, F) (see the module docs).

    ``cfg.num_classes`` is ignored here: the head is :class:`SwinClassifier`'s.
    """

    config_class = SwinConfig

    def __init__(self, cfg: SwinConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.patch_embed = PatchEmbedding(cfg.image_size, cfg.patch_size, cfg.num_channels, cfg.embed_dim,
                                          cfg.patch_norm)
        self.dropout = Dropout(cfg.dropout)
        self.stages = nn.ModuleList(stages(cfg))
        self.final_norm = nn.LayerNorm(cfg.num_features, eps=cfg.layer_norm_eps)
        self._init_weights()

    def _init_weights(self) -> None:
        """Linear maps Xavier-uniform (``init_std`` None) or truncated normal (cut at ±2 std, as the reference
        implementation), biases zero, the bias tables B̂ truncated normal (std 0.02 or ``init_std``), LayerNorms at
        (1, 0), the patch map PyTorch's default."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                init_linear(module, self.cfg.init_std)
            elif isinstance(module, WindowAttention):
                std = self.cfg.init_std or 0.02
                nn.init.trunc_normal_(module.relative_position_bias_table, std=std, a=-2 * std, b=2 * std)

    def forward(self, pixel_values: Tensor, need_weights: bool = False) -> SwinOutput:
        """pixel_values (B, C, S, S) -> :class:`SwinOutput`; with ``need_weights`` also every block's attention
        weights inside its windows."""
        x = self.dropout(self.patch_embed(pixel_values))  # (B, R_0^2, embed_dim)
        weights: list[Tensor] = []
        for stage in self.stages:
            x, w = stage(x, need_weights)  # (B, R_s^2, C_s)
            weights += w
        x = self.final_norm(x)  # (B, L, F)
        return SwinOutput(x, x.mean(dim=1), weights if need_weights else None)


class SwinClassifier(Pretrained, nn.Module):
    """A :class:`SwinTransformer` and a linear head on its pooled output: logits (B, K) (§3.3)."""

    config_class = SwinConfig

    def __init__(self, cfg: SwinConfig) -> None:
        super().__init__()
        check(cfg.num_classes >= 1, "SwinClassifier needs num_classes >= 1 (use SwinTransformer for no head)")
        self.cfg = cfg
        self.swin = SwinTransformer(cfg)
        self.head = nn.Linear(cfg.num_features, cfg.num_classes)
        init_linear(self.head, cfg.init_std)

    def forward(self, pixel_values: Tensor, need_weights: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        """pixel_values (B, C, S, S) -> logits (B, K) (and every block's attention weights if asked)."""
        out = self.swin(pixel_values, need_weights=need_weights)
        logits = self.head(out.pooled_output)  # (B, F) -> (B, K)
        return (logits, out.weights) if need_weights else logits

    @torch.no_grad()
    def predict(self, pixel_values: Tensor) -> Tensor:
        """The most likely class of each image, (B,) int64 (in evaluation mode; the previous mode afterwards)."""
        with eval_mode(self):
            return self(pixel_values).argmax(dim=-1)
