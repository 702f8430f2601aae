"""The Vision Transformer's configuration (ViT; Dosovitskiy et al., 2021)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tformer.config import AttentionConfig, Config, check, check_attention


@dataclass(frozen=True)
class VisionConfig(Config):
    """The Vision Transformer.

    Attributes:
        image_size: side of the (square) input image in pixels.
        patch_size: side of a (square) patch; must divide ``image_size``.
        num_channels: colour channels of the input (1 = grey, 3 = RGB).
        d_model: model width (ViT's hidden size D).
        num_heads: attention heads h; d_k = d_v = d_model / h (§3.2.2).
        d_ff: inner width of the MLP (§3.3).
        num_layers: N, encoder layers.
        dropout: on the embeddings and each sub-layer output (§5.4).
        attention_dropout: on the attention weights.
        activation: MLP non-linearity ("gelu" in ViT).
        layer_norm_eps: epsilon of every LayerNorm.
        num_classes: K, outputs of the classification head (0 = no head: a backbone only).
        init_std: None = Xavier-uniform weight matrices and patch map (as :class:`tformer.Transformer`; trains
            fastest from scratch on small data), [class] token and positions truncated-normal with std 0.02;
            a number = ViT's truncated normal with that std for all of them.
        attention: how self-attention is computed for long inputs (:class:`tformer.config.AttentionConfig`;
            any kind: the encoder is not causal; linformer's E, F cover the 1 + P tokens).
    """

    image_size: int = 8
    patch_size: int = 2
    num_channels: int = 1
    d_model: int = 64
    num_heads: int = 4
    d_ff: int = 128
    num_layers: int = 4
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation: str = "gelu"
    layer_norm_eps: float = 1e-6
    num_classes: int = 10
    init_std: float | None = None
    attention: AttentionConfig = AttentionConfig()

    def __post_init__(self) -> None:
        check_attention(self, causal=False)
        self.check_positive("image_size", "patch_size")
        check(
            self.image_size % self.patch_size == 0,
            f"image_size ({self.image_size}) must be divisible by patch_size ({self.patch_size})",
        )
        self.check_positive("num_channels")
        self.check_stack()
        check(self.num_classes >= 0, f"num_classes must be >= 0 (0 = no head), got {self.num_classes}")
        self.check_positive("init_std", nullable=True)

    # ---- derived values -------------------------------------------------------------------
    @property
    def grid_size(self) -> int:
        """G, patches along each side of the image."""
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        """P = G^2, patches per image."""
        return self.grid_size**2

    @property
    def d_head(self) -> int:
        """d_k = d_v = d_model / h (§3.2.2)."""
        return self.d_model // self.num_heads

    # ---- presets ------------------------------------------------------------------------------
    @classmethod
    def digits(cls, **kw: Any) -> VisionConfig:
        """scikit-learn's 8x8 digits: 2x2 patches (16 per image), d_model 64, 4 layers, 4 heads, 10 classes."""
        base = dict(image_size=8, patch_size=2, num_channels=1, d_model=64, num_heads=4, d_ff=128, num_layers=4,
                    dropout=0.1, num_classes=10)
        return cls(**{**base, **kw})
