"""One encoder layer and one decoder layer (§3.1), and the residual connection around sub-layers.

Post-norm, as in the paper:  LayerNorm(x + Dropout(Sublayer(x)))                         (§3.1, §5.4)
Pre-norm, an option:         x + Dropout(Sublayer(LayerNorm(x)))  (then a final LayerNorm per stack)

The norm is LayerNorm, or RMSNorm (T5): x / sqrt(mean(x²) + eps) * g, without the mean and the bias.

Shape legend: B batch, S source length, T target length, D d_model, H heads.
"""

from __future__ import annotations

from torch import Tensor, nn

from tformer.config import AttentionConfig
from tformer.nn.attention import MultiHeadAttention
from tformer.nn.cache import KVCache, StaticKV
from tformer.nn.dropout import Dropout
from tformer.nn.feedforward import PositionwiseFeedForward
from tformer.nn.long_attention import causal_attention_config, cross_attention_config


def make_norm(norm_type: str, d_model: int, eps: float) -> nn.Module:
    """``nn.LayerNorm`` for "layer" (the paper), ``nn.RMSNorm`` for "rms" (T5)."""
    if norm_type == "layer":
        return nn.LayerNorm(d_model, eps=eps)
    if norm_type == "rms":
        return nn.RMSNorm(d_model, eps=eps)
    raise ValueError(f"norm_type must be 'layer' or 'rms', got {norm_type!r}")


def feedforward(d_model: int, d_ff: int, activation: str, activation_dropout: float, bias: bool = True) -> nn.Module:
    """The FFN of Eq. 2; with ``bias=False`` (T5) W_1 and W_2 have no b_1, b_2."""
    return PositionwiseFeedForward(d_model, d_ff, activation, activation_dropout, bias=bias)


class Residual(nn.Module):
    """The residual connection and layer normalisation around one sub-layer.

    Call ``normed_input(x)`` to get what the sub-layer reads, then ``add(x, sublayer_output)``.
    """

    def __init__(self, d_model: int, dropout: float, pre_norm: bool, eps: float = 1e-5,
                 norm_type: str = "layer") -> None:
        super().__init__()
        self.norm = make_norm(norm_type, d_model, eps)
        self.dropout = Dropout(dropout)
        self.pre_norm = pre_norm

    def normed_input(self, x: Tensor) -> Tensor:
        return self.norm(x) if self.pre_norm else x

    def add(self, x: Tensor, y: Tensor) -> Tensor:
        out = x + self.dropout(y)
        return out if self.pre_norm else self.norm(out)


class EncoderLayer(nn.Module):
    """Multi-head self-attention, then the position-wise FFN, each inside a :class:`Residual`.

    ``norm_type``, ``d_head``, ``bias`` and ``scale_scores`` are the T5 options (see :class:`TransformerConfig`).
    ``attention`` says how self-attention is computed for long inputs (None = full); ``max_len`` is the most
    positions it sees (needed by Linformer's projections).
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int, *, dropout: float, attention_dropout: float,
                 activation: str, activation_dropout: float, pre_norm: bool, eps: float, norm_type: str = "layer",
                 d_head: int | None = None, bias: bool = True, scale_scores: bool = True,
                 attention: AttentionConfig | None = None, max_len: int | None = None) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, num_heads, attention_dropout, d_head=d_head, bias=bias,
                                            scale_scores=scale_scores, attention=attention, max_len=max_len)
        self.self_attn_residual = Residual(d_model, dropout, pre_norm, eps, norm_type)
        self.ffn = feedforward(d_model, d_ff, activation, activation_dropout, bias)
        self.ffn_residual = Residual(d_model, dropout, pre_norm, eps, norm_type)

    def forward(self, x: Tensor, src_mask: Tensor | None, need_weights: bool = False,
                score_bias: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """x (B, S, D), src_mask (B, 1, 1, S) -> (B, S, D) and self-attention weights (B, H, S, S) if asked.

        ``score_bias`` (1, H, S, S) is added to the self-attention scores (relative position bias).
        """
        h, weights = self.self_attn(self.self_attn_residual.normed_input(x), mask=src_mask, need_weights=need_weights,
                                    score_bias=score_bias)
        x = self.self_attn_residual.add(x, h)
        x = self.ffn_residual.add(x, self.ffn(self.ffn_residual.normed_input(x)))
        return x, weights


class DecoderLayer(nn.Module):
    """Masked self-attention, encoder-decoder attention, then the FFN (§3.1), each inside a :class:`Residual`.

    ``attention`` is the encoder's choice for long inputs (None = full). The masked self-attention uses it,
    except linformer and lsh, which cannot be causal: full there
    (:func:`~tformer.nn.long_attention.causal_attention_config`); encoder-decoder attention is chunked
    when it is chunked, full otherwise (:func:`~tformer.nn.long_attention.cross_attention_config`).
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int, *, dropout: float, attention_dropout: float,
                 activation: str, activation_dropout: float, pre_norm: bool, eps: float, norm_type: str = "layer",
                 d_head: int | None = None, bias: bool = True, scale_scores: bool = True,
                 attention: AttentionConfig | None = None, max_len: int | None = None) -> None:
        super().__init__()
        options = dict(d_head=d_head, bias=bias, scale_scores=scale_scores)
        self.self_attn = MultiHeadAttention(d_model, num_heads, attention_dropout, **options,
                                            attention=causal_attention_config(attention), max_len=max_len)
        self.self_attn_residual = Residual(d_model, dropout, pre_norm, eps, norm_type)
        self.cross_attn = MultiHeadAttention(d_model, num_heads, attention_dropout, **options,
                                             attention=cross_attention_config(attention))
        self.cross_attn_residual = Residual(d_model, dropout, pre_norm, eps, norm_type)
        self.ffn = feedforward(d_model, d_ff, activation, activation_dropout, bias)
        self.ffn_residual = Residual(d_model, dropout, pre_norm, eps, norm_type)

    def forward(
        self,
        y: Tensor,
        memory: Tensor | None,
        memory_mask: Tensor | None,
        *,
        self_cache: KVCache | None = None,
        cross_kv: StaticKV | None = None,
        need_weights: bool = False,
        score_bias: Tensor | None = None,
        self_mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """y (B, T, D) attends causally to itself and to ``memory`` (B, S, D) (or the cached ``cross_kv``).

        With ``self_cache``, y holds only the new positions and the cache holds the earlier ones.
        ``score_bias`` (1, H, T, T') is added to the self-attention scores (relative position bias).
        ``self_mask`` (B, 1, 1, T), the target's padding mask, makes the self-attention bidirectional instead
        of causal: every position sees every real target position (the non-autoregressive decoder,
        :mod:`tformer.models.cmlm.model`).

        Returns:
            (B, T, D), self-attention weights (B, H, T, T') and cross-attention weights (B, H, T, S) if asked.
        """
        # A single new position may attend to every cached one: no causal mask is needed.
        causal = self_mask is None and (self_cache is None or y.shape[1] > 1)
        h, self_w = self.self_attn(
            self.self_attn_residual.normed_input(y), mask=self_mask, causal=causal, cache=self_cache,
            need_weights=need_weights, score_bias=score_bias,
        )
        y = self.self_attn_residual.add(y, h)
        h, cross_w = self.cross_attn(
            self.cross_attn_residual.normed_input(y), memory, memory_mask, cache=cross_kv, need_weights=need_weights
        )
        y = self.cross_attn_residual.add(y, h)
        y = self.ffn_residual.add(y, self.ffn(self.ffn_residual.normed_input(y)))
        return y, self_w, cross_w
