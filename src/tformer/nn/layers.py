"""One encoder layer and one decoder layer (§3.1), built from parts, and the residual connection around sub-layers.

Post-norm, as in the paper:  LayerNorm(x + Dropout(Sublayer(x)))                         (§3.1, §5.4)
Pre-norm, an option:         x + Dropout(Sublayer(LayerNorm(x)))  (then a final LayerNorm per stack)

A layer receives its parts built (attention modules, the FFN, the norms: :mod:`tformer.nn.norms`); a model
family's builder (e.g. :mod:`tformer.models.transformer.builders`) chooses and assembles them.

Shape legend: B batch, S source length, T target length, T' keys of self-attention (cached + new), D d_model,
H heads.
"""

from __future__ import annotations

from torch import Tensor, nn

from tformer.config import AttentionConfig
from tformer.nn.attention import Heads, MultiHeadAttention
from tformer.nn.cache import KVCache, StaticKV
from tformer.nn.dropout import Dropout
from tformer.nn.feedforward import PositionwiseFeedForward


class Residual(nn.Module):
    """The residual connection and normalisation around one sub-layer: ``norm`` (LayerNorm or RMSNorm, built),
    dropout P_drop on the sub-layer's output (§5.4), post- or pre-norm.

    Call ``normed_input(x)`` to get what the sub-layer reads, then ``add(x, sublayer_output)``.
    """

    def __init__(self, norm: nn.Module, dropout: float, pre_norm: bool) -> None:
        super().__init__()
        self.norm = norm
        self.dropout = Dropout(dropout)
        self.pre_norm = pre_norm

    def normed_input(self, x: Tensor) -> Tensor:
        return self.norm(x) if self.pre_norm else x

    def add(self, x: Tensor, y: Tensor) -> Tensor:
        out = x + self.dropout(y)
        return out if self.pre_norm else self.norm(out)


