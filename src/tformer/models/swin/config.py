"""The Swin Transformer's configuration (Liu et al., 2021, "Swin Transformer: Hierarchical Vision Transformer using
Shifted Windows").

The derived values follow the hierarchy of §3.1 (Fig. 3): stage s (0-based) works on a map of R_s x R_s patches of
width C_s = embed_dim * 2^s, where R_0 = ceil(image_size / patch_size) and R_{s+1} = ceil(R_s / 2) (patch merging
pads an odd map, as Hugging Face does); its windows are M x M with M = window_size, or the whole map when
R_s <= window_size (and then no shift), as the reference implementation does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tformer.config import Config, check, check_activation

PATCH_NORM_EPS = 1e-5
"""Epsilon of the LayerNorms of the patch embedding and of patch merging: PyTorch's default, which the reference
implementation and Hugging Face use there whatever the blocks' ``layer_norm_eps``."""


@dataclass(frozen=True)
class SwinConfig(Config):
    """The Swin Transformer.

    Attributes:
        image_size: side of the (square) input image in pixels; need not be a multiple of ``patch_size`` (the
            image is padded with zeros at the bottom and right, as Hugging Face does).
        patch_size: side of a (square) patch (4 in the paper).
        num_channels: colour channels of the input (1 = grey, 3 = RGB).
        embed_dim: C, the width of stage 1; stage s has 2^(s-1) C (§3.1).
        depths: Swin Transformer blocks per stage ((2, 2, 6, 2) for Swin-T).
        num_heads: attention heads per stage ((3, 6, 12, 24) for Swin-T); each divides its stage's width.
        window_size: M, the side of a window in patches (7 in the paper); shifted windows move by floor(M / 2).
        mlp_ratio: the MLP's inner width over the stage's width (4 in the paper).
        qkv_bias: biases on the query, key and value projections (the output projection always has one).
        dropout: on the patch embeddings and on each block's sub-layer outputs.
        attention_dropout: on the attention weights.
        drop_path_rate: the stochastic-depth rate of the last block; the rate rises linearly from 0 over all the
            blocks of all stages (0.2 for Swin-T on ImageNet).
        activation: the MLP's non-linearity ("gelu" in the paper).
        layer_norm_eps: epsilon of the blocks' LayerNorms and of the final LayerNorm (those of the patch embedding
            and of patch merging use :data:`PATCH_NORM_EPS`, as the reference implementation and Hugging Face).
        patch_norm: a LayerNorm after the patch embedding (the reference implementation's default).
        num_classes: K, outputs of the classification head (0 = no head: a backbone only).
        init_std: None = Xavier-uniform linear maps (as tformer's ViT; trains fastest from scratch on small data)
            and bias tables B̂ truncated normal with std 0.02; a number = the reference implementation's truncated
            normal with that std (0.02 there) for all of them.
    """

    image_size: int = 224
    patch_size: int = 4
    num_channels: int = 3
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: int = 7
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    dropout: float = 0.0
    attention_dropout: float = 0.0
    drop_path_rate: float = 0.1
    activation: str = "gelu"
    layer_norm_eps: float = 1e-5
    patch_norm: bool = True
    num_classes: int = 1000
    init_std: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "depths", tuple(self.depths))  # a list from Python or JSON becomes a tuple
        object.__setattr__(self, "num_heads", tuple(self.num_heads))
        self.check_positive("image_size", "patch_size", "num_channels", "embed_dim", "window_size", "mlp_ratio",
                            "layer_norm_eps")
        self.check_positive("init_std", nullable=True)
        check(len(self.depths) >= 1, "depths must name at least one stage")
        check(all(d >= 1 for d in self.depths), f"every stage needs at least one block, got depths {self.depths}")
        check(len(self.num_heads) == len(self.depths),
              f"num_heads must give one count per stage ({len(self.depths)} stages), got {self.num_heads}")
        for s, (dim, heads) in enumerate(zip(self.stage_dims, self.num_heads, strict=True)):
            check(heads >= 1 and dim % heads == 0,
                  f"stage {s + 1}: its width {dim} must be divisible by its num_heads ({heads})")
        check(all(d >= 1 for d in self.stage_d_ff), f"mlp_ratio {self.mlp_ratio} leaves an MLP of width 0")
        self.check_dropout("dropout", "attention_dropout", "drop_path_rate")
        check_activation(self.activation)
        check(self.num_classes >= 0, f"num_classes must be >= 0 (0 = no head), got {self.num_classes}")

    # ---- derived values -------------------------------------------------------------------------
    @property
    def d_model(self) -> int:
        """The model width that Eq. 3's learning-rate schedule reads: C, the width of stage 1."""
        return self.embed_dim

    @property
    def num_stages(self) -> int:
        return len(self.depths)

    @property
    def grid_size(self) -> int:
        """R_0, patches along each side of the (padded) image."""
        return math.ceil(self.image_size / self.patch_size)

    @property
    def num_patches(self) -> int:
        """R_0^2, the tokens of stage 1."""
        return self.grid_size**2

    @property
    def stage_resolutions(self) -> tuple[int, ...]:
        """R_s per stage: R_0, then halved (rounded up) by each patch merging."""
        out = [self.grid_size]
        for _ in self.depths[1:]:
            out.append(math.ceil(out[-1] / 2))
        return tuple(out)

    @property
    def stage_dims(self) -> tuple[int, ...]:
        """C_s = embed_dim * 2^s per stage."""
        return tuple(self.embed_dim * 2**s for s in range(self.num_stages))

    @property
    def stage_d_ff(self) -> tuple[int, ...]:
        """The MLP's inner width per stage, int(mlp_ratio * C_s)."""
        return tuple(int(self.mlp_ratio * dim) for dim in self.stage_dims)

    @property
    def num_features(self) -> int:
        """The width of the last stage: of the final hidden states and the pooled output."""
        return self.stage_dims[-1]

    # ---- presets --------------------------------------------------------------------------------
    @classmethod
    def tiny(cls, **kw: Any) -> SwinConfig:
        """Swin-T of the paper (Table 1): C 96, depths (2, 2, 6, 2), heads (3, 6, 12, 24), 224 px, window 7."""
        return cls(**{**dict(drop_path_rate=0.2, init_std=0.02), **kw})

    @classmethod
    def digits(cls, **kw: Any) -> SwinConfig:
        """scikit-learn's 8x8 digits: 2x2 patches (a 4x4 map, the 16 patches of the ViT preset), C 32, two stages
        of 2 blocks, heads (2, 4) of width 16, window 2 (four windows, shifted by 1 in every second block; then the
        merged 2x2 map is one window), MLP ratio 4, 10 classes: about the parameters (0.13 M) of the ViT ``digits``
        preset.

        (Finer maps of one pixel per patch, e.g. 2x2 patches of the digits scaled up 2x, did not learn in 200
        updates of the recipe, probably because a LayerNorm of a one-pixel patch sees only whether it is lit.)"""
        base = dict(image_size=8, patch_size=2, num_channels=1, embed_dim=32, depths=(2, 2), num_heads=(2, 4),
                    window_size=2, mlp_ratio=4.0, dropout=0.1, drop_path_rate=0.1, num_classes=10)
        return cls(**{**base, **kw})
