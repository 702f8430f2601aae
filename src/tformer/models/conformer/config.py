"""The Conformer's configuration (Gulati et al., 2020, "Conformer: Convolution-augmented Transformer for Speech
Recognition")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tformer.config import AttentionConfig, Config, check, check_attention, check_choice

POSITIONAL_KINDS = ("relative", "none", "sinusoidal")  # tformer.models.conformer.positional's registry
BLOCK_KINDS = ("conformer", "transformer")  # tformer.models.conformer.blocks's registry, validated without torch
ATTENTION_KINDS = ("full", "reference", "chunked", "sliding")  # any kind without a length limit of its own
# tformer.models.conformer.subsampling's registry: time reduction -> the fewest input frames (and n_mels) it takes
SUBSAMPLING_MIN_FRAMES = {4: 7, 1: 1}
MIN_FRAMES = SUBSAMPLING_MIN_FRAMES[4]  # the fewest frames two convolutions of kernel 3, stride 2 leave 1 of


@dataclass(frozen=True)
class ConformerConfig(Config):
    """The Conformer encoder: convolutional subsampling, then ``num_layers`` Conformer blocks (§2, Fig. 1).

    Attributes:
        n_mels: input features per frame (log-mel channels, or MFCCs), >= 7 with ``subsampling`` 4.
        d_model: the encoder dimension (Table 1).
        num_heads: attention heads h; d_k = d_v = d_model / h.
        d_ff: inner width of each feed-forward module (§2.3: four times d_model).
        num_layers: Conformer blocks.
        conv_kernel_size: the depthwise convolution's kernel (§2.2), odd so that "same" padding keeps the length
            (the paper's best is 32; 31 here, as ESPnet, NeMo and Hugging Face use).
        subsampling_channels: channels of the two subsampling convolutions (None = d_model).
        dropout: on the front end's output and on every module's output before its residual sum (§2).
        attention_dropout: on the attention weights.
        activation: the feed-forward modules' and the convolution module's non-linearity (Swish = "silu").
        positional: "relative" = Transformer-XL's relative sinusoidal positions with the biases u, v, as the paper
            (§2.1); "none" = plain multi-head self-attention (torchaudio's Conformer: no positions at all);
            "sinusoidal" = plain attention, the Transformer's absolute sinusoids (§3.5) added once to the frames
            the front end gives.
        layer_norm_eps: epsilon of every LayerNorm.
        attention: how Eq. 1 of the Transformer is computed (full, reference, chunked; sliding without "relative").
        subsampling: the front end's time reduction: 4 = two stride-2 convolutions (the paper), 1 = one linear map
            of each frame to d_model (for inputs of few frames, e.g. 18 MFCC frames of a spoken digit).
        block: "conformer" = the Conformer block (Eq. 1); "transformer" = the plain Transformer encoder layer in the
            same pre-norm form (self-attention, one full-step FFN, a final LayerNorm; no convolution module): the
            end point of the paper's ablation (Table 3), a baseline with the same front end and everything else.
        num_classes: K, outputs of :class:`~tformer.models.conformer.classifier.ConformerClassifier`'s head
            (0 = no head: the encoder alone).
    """

    n_mels: int = 80
    d_model: int = 144
    num_heads: int = 4
    d_ff: int = 576
    num_layers: int = 16
    conv_kernel_size: int = 31
    subsampling_channels: int | None = None
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation: str = "silu"
    positional: str = "relative"
    layer_norm_eps: float = 1e-5
    attention: AttentionConfig = AttentionConfig()
    subsampling: int = 4
    block: str = "conformer"
    num_classes: int = 0

    def __post_init__(self) -> None:
        check_choice("positional", self.positional, POSITIONAL_KINDS)
        check_choice("block", self.block, BLOCK_KINDS)
        check_choice("subsampling", self.subsampling, tuple(SUBSAMPLING_MIN_FRAMES))
        check_attention(self, causal=False, relative=self.positional == "relative", kinds=ATTENTION_KINDS)
        self.check_stack()
        self.check_at_least(self.min_frames, "n_mels")
        check(self.num_classes >= 0, f"num_classes must be >= 0 (0 = no head), got {self.num_classes}")
        self.check_positive("conv_kernel_size")
        self.check_positive("subsampling_channels", nullable=True)
        check(self.conv_kernel_size % 2 == 1,
              f"conv_kernel_size must be odd (same padding keeps the length), got {self.conv_kernel_size}")

    # ---- derived values -------------------------------------------------------------------
    @property
    def channels(self) -> int:
        """Channels of the subsampling convolutions."""
        return self.d_model if self.subsampling_channels is None else self.subsampling_channels

    @property
    def min_frames(self) -> int:
        """The fewest input frames an utterance may have: 7 for 4x subsampling (one output frame), else 1."""
        return SUBSAMPLING_MIN_FRAMES[self.subsampling]

    # ---- presets (Table 1; kernel 31 for the paper's 32) --------------------------------------------
    @classmethod
    def small(cls, **kw: Any) -> ConformerConfig:
        """Conformer (S): d_model 144, 4 heads, 16 layers (10.3M parameters in the paper)."""
        return cls(**{**dict(d_model=144, num_heads=4, d_ff=576, num_layers=16), **kw})

    @classmethod
    def medium(cls, **kw: Any) -> ConformerConfig:
        """Conformer (M): d_model 256, 4 heads, 16 layers (30.7M)."""
        return cls(**{**dict(d_model=256, num_heads=4, d_ff=1024, num_layers=16), **kw})

    @classmethod
    def large(cls, **kw: Any) -> ConformerConfig:
        """Conformer (L): d_model 512, 8 heads, 17 layers (118.8M)."""
        return cls(**{**dict(d_model=512, num_heads=8, d_ff=2048, num_layers=17), **kw})

    @classmethod
    def tiny(cls, **kw: Any) -> ConformerConfig:
        """For tests and quick runs: 40 mels, d_model 32, 4 heads, 2 layers, kernel 7."""
        base = dict(n_mels=40, d_model=32, num_heads=4, d_ff=128, num_layers=2, conv_kernel_size=7)
        return cls(**{**base, **kw})

    @classmethod
    def asr_small(cls, **kw: Any) -> ConformerConfig:
        """Speech recognition on CPU in minutes (synthetic English number sentences, a character vocabulary):
        80 log-mel channels, 4x subsampling, d_model 144 and 4 heads as Conformer (S), but 4 blocks and kernel 15
        (utterances of a few seconds are 50-150 encoder frames): 2.6M parameters."""
        base = dict(n_mels=80, d_model=144, num_heads=4, d_ff=576, num_layers=4, conv_kernel_size=15)
        return cls(**{**base, **kw})

    @classmethod
    def spoken_digits(cls, **kw: Any) -> ConformerConfig:
        """The Free Spoken Digit Dataset's 13 MFCCs, 10 classes (``task: audio_classify``): d_model 96, 4 heads,
        d_ff 384, 4 layers, kernel 15, no subsampling (18 frames an utterance; chosen on validation)."""
        base = dict(n_mels=13, d_model=96, num_heads=4, d_ff=384, num_layers=4, conv_kernel_size=15, subsampling=1,
                    num_classes=10)
        return cls(**{**base, **kw})

    @classmethod
    def spoken_digits_transformer(cls, **kw: Any) -> ConformerConfig:
        """The plain Transformer encoder of :meth:`spoken_digits`'s size: the same front end, d_model, heads and
        layers, the Transformer block with ReLU and absolute sinusoids, and a d_ff that matches the parameters."""
        base = dict(block="transformer", positional="sinusoidal", activation="relu", d_ff=960)
        return cls.spoken_digits(**{**base, **kw})
