"""The encoder-decoder's configuration (§3, Table 3) and its presets."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Any

from tformer.config import AttentionConfig, ConfigError, check, check_attention, from_dict
from tformer.io.files import atomic_write_text

ACTIVATIONS = ("relu", "gelu", "gelu_tanh", "silu")
POSITIONAL = ("sinusoidal", "learned", "relative")
SINUSOIDAL_LAYOUTS = ("interleaved", "halves")
NORMS = ("post", "pre")
NORM_TYPES = ("layer", "rms")

@dataclass(frozen=True)
class TransformerConfig:
    """The encoder-decoder Transformer (§3, Table 3).

    Attributes:
        vocab_size: source vocabulary size (and target vocabulary when ``tgt_vocab_size`` is None).
        tgt_vocab_size: target vocabulary size for separate vocabularies; None = shared.
        d_model: model width d_model (§3.1).
        num_heads: number of attention heads h; d_k = d_v = d_model / h (§3.2.2) unless ``d_kv`` is set.
        d_kv: the width d_k = d_v of one head when it is not d_model / h (T5's ``d_kv``); None = d_model / h.
            W^Q, W^K, W^V map d_model -> h * d_kv and W^O maps h * d_kv -> d_model.
        d_ff: inner width of the position-wise feed-forward network (§3.3).
        num_encoder_layers: N for the encoder stack.
        num_decoder_layers: N for the decoder stack.
        dropout: P_drop, applied to each sub-layer output before the residual add and to the sums
            of embeddings and positional encodings (§5.4).
        attention_dropout: dropout on the attention weights (not in the paper; 0 = off).
        activation_dropout: dropout after the FFN activation (not in the paper; 0 = off).
        activation: FFN non-linearity: "relu" (paper), "gelu" (exact), "gelu_tanh" (GPT-2's approximation)
            or "silu" (Marian's "swish").
        norm: "post" = LayerNorm(x + Sublayer(x)) as in the paper; "pre" = x + Sublayer(LayerNorm(x))
            with a final LayerNorm after each stack.
        norm_type: "layer" = LayerNorm (Ba et al., as the paper); "rms" = RMSNorm, x / sqrt(mean(x²) + eps) * g,
            no mean subtraction and no bias (T5).
        layer_norm_eps: epsilon of every normalisation layer (LayerNorm or RMSNorm).
        bias: biases in the attention projections W^Q, W^K, W^V, W^O and the FFN's W_1, W_2 (Eq. 2);
            false = none (T5).
        scale_attention: divide the scores Q Kᵀ by sqrt(d_k) (Eq. 1); false = no scaling (T5, whose
            initialisation folds the factor into W^Q).
        positional: "sinusoidal" (§3.5) or "learned" position embeddings added to the token embeddings, or
            "relative": no absolute positions; instead a learned bias per head and bucketed relative distance
            is added to the self-attention scores of every layer (T5; Shaw et al., 2018; Raffel et al., 2020).
        relative_buckets: the number of relative-distance buckets (``positional="relative"``): half of them
            for exact small distances, half logarithmically spaced up to ``relative_max_distance``; the
            encoder splits them between the two directions.
        relative_max_distance: distances at or beyond this share the last bucket.
        sinusoidal_layout: "interleaved" = the paper's PE(pos, 2i) = sin, PE(pos, 2i+1) = cos;
            "halves" = all sines then all cosines (Marian / fairseq), same frequencies.
        max_len: the longest sequence the position table covers.
        scale_embedding: multiply token embeddings by sqrt(d_model) (§3.4).
        scale_output: multiply the decoder output by d_model^-0.5 before the pre-softmax linear layer (T5,
            where that layer is the embedding matrix).
        final_dropout: P_drop also on each stack's output, after its final norm (T5; pre-norm only).
        share_embeddings: one embedding matrix for source and target (needs a shared vocabulary).
        tie_output: the pre-softmax linear layer reuses the target embedding matrix (§3.4).
        output_bias: a bias on the pre-softmax linear layer (Marian's final_logits_bias).
        pad_id: padding id; bos_id: the decoder's start token; eos_id: end of sentence; unk_id: unknown.
        init_std: std of the normal initialisation of embeddings; None = d_model ** -0.5.
        attention: how self-attention is computed (:class:`AttentionConfig`). The encoder's self-attention uses
            it; so does the decoder's masked self-attention, except linformer and lsh, which cannot be causal
            (full there). Cross-attention is chunked when this is chunked and full otherwise.
        pointer_generator: the copy mechanism (See et al., 2017): the output distribution mixes the vocabulary
            softmax with the last layer's cross-attention over the source tokens, with a learned gate
            (:mod:`tformer.nn.copy`). Needs one vocabulary for source and target.
    """

    vocab_size: int
    tgt_vocab_size: int | None = None
    d_model: int = 512
    num_heads: int = 8
    d_ff: int = 2048
    num_encoder_layers: int = 6
    num_decoder_layers: int = 6
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    activation: str = "relu"
    norm: str = "post"
    norm_type: str = "layer"
    layer_norm_eps: float = 1e-5
    bias: bool = True
    d_kv: int | None = None
    scale_attention: bool = True
    positional: str = "sinusoidal"
    sinusoidal_layout: str = "interleaved"
    relative_buckets: int = 32
    relative_max_distance: int = 128
    max_len: int = 1024
    scale_embedding: bool = True
    scale_output: bool = False
    final_dropout: bool = False
    share_embeddings: bool = True
    tie_output: bool = True
    output_bias: bool = False
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    unk_id: int = 3
    init_std: float | None = None
    attention: AttentionConfig = AttentionConfig()
    pointer_generator: bool = False

    def __post_init__(self) -> None:
        check(self.vocab_size > 0, f"vocab_size must be positive, got {self.vocab_size}")
        # the decoder's causal self-attention uses full attention where the kind cannot be causal
        check_attention(self, causal=False, relative=self.positional == "relative")
        check(
            self.tgt_vocab_size is None or self.tgt_vocab_size > 0,
            f"tgt_vocab_size must be positive or null, got {self.tgt_vocab_size}",
        )
        check(self.d_model > 0 and self.num_heads > 0, "d_model and num_heads must be positive")
        check(self.d_kv is None or self.d_kv > 0, f"d_kv must be positive or null, got {self.d_kv}")
        check(
            self.d_kv is not None or self.d_model % self.num_heads == 0,
            f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})",
        )
        check(self.d_ff > 0, f"d_ff must be positive, got {self.d_ff}")
        check(self.num_encoder_layers >= 1, "num_encoder_layers must be >= 1")
        check(self.num_decoder_layers >= 1, "num_decoder_layers must be >= 1")
        for name in ("dropout", "attention_dropout", "activation_dropout"):
            p = getattr(self, name)
            check(0.0 <= p < 1.0, f"{name} must be in [0, 1), got {p}")
        check(self.activation in ACTIVATIONS, f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        check(self.norm in NORMS, f"norm must be one of {NORMS}, got {self.norm!r}")
        check(self.norm_type in NORM_TYPES, f"norm_type must be one of {NORM_TYPES}, got {self.norm_type!r}")
        check(not self.final_dropout or self.norm == "pre", "final_dropout needs norm: pre (a final norm per stack)")
        check(self.positional in POSITIONAL, f"positional must be one of {POSITIONAL}, got {self.positional!r}")
        check(
            self.sinusoidal_layout in SINUSOIDAL_LAYOUTS,
            f"sinusoidal_layout must be one of {SINUSOIDAL_LAYOUTS}, got {self.sinusoidal_layout!r}",
        )
        check(self.positional != "sinusoidal" or self.d_model % 2 == 0, "sinusoidal positions need an even d_model")
        check(self.relative_buckets >= 4, f"relative_buckets must be >= 4, got {self.relative_buckets}")
        check(
            self.relative_max_distance > self.relative_buckets // 2,
            f"relative_max_distance ({self.relative_max_distance}) must exceed relative_buckets // 2 "
            f"({self.relative_buckets // 2})",
        )
        check(self.max_len >= 2, f"max_len must be >= 2, got {self.max_len}")
        check(self.layer_norm_eps > 0, "layer_norm_eps must be positive")
        check(self.init_std is None or self.init_std > 0, f"init_std must be positive or null, got {self.init_std}")
        check(
            not (self.share_embeddings and self.tgt_vocab_size not in (None, self.vocab_size)),
            "share_embeddings needs one shared vocabulary: set tgt_vocab_size to null or share_embeddings to false",
        )
        for name in ("pad_id", "bos_id", "eos_id", "unk_id"):
            i = getattr(self, name)
            check(0 <= i < min(self.vocab_size, self.target_vocab_size), f"{name}={i} is outside the vocabulary")
        check(self.eos_id != self.pad_id, "eos_id must differ from pad_id")
        check(not self.pointer_generator or self.tgt_vocab_size in (None, self.vocab_size),
               "pointer_generator copies source ids into the output: it needs one shared vocabulary "
               "(tgt_vocab_size null)")

    # ---- derived values -------------------------------------------------------------------
    @property
    def target_vocab_size(self) -> int:
        """The target vocabulary size (equal to ``vocab_size`` when the vocabulary is shared)."""
        return self.vocab_size if self.tgt_vocab_size is None else self.tgt_vocab_size

    @property
    def d_head(self) -> int:
        """d_k = d_v = d_model / h (§3.2.2), or ``d_kv`` when set."""
        return self.d_model // self.num_heads if self.d_kv is None else self.d_kv

    # ---- presets (Table 3) ----------------------------------------------------------------
    @classmethod
    def tiny(cls, vocab_size: int = 64, **kw: Any) -> TransformerConfig:
        """A very small model for tests: d_model 32, 2+2 layers, 4 heads."""
        base = dict(d_model=32, num_heads=4, d_ff=64, num_encoder_layers=2, num_decoder_layers=2, max_len=128)
        return cls(vocab_size=vocab_size, **{**base, **kw})

    @classmethod
    def small(cls, vocab_size: int = 8000, **kw: Any) -> TransformerConfig:
        """A CPU-sized model: d_model 256, 3+3 layers, 4 heads, d_ff 1024."""
        base = dict(d_model=256, num_heads=4, d_ff=1024, num_encoder_layers=3, num_decoder_layers=3)
        return cls(vocab_size=vocab_size, **{**base, **kw})

    @classmethod
    def base(cls, vocab_size: int = 37000, **kw: Any) -> TransformerConfig:
        """The paper's base model (Table 3): N=6, d_model=512, d_ff=2048, h=8, P_drop=0.1."""
        base = dict(d_model=512, num_heads=8, d_ff=2048, num_encoder_layers=6, num_decoder_layers=6, dropout=0.1)
        return cls(vocab_size=vocab_size, **{**base, **kw})

    @classmethod
    def big(cls, vocab_size: int = 37000, **kw: Any) -> TransformerConfig:
        """The paper's big model (Table 3): N=6, d_model=1024, d_ff=4096, h=16, P_drop=0.3."""
        base = dict(d_model=1024, num_heads=16, d_ff=4096, num_encoder_layers=6, num_decoder_layers=6, dropout=0.3)
        return cls(vocab_size=vocab_size, **{**base, **kw})

    @classmethod
    def t5_small(cls, vocab_size: int = 32128, **kw: Any) -> TransformerConfig:
        """The text-to-text Transformer (T5 v1.0, Raffel et al., 2020) as a configuration of this model, at
        T5-small's size: d_model 512, 6+6 layers, 8 heads of 64, d_ff 2048, 32 relative buckets up to 128.

        T5's differences from the paper: relative position bias instead of absolute positions, pre-norm
        with RMSNorm (eps 1e-6) and a final norm and dropout per stack, no biases, unscaled attention
        scores and embeddings, the decoder output times d_model^-0.5 before the tied output layer,
        dropout also on attention weights and FFN activations, embeddings drawn N(0, 1) (T5's initialisation),
        and decoding starts from the pad id 0 (eos 1, unk 2). ``tformer.interop.from_hf_t5`` loads Hugging Face
        T5 weights into this configuration.
        """
        p = kw.get("dropout", 0.1)
        base = dict(d_model=512, num_heads=8, d_ff=2048, num_encoder_layers=6, num_decoder_layers=6, dropout=p,
                    attention_dropout=p, activation_dropout=p, activation="relu", norm="pre", norm_type="rms",
                    layer_norm_eps=1e-6, bias=False, scale_attention=False, positional="relative",
                    relative_buckets=32, relative_max_distance=128, max_len=512, scale_embedding=False,
                    scale_output=True, final_dropout=True, share_embeddings=True, tie_output=True, init_std=1.0,
                    pad_id=0, bos_id=0, eos_id=1, unk_id=2)
        return cls(vocab_size=vocab_size, **{**base, **kw})

    # ---- (de)serialisation ----------------------------------------------------------------
    def replace(self, **changes: Any) -> TransformerConfig:
        """A copy with ``changes`` applied and validated again."""
        return from_dict(type(self), {**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TransformerConfig:
        return from_dict(cls, d)

    def save_json(self, path: str | os.PathLike) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load_json(cls, path: str | os.PathLike) -> TransformerConfig:
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except OSError as e:
            raise ConfigError(f"cannot read {path}: {e.strerror}") from None
        except (ValueError, RecursionError) as e:  # bad JSON or UTF-8; an int too long; nested too deep
            raise ConfigError(f"{path} is not valid JSON: {e}") from None
        try:
            return from_dict(cls, d)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None


