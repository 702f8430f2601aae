"""The encoder-only model's configuration (BERT: Devlin et al., 2019) and its classification head's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tformer.config import AttentionConfig, Config, check, check_attention, check_choice

POOLINGS = ("cls", "mean", "pooler")


@dataclass(frozen=True)
class EncoderOnlyConfig(Config):
    """A BERT-style encoder. The defaults are BERT-base (Devlin et al., 2019, §3).

    Attributes:
        vocab_size: token vocabulary size V.
        d_model: model width (BERT's hidden_size).
        num_heads: attention heads h; d_k = d_v = d_model / h (§3.2.2).
        d_ff: FFN inner width (BERT's intermediate_size) (§3.3).
        num_layers: N, the number of encoder layers.
        max_len: positions in the learned position table (BERT's max_position_embeddings).
        type_vocab_size: token types ("segments", sentence A / B); 0 = no token-type embedding.
        activation: FFN non-linearity: "gelu" (exact erf, BERT), "gelu_tanh", "relu" or "silu".
        norm: "post" = LayerNorm(x + Sublayer(x)) as BERT and the paper; "pre" = x + Sublayer(LayerNorm(x))
            with a final LayerNorm after the stack.
        layer_norm_eps: epsilon of every LayerNorm (BERT: 1e-12).
        dropout: on the embeddings and on each sub-layer output (§5.4).
        attention_dropout: on the attention weights (BERT's attention_probs_dropout_prob).
        pad_id: the padding token (its embedding row starts at zero); the mask still comes from
            ``attention_mask``.
        init_std: std of the N(0, init_std) initialisation of every matrix and embedding (BERT: 0.02).
        attention: how self-attention is computed for long inputs (:class:`tformer.config.AttentionConfig`;
            any kind, linformer included: the encoder is not causal).
    """

    vocab_size: int
    d_model: int = 768
    num_heads: int = 12
    d_ff: int = 3072
    num_layers: int = 12
    max_len: int = 512
    type_vocab_size: int = 2
    activation: str = "gelu"
    norm: str = "post"
    layer_norm_eps: float = 1e-12
    dropout: float = 0.1
    attention_dropout: float = 0.1
    pad_id: int = 0
    init_std: float = 0.02
    attention: AttentionConfig = AttentionConfig()

    def __post_init__(self) -> None:
        check_attention(self, causal=False)
        self.check_positive("vocab_size")
        self.check_stack()
        self.check_at_least(1, "max_len")
        check(self.type_vocab_size >= 0,
              f"type_vocab_size must be >= 0 (0 = no token types), got {self.type_vocab_size}")
        check(0 <= self.pad_id < self.vocab_size, f"pad_id={self.pad_id} is outside the vocabulary")
        self.check_positive("init_std")

    @property
    def d_head(self) -> int:
        """d_k = d_v = d_model / h (§3.2.2)."""
        return self.d_model // self.num_heads

    # ---- presets ------------------------------------------------------------------------------
    @classmethod
    def tiny(cls, vocab_size: int = 64, **kw: Any) -> EncoderOnlyConfig:
        """A very small model for tests: d_model 32, 2 layers, 4 heads, d_ff 64."""
        return cls(vocab_size=vocab_size, **{**dict(d_model=32, num_heads=4, d_ff=64, num_layers=2, max_len=64), **kw})

    @classmethod
    def bert_tiny(cls, vocab_size: int = 30522, **kw: Any) -> EncoderOnlyConfig:
        """BERT-Tiny (Turc et al., 2019): 2 layers, d_model 128, 2 heads."""
        return cls(vocab_size=vocab_size, **{**dict(d_model=128, num_heads=2, d_ff=512, num_layers=2), **kw})

    @classmethod
    def bert_base(cls, vocab_size: int = 30522, **kw: Any) -> EncoderOnlyConfig:
        """BERT-base: 12 layers, d_model 768, 12 heads, d_ff 3072 (110M parameters)."""
        return cls(vocab_size=vocab_size, **kw)

    @classmethod
    def minilm_l6(cls, vocab_size: int = 30522, **kw: Any) -> EncoderOnlyConfig:
        """MiniLM-L6-H384 (Wang et al., 2020), the encoder of all-MiniLM-L6-v2: 6 layers, d_model 384, 12 heads."""
        return cls(vocab_size=vocab_size, **{**dict(d_model=384, num_heads=12, d_ff=1536, num_layers=6), **kw})


@dataclass(frozen=True)
class ClassifierConfig(Config):
    """The classification head of :class:`tformer.models.bert.EncoderOnlyForClassification`.

    Attributes:
        num_classes: C, the number of logits (1 for regression).
        pooling: how one vector stands for the sequence: "cls" = the first position's hidden state,
            "mean" = the mean over real tokens, "pooler" = BERT's tanh(W h_cls + b).
        dropout: before the final linear layer.
    """

    num_classes: int
    pooling: str = "cls"
    dropout: float = 0.1

    def __post_init__(self) -> None:
        self.check_at_least(1, "num_classes")
        check_choice("pooling", self.pooling, POOLINGS)
        check(0.0 <= self.dropout < 1.0, f"classifier dropout must be in [0, 1), got {self.dropout}")
