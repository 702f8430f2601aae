"""The encoder-decoder's configuration (§3, Table 3) and its presets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from tformer.config import (
    AttentionConfig,
    Config,
    CrossAttentionConfig,
    check,
    check_attention,
    check_choice,
    check_cross_attention,
)
from tformer.models.t5.presets import t5_small_settings

POSITIONAL = ("sinusoidal", "learned", "relative")
SINUSOIDAL_LAYOUTS = ("interleaved", "halves")


@dataclass(frozen=True)
class TransformerConfig(Config):
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
        output_vocab: how many target tokens the pre-softmax layer scores; None = all of them. When set, the
            model holds their ids (its ``output_ids`` buffer, ascending; a translation run fills it with the
            subwords of its training targets and the special tokens: ``data.output_vocab: target``) and every
            other token's logit is -inf: it is never produced, and training computes only those rows of the
            layer (:meth:`Transformer.output_layer`). With a joint vocabulary, a third to a half of the tokens are left
            out (Multi30k, joint BPE of 8,000: 5,466 scored for German, 4,245 for English).
        pad_id: padding id; bos_id: the decoder's start token; eos_id: end of sentence; unk_id: unknown.
        init_std: std of the normal initialisation of embeddings; None = d_model ** -0.5.
        attention: how self-attention is computed (:class:`AttentionConfig`). The encoder's self-attention uses
            it; so does the decoder's masked self-attention, except linformer and lsh, which cannot be causal
            (full there). Cross-attention is chunked when this is chunked and full otherwise.
        pointer_generator: the copy mechanism (See et al., 2017): the output distribution mixes the vocabulary
            softmax with the last layer's cross-attention over the source tokens, with a learned gate
            (:mod:`tformer.nn.copy`). Needs one vocabulary for source and target.
        cross_attention: which encoder-decoder attention the decoder uses (:class:`CrossAttentionConfig`): the
            paper's dot-product attention (the default), location-aware (Chorowski et al., 2015) or monotonic
            (Raffel et al., 2017). A pretrained folder records it only when it is not the default.
    """

    # added after folders were written: saved only when not the default
    saved_only_if_set: ClassVar[tuple[str, ...]] = ("cross_attention", "output_vocab")

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
    output_vocab: int | None = None
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    unk_id: int = 3
    init_std: float | None = None
    attention: AttentionConfig = AttentionConfig()
    pointer_generator: bool = False
    cross_attention: CrossAttentionConfig = CrossAttentionConfig()

    def __post_init__(self) -> None:
        self.check_positive("vocab_size")
        # the decoder's causal self-attention uses full attention where the kind cannot be causal
        check_attention(self, causal=False, relative=self.positional == "relative")
        self.check_positive("tgt_vocab_size", "d_kv", nullable=True)
        self.check_stack(layers=("num_encoder_layers", "num_decoder_layers"),
                    dropouts=("dropout", "attention_dropout", "activation_dropout"), d_head=self.d_kv)
        check(not self.final_dropout or self.norm == "pre", "final_dropout needs norm: pre (a final norm per stack)")
        check_choice("positional", self.positional, POSITIONAL)
        check_choice("sinusoidal_layout", self.sinusoidal_layout, SINUSOIDAL_LAYOUTS)
        check(self.positional != "sinusoidal" or self.d_model % 2 == 0, "sinusoidal positions need an even d_model")
        self.check_at_least(4, "relative_buckets")
        check(
            self.relative_max_distance > self.relative_buckets // 2,
            f"relative_max_distance ({self.relative_max_distance}) must exceed relative_buckets // 2 "
            f"({self.relative_buckets // 2})",
        )
        self.check_at_least(2, "max_len")
        self.check_positive("init_std", nullable=True)
        self._check_vocabularies()
        check_cross_attention(self)
        check(not (self.pointer_generator and self.cross_attention.kind == "monotonic"),
              "pointer_generator copies through the cross-attention weights, which hard monotonic attention may "
              "leave all zero: use cross_attention kind dot or location")

    def _check_vocabularies(self) -> None:
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
        check(self.output_vocab is None or 4 <= self.output_vocab <= self.target_vocab_size,
              f"output_vocab must be null or between 4 and the target vocabulary ({self.target_vocab_size}), "
              f"got {self.output_vocab}")
        check(not (self.pointer_generator and self.output_vocab is not None),
              "pointer_generator copies any source token into the output: output_vocab must be null")

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

        T5's differences from the paper, each a choice of part (RMSNorm, a relative position bias, bias-free
        projections, ...), are listed in :mod:`tformer.models.t5.presets`, whose settings this is.
        ``tformer.interop.from_hf_t5`` loads Hugging Face T5 weights into this configuration.
        """
        return cls(vocab_size=vocab_size, **t5_small_settings(**kw))
