"""The decoder-only model's configuration (GPT-style causal language model; Radford et al., 2018, 2019)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tformer.config import AttentionConfig, Config, check, check_attention


@dataclass(frozen=True)
class DecoderOnlyConfig(Config):
    """A GPT-style causal language model.

    Attributes:
        vocab_size: vocabulary size V.
        d_model, num_heads, d_ff, num_layers: as in :class:`tformer.TransformerConfig` (N = ``num_layers``).
        max_len: the number of learned positions (GPT-2: 1024, ``n_positions``).
        activation: FFN non-linearity; GPT-2 uses "gelu_tanh".
        norm: "pre" (GPT-2: x + Sublayer(LayerNorm(x)), then a final LayerNorm) or "post" (the paper's).
        layer_norm_eps: epsilon of every LayerNorm.
        dropout: on the embedding sum and on every sub-layer output; attention_dropout: on attention weights.
        tie_output: the output layer reuses the token embedding matrix (GPT-2 does).
        pad_id: the padding token, or None for a vocabulary without one (GPT-2): padding is then marked
            only by ``attention_mask``, and generation fills finished rows with ``eos_id``.
        bos_id, eos_id: start and end of text; GPT-2 uses one id (50256, ``<|endoftext|>``) for both.
        init_std: std of the normal initialisation of every weight matrix (GPT-2: 0.02); the two residual
            output projections of each block get ``init_std / sqrt(2 * num_layers)`` (GPT-2, §2.3).
        attention: how self-attention is computed for long inputs (:class:`tformer.config.AttentionConfig`):
            full or chunked (padded batches use per-query masks, which the other kinds do not take).
    """

    vocab_size: int
    d_model: int = 768
    num_heads: int = 12
    d_ff: int = 3072
    num_layers: int = 12
    max_len: int = 1024
    activation: str = "gelu_tanh"
    norm: str = "pre"
    layer_norm_eps: float = 1e-5
    dropout: float = 0.1
    attention_dropout: float = 0.1
    tie_output: bool = True
    pad_id: int | None = 0
    bos_id: int = 1
    eos_id: int = 2
    init_std: float = 0.02
    attention: AttentionConfig = AttentionConfig()

    def __post_init__(self) -> None:
        check_attention(self, causal=True, kinds=("full", "chunked"))
        self.check_positive("vocab_size")
        self.check_stack()
        self.check_at_least(2, "max_len")
        self.check_positive("init_std")
        for name in ("pad_id", "bos_id", "eos_id"):
            i = getattr(self, name)
            check(i is None and name == "pad_id" or i is not None and 0 <= i < self.vocab_size,
                  f"{name}={i} is outside the vocabulary (size {self.vocab_size})")
        check(self.pad_id != self.eos_id,
              "eos_id must differ from pad_id (pad_id: null for a vocabulary without a padding token, as GPT-2)")

    @property
    def d_head(self) -> int:
        """d_k = d_v = d_model / h (§3.2.2)."""
        return self.d_model // self.num_heads

    # ---- presets ----------------------------------------------------------------------------
    @classmethod
    def tiny(cls, vocab_size: int = 64, **kw: Any) -> DecoderOnlyConfig:
        """A very small model for tests: d_model 32, 2 layers, 4 heads, 128 positions."""
        base = dict(d_model=32, num_heads=4, d_ff=64, num_layers=2, max_len=128)
        return cls(vocab_size=vocab_size, **{**base, **kw})

    @classmethod
    def gpt2(cls, **kw: Any) -> DecoderOnlyConfig:
        """GPT-2 small (124M): 12 layers, d_model 768, 12 heads, 1024 positions, its 50257-token vocabulary."""
        base = dict(vocab_size=50257, pad_id=None, bos_id=50256, eos_id=50256)
        return cls(**{**base, **kw})
