"""The Vision Transformer (ViT; Dosovitskiy et al., 2021, "An Image is Worth 16x16 Words"), built from the
encoder layers of "Attention Is All You Need".

An image is cut into P = (image_size / patch_size)^2 square patches; each flattened patch x_p^i is mapped to
d_model by one linear map E, a learned [class] token x_class is put in front, and learned position embeddings
E_pos are added (ViT Eq. 1). The sequence then goes through the Transformer encoder (§3.1) with pre-norm
layers (ViT Eq. 2-3: LayerNorm *before* each sub-layer, GELU in the MLP) and a final LayerNorm (Eq. 4):

    z_0 = [x_class; x_p^1 E; ...; x_p^P E] + E_pos                                    (ViT Eq. 1)
    z'_l = MSA(LN(z_{l-1})) + z_{l-1},   z_l = MLP(LN(z'_l)) + z'_l                   (ViT Eq. 2, 3)
    y = LN(z_L^0)                                                                      (ViT Eq. 4)

The patch map E is a Conv2d with kernel = stride = patch_size: the same linear map applied to each patch.

* :class:`VisionConfig` (:mod:`tformer.models.vit.config`): the frozen, validated configuration.
* :class:`PatchEmbedding`: pixels -> one d_model vector per patch.
* :class:`VisionTransformer`: pixels -> hidden states of [class] + patches, (B, 1 + P, D).
* :class:`VisionClassifier`: a :class:`VisionTransformer` and a linear head on the [class] state -> logits.
* :func:`cls_attention_maps`: attention from the [class] token to each patch, laid out as the patch grid.
* :func:`attention_rollout`: attention carried through all layers and their residual connections (Abnar and
  Zuidema, 2020; the maps of ViT Fig. 6).

Shape legend: B batch, C channels, H heads (attention) or image height (pixels, stated where used),
W image width, G = image_size / patch_size patches per side, P = G^2 patches, N = 1 + P tokens, D d_model,
K classes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tformer.config import check
from tformer.io.pretrained import Pretrained
from tformer.models.vit.config import VisionConfig
from tformer.nn.dropout import Dropout
from tformer.nn.gradient_checkpointing import run_layer
from tformer.nn.layers import layer_norm_layer
from tformer.nn.modes import eval_mode
from tformer.nn.positional import LearnedPositionalEmbedding


class PatchEmbedding(nn.Module):
    """x_p^i E for every patch (ViT Eq. 1): a Conv2d whose kernel and stride are the patch size, i.e. one
    linear map of the C * patch_size^2 pixels of each non-overlapping patch."""

    def __init__(self, image_size: int, patch_size: int, num_channels: int, d_model: int) -> None:
        super().__init__()
        self.image_size = image_size
        self.num_channels = num_channels
        self.projection = nn.Conv2d(num_channels, d_model, kernel_size=patch_size, stride=patch_size)

    def forward(self, pixel_values: Tensor) -> Tensor:
        """pixel_values (B, C, image height, image width) -> (B, P, D), patches in row-major order."""
        if pixel_values.dim() != 4 or pixel_values.shape[1:] != (self.num_channels, self.image_size, self.image_size):
            raise ValueError(
                f"expected pixel_values of shape (B, {self.num_channels}, {self.image_size}, {self.image_size}), "
                f"got {tuple(pixel_values.shape)}"
            )
        x = self.projection(pixel_values)  # (B, D, G, G)
        return x.flatten(2).transpose(1, 2)  # (B, D, G, G) -> (B, D, P) -> (B, P, D)


class VisionTransformer(Pretrained, nn.Module):
    """Pixels -> hidden states of the [class] token and every patch, (B, 1 + P, D) (ViT Eq. 1-4).

    ``cfg.num_classes`` is ignored here: the head is :class:`VisionClassifier`'s.
    """

    config_class = VisionConfig

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.patch_embed = PatchEmbedding(cfg.image_size, cfg.patch_size, cfg.num_channels, cfg.d_model)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.d_model))  # x_class
        self.positions = LearnedPositionalEmbedding(1 + cfg.num_patches, cfg.d_model)  # E_pos, (N, D)
        self.dropout = Dropout(cfg.dropout)
        self.layers = nn.ModuleList(
            layer_norm_layer(cfg.d_model, cfg.num_heads, cfg.d_ff, dropout=cfg.dropout,
                             attention_dropout=cfg.attention_dropout, activation=cfg.activation, pre_norm=True,
                             eps=cfg.layer_norm_eps, attention=cfg.attention, max_len=1 + cfg.num_patches)
            for _ in range(cfg.num_layers)
        )
        self.final_norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.gradient_checkpointing = False  # see tformer.nn.gradient_checkpointing
        self._init_weights()

    def _init_weights(self) -> None:
        """Weight matrices and the patch map: Xavier-uniform (``init_std`` None) or truncated normal (cut at ±2
        std); zero biases; LayerNorms at (1, 0); [class] token and positions truncated normal (std 0.02 or
        ``init_std``)."""
        std = self.cfg.init_std
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                if std is None:
                    nn.init.xavier_uniform_(module.weight)
                else:
                    nn.init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        std = 0.02 if std is None else std
        nn.init.trunc_normal_(self.cls_token, std=std, a=-2 * std, b=2 * std)
        nn.init.trunc_normal_(self.positions.weight, std=std, a=-2 * std, b=2 * std)

    def embed(self, pixel_values: Tensor) -> Tensor:
        """z_0 of ViT Eq. 1 (after dropout): pixel_values (B, C, image height, image width) -> (B, N, D)."""
        x = self.patch_embed(pixel_values)  # (B, P, D)
        cls = self.cls_token.expand(x.shape[0], -1, -1)  # (1, 1, D) -> (B, 1, D)
        x = torch.cat([cls, x], dim=1)  # (B, N, D)
        return self.dropout(x + self.positions(x.shape[1]))  # + E_pos (N, D)

    def forward(self, pixel_values: Tensor, need_weights: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        """pixel_values (B, C, image height, image width) -> hidden states (B, 1 + P, D), row 0 the [class] token.

        With ``need_weights``, also each layer's self-attention weights, (B, H, 1 + P, 1 + P) per layer
        (token 0 is [class], token 1 + i is patch i in row-major order).
        """
        x = self.embed(pixel_values)  # (B, N, D)
        weights = []
        for layer in self.layers:
            x, w = run_layer(self, layer, x, None, need_weights)  # no mask: every token sees every token
            if need_weights:
                weights.append(w)
        x = self.final_norm(x)  # (B, N, D)
        return (x, weights) if need_weights else x


class VisionClassifier(Pretrained, nn.Module):
    """A :class:`VisionTransformer` and a linear head on the final [class] state: logits (B, K) (ViT §3.1)."""

    config_class = VisionConfig

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        check(cfg.num_classes >= 1, "VisionClassifier needs num_classes >= 1 (use VisionTransformer for no head)")
        self.cfg = cfg
        self.vit = VisionTransformer(cfg)
        self.head = nn.Linear(cfg.d_model, cfg.num_classes)
        nn.init.zeros_(self.head.weight)  # as ViT: the head starts at zero, so every class starts equally likely
        nn.init.zeros_(self.head.bias)

    def forward(self, pixel_values: Tensor, need_weights: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        """pixel_values (B, C, image height, image width) -> logits (B, K) (and per-layer weights if asked)."""
        if need_weights:
            states, weights = self.vit(pixel_values, need_weights=True)
            return self.head(states[:, 0]), weights
        return self.head(self.vit(pixel_values)[:, 0])  # (B, N, D) -> (B, D) -> (B, K)

    @torch.no_grad()
    def predict(self, pixel_values: Tensor) -> Tensor:
        """The most likely class of each image, (B,) int64 (in evaluation mode; the previous mode afterwards)."""
        with eval_mode(self):
            return self(pixel_values).argmax(dim=-1)


def cls_attention_maps(weights: list[Tensor] | Tensor, grid_size: int) -> Tensor:
    """How much the [class] token takes from each patch, laid out as the image's patch grid.

    Args:
        weights: per-layer attention weights from ``need_weights=True``, each (B, H, N, N), or one such tensor.
        grid_size: G, patches per side (``cfg.grid_size``).

    Returns:
        (L, B, H, G, G) for a list of L layers, (B, H, G, G) for one tensor. Each map sums to 1 minus the
        [class] token's attention to itself.
    """
    if isinstance(weights, Tensor):
        return cls_attention_maps([weights], grid_size)[0]
    w = torch.stack(list(weights))  # (L, B, H, N, N)
    if w.shape[-1] != 1 + grid_size**2:
        raise ValueError(f"weights over {w.shape[-1]} tokens do not fit a {grid_size}x{grid_size} patch grid")
    return w[..., 0, 1:].unflatten(-1, (grid_size, grid_size))  # (L, B, H, P) -> (L, B, H, G, G)


def attention_rollout(weights: list[Tensor]) -> Tensor:
    """Attention rollout (Abnar and Zuidema, 2020), as ViT's Fig. 6: how much each token's final state draws
    on each input token, following attention through every layer and its residual connection.

        R = Â_L ... Â_2 Â_1,   Â_l = normalise_rows(0.5 * mean_heads(A_l) + 0.5 * I)

    Args:
        weights: per-layer attention weights from ``need_weights=True``, each (B, H, N, N).

    Returns:
        (B, N, N), rows sum to 1. Row 0 over columns 1.. is the [class] token's map of the patches
        (lay it out with ``[:, 0, 1:].unflatten(-1, (G, G))``).
    """
    rollout = None
    for w in weights:
        a = 0.5 * w.mean(dim=1) + 0.5 * torch.eye(w.shape[-1], dtype=w.dtype, device=w.device)  # (B, N, N)
        a = a / a.sum(dim=-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout  # later layers on the left
    if rollout is None:
        raise ValueError("attention_rollout needs the weights of at least one layer")
    return rollout