class EncoderLayer(nn.Module):
    """Multi-head self-attention, then the position-wise FFN (§3.1), each inside a :class:`Residual`.

    Also the block of the other self-attention stacks: BERT's and ViT's layers, GPT's (``causal``, ``cache``).

    Args:
        self_attn: the self-attention (:class:`MultiHeadAttention`).
        ffn: the position-wise feed-forward network (Eq. 2), (B, T, D) -> (B, T, D).
        self_attn_norm, ffn_norm: the norm of each sub-layer's residual connection.
        dropout: P_drop on each sub-layer's output; pre_norm: normalise the sub-layer's input instead of the sum.
    """

    def __init__(self, self_attn: MultiHeadAttention, ffn: nn.Module, *, self_attn_norm: nn.Module,
                 ffn_norm: nn.Module, dropout: float, pre_norm: bool) -> None:
        super().__init__()
        self.self_attn = self_attn
        self.self_attn_residual = Residual(self_attn_norm, dropout, pre_norm)
        self.ffn = ffn
        self.ffn_residual = Residual(ffn_norm, dropout, pre_norm)

    def forward(self, x: Tensor, mask: Tensor | None = None, need_weights: bool = False, *, causal: bool = False,
                cache: KVCache | None = None, score_bias: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """x (B, T, D), mask broadcastable to (B, 1, T, T') (an encoder's: (B, 1, 1, S)) -> (B, T, D) and the
        self-attention weights (B, H, T, T') if asked.

        ``causal`` and ``cache`` serve a decoder-only stack (x holds the new positions, the cache the earlier
        ones); ``score_bias`` (1, H, T, T') is added to the self-attention scores (relative position bias).
        """
        h, weights = self.self_attn(self.self_attn_residual.normed_input(x), mask=mask, causal=causal, cache=cache,
                                    need_weights=need_weights, score_bias=score_bias)
        x = self.self_attn_residual.add(x, h)
        x = self.ffn_residual.add(x, self.ffn(self.ffn_residual.normed_input(x)))
        return x, weights


class DecoderLayer(nn.Module):
    """Masked self-attention, encoder-decoder attention, then the FFN (§3.1), each inside a :class:`Residual`.

    Args:
        self_attn, cross_attn: the two attention modules (:class:`MultiHeadAttention`).
        ffn: the position-wise feed-forward network (Eq. 2).
        self_attn_norm, cross_attn_norm, ffn_norm: the norm of each sub-layer's residual connection.
        dropout: P_drop on each sub-layer's output; pre_norm: normalise the sub-layer's input instead of the sum.
    """

    def __init__(self, self_attn: MultiHeadAttention, cross_attn: MultiHeadAttention, ffn: nn.Module, *,
                 self_attn_norm: nn.Module, cross_attn_norm: nn.Module, ffn_norm: nn.Module, dropout: float,
                 pre_norm: bool) -> None:
        super().__init__()
        self.self_attn = self_attn
        self.self_attn_residual = Residual(self_attn_norm, dropout, pre_norm)
        self.cross_attn = cross_attn
        self.cross_attn_residual = Residual(cross_attn_norm, dropout, pre_norm)
        self.ffn = ffn
        self.ffn_residual = Residual(ffn_norm, dropout, pre_norm)

    def forward(
        self,
        y: Tensor,
        memory: Tensor | StaticKV,
        memory_mask: Tensor | None,
        *,
        causal: bool = True,
        self_mask: Tensor | None = None,
        self_cache: KVCache | None = None,
        need_weights: bool = False,
        score_bias: Tensor | None = None,
        cross_heads: Heads | None = None,
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """y (B, T, D) attends to itself (causally when ``causal``) and to ``memory``.

        Args:
            memory: the encoder output (B, S, D), or this layer's cross-attention keys/values computed once
                (:class:`StaticKV`, ``cross_attn.project_kv(memory)``).
            memory_mask: (B, 1, 1, S), True = real source token.
            self_mask: a mask of the self-attention, e.g. the target's padding (B, 1, 1, T) when not causal.
            self_cache: the earlier positions' keys/values; y holds only the new positions.
            score_bias: (1, H, T, T') added to the self-attention scores (relative position bias).
            cross_heads: without ``need_weights``, return the cross-attention weights of these heads only
                (B, H', T, S), from the side path of :class:`MultiHeadAttention` (the fast path stays).

        Returns:
            (B, T, D), self-attention weights (B, H, T, T') and cross-attention weights (B, H, T, S) if asked.
        """
        h, self_w = self.self_attn(
            self.self_attn_residual.normed_input(y), mask=self_mask, causal=causal, cache=self_cache,
            need_weights=need_weights, score_bias=score_bias,
        )
        y = self.self_attn_residual.add(y, h)
        cached = isinstance(memory, StaticKV)
        h, cross_w = self.cross_attn(self.cross_attn_residual.normed_input(y), None if cached else memory, memory_mask,
                                     cache=memory if cached else None, need_weights=need_weights,
                                     weight_heads=cross_heads)
        y = self.cross_attn_residual.add(y, h)
        y = self.ffn_residual.add(y, self.ffn(self.ffn_residual.normed_input(y)))
        return y, self_w, cross_w


def layer_norm_layer(d_model: int, num_heads: int, d_ff: int, *, dropout: float, attention_dropout: float,
                     activation: str, pre_norm: bool, eps: float, attention: AttentionConfig | None = None,
                     max_len: int | None = None) -> EncoderLayer:
    """A self-attention layer with the paper's parts (biased projections, scaled scores, LayerNorm, no dropout
    inside the FFN): BERT's and ViT's layer, and GPT-2's block (called with ``causal`` and a cache)."""
    self_attn = MultiHeadAttention(d_model, num_heads, attention_dropout, attention=attention, max_len=max_len)
    self_attn_norm = nn.LayerNorm(d_model, eps=eps)
    return EncoderLayer(self_attn, PositionwiseFeedForward(d_model, d_ff, activation), self_attn_norm=self_attn_norm,
                        ffn_norm=nn.LayerNorm(d_model, eps=eps), dropout=dropout, pre_norm=pre_norm)
