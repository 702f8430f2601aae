"""Multi-head attention (§3.2.2) over an attention algorithm that computes Eq. 1 (§3.2.1).

    Attention(Q, K, V) = softmax(Q Kᵀ / sqrt(d_k)) V                                  (Eq. 1)
    MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O,
        head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)                                 (§3.2.2)

:class:`MultiHeadAttention` owns the projections W^Q, W^K, W^V, W^O and the split into heads; how Eq. 1 is
computed over the heads is an :class:`~tformer.nn.attention_algorithms.AttentionAlgorithm` from the registry
(:mod:`tformer.nn.attention_algorithms`), named by an :class:`~tformer.config.AttentionConfig`: PyTorch's fused
SDPA by default (:func:`attention_fast`), tested equal to the written-out :func:`attention_reference`, which
also gives the weights when they are asked for. A few heads' weights can also be asked for beside the fast
path (``weight_heads``): they are formed from those heads' queries and keys alone, a cheap side path for the
losses and decoding constraints that read them (:class:`AttentionProbe` says which layers and heads).

Masks follow :mod:`tformer.nn.masks`: boolean, True = may attend.

Shape legend: B batch, H heads, Tq queries, Tk keys, D d_model, Dh = d_k = d_v (D / H unless set).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from tformer.config import AttentionConfig, ConfigError
from tformer.nn.attention_algorithms import (
    AttentionAlgorithm,
    algorithm_class,
    attention_fast,
    attention_reference,
    attention_weights,
    build_attention,
)
from tformer.nn.cache import KVCache, StaticKV
from tformer.nn.linear import Linear

__all__ = ["AttentionProbe", "MultiHeadAttention", "attention_fast", "attention_reference"]

Heads = slice | Sequence[int]  # which heads: a slice (every head: slice(None)) or their indices


@dataclass(frozen=True)
class AttentionProbe:
    """Which layers' encoder-decoder attention weights a decoder returns, and of which heads.

    The weights come from the side path of :class:`MultiHeadAttention` (``weight_heads``), so the model keeps
    its fast attention; gradients flow through them (the guided attention loss trains them).

    Attributes:
        layers: decoder layer indices, negative ones counted from the last (-1); None = every layer.
        heads: head indices of those layers; None = every head.
    """

    layers: tuple[int, ...] | None = None
    heads: tuple[int, ...] | None = None

    def layer_indices(self, num_layers: int) -> list[int]:
        """The probed layers as indices in 0 .. num_layers - 1, in order (an index out of range: ValueError)."""
        if self.layers is None:
            return list(range(num_layers))
        bad = [i for i in self.layers if not -num_layers <= i < num_layers]
        if bad:
            raise ValueError(f"layer {bad[0]} is out of range for {num_layers} decoder layers")
        return sorted({i % num_layers for i in self.layers})

    def head_index(self) -> Heads:
        """The probed heads as an index of the head dimension."""
        return slice(None) if self.heads is None else list(self.heads)


class MultiHeadAttention(nn.Module):
    """h parallel attention heads of width d_k = d_v = d_model / h, then the output projection W^O.

    Used three ways (§3.2.3): encoder self-attention, decoder masked self-attention (``causal=True``)
    and encoder-decoder attention (``memory`` = the encoder output).

    Options (T5): ``d_head`` sets d_k = d_v when it is not d_model / h; ``bias=False`` drops the
    projections' biases; ``scale_scores=False`` leaves Q Kᵀ unscaled.

    ``attention`` names the algorithm of Eq. 1 (None = full); it is registered under its name, so that its
    parameters, if any, are saved as ``<name>.*`` (Linformer's ``linformer.E``, ``linformer.F``, over
    ``max_len`` positions). A shared-QK algorithm (lsh: the keys are the normalised queries) leaves the layer
    without W^K (``k_proj`` is None).
    """

    def __init__(self, d_model: int, num_heads: int, attention_dropout: float = 0.0, *, d_head: int | None = None,
                 bias: bool = True, scale_scores: bool = True, attention: AttentionConfig | None = None,
                 max_len: int | None = None) -> None:
        super().__init__()
        if d_head is None and d_model % num_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.d_head = d_model // num_heads if d_head is None else d_head
        self.scale = None if scale_scores else 1.0  # None = SDPA's 1 / sqrt(d_k)
        self.attention_dropout = attention_dropout
        self.attention = AttentionConfig() if attention is None else attention
        shares_qk = algorithm_class(self.attention.kind).shares_qk
        inner = num_heads * self.d_head  # h * d_k, = d_model unless d_head is set
        # W^Q, W^K, W^V for all heads at once (the h matrices W_i side by side), and W^O.
        self.q_proj = Linear(d_model, inner, bias=bias)
        self.k_proj = None if shares_qk else Linear(d_model, inner, bias=bias)
        self.v_proj = Linear(d_model, inner, bias=bias)
        self.out_proj = Linear(inner, d_model, bias=bias)
        self.add_module(self.attention.kind, build_attention(self.attention, max_len))

    @property
    def algorithm(self) -> AttentionAlgorithm:
        """The module that computes Eq. 1 over the heads (registered under its kind's name)."""
        return self._modules[self.attention.kind]

    def _split_heads(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, self.d_head).transpose(1, 2)  # (B, T, D) -> (B, H, T, Dh)

    def project_kv(self, x: Tensor) -> StaticKV:
        """Keys and values of ``x`` (B, Tk, D), split into heads: computed once per source for cross-attention."""
        if self.k_proj is None:
            raise ConfigError(f"{self.attention.kind} attention is self-attention only (its keys are its queries)")
        return StaticKV(self._split_heads(self.k_proj(x)), self._split_heads(self.v_proj(x)))

    def _keys_values(self, x: Tensor, q: Tensor, memory: Tensor | None, cache: KVCache | StaticKV | None
                     ) -> tuple[Tensor, Tensor]:
        """k, v (B, H, Tk, Dh): the cached cross-attention ones, or those of ``memory`` (else ``x``), appended to
        ``cache`` when it is a :class:`KVCache`."""
        if isinstance(cache, StaticKV):
            return cache.k, cache.v
        if self.k_proj is None and memory is None:  # shared QK: the keys come from the queries
            kv = StaticKV(self.algorithm.shared_keys(q), self._split_heads(self.v_proj(x)))
        else:
            kv = self.project_kv(x if memory is None else memory)
        return (kv.k, kv.v) if cache is None else cache.append(kv.k, kv.v)

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        mask: Tensor | None = None,
        *,
        causal: bool = False,
        cache: KVCache | StaticKV | None = None,
        need_weights: bool = False,
        score_bias: Tensor | None = None,
        weight_heads: Heads | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from ``x`` (B, Tq, D) to ``memory`` (B, Tk, D), or to ``x`` itself when memory is None.

        Args:
            mask: boolean, broadcastable to (B, H, Tq, Tk), True = may attend.
            causal: also forbid attending to later positions (decoder self-attention).
            cache: a :class:`KVCache` to append this call's keys/values to (incremental
                self-attention), or a :class:`StaticKV` of precomputed cross-attention keys/values.
            need_weights: also return the attention weights (B, H, Tq, Tk) (the reference path).
            score_bias: float (1, H, Tq, Tk) added to the scores (relative position bias), or None.
            weight_heads: without ``need_weights``, also return the weights of these heads only,
                (B, H', Tq, Tk), formed beside the algorithm's fast path from those heads' q and k (no dropout).

        Returns:
            (B, Tq, D) output and the weights or None.
        """
        b, t_q, _ = x.shape
        q = self._split_heads(self.q_proj(x))  # (B, H, Tq, Dh)
        k, v = self._keys_values(x, q, memory, cache)  # (B, H, Tk, Dh)
        algorithm = self.algorithm
        if score_bias is not None and not algorithm.takes_score_bias:
            raise ConfigError(f"relative positions need full or chunked attention, got {self.attention.kind!r}")
        p = self.attention_dropout if self.training else 0.0
        options = dict(causal=causal, dropout_p=p, score_bias=score_bias, scale=self.scale)
        if need_weights:
            out, weights = algorithm.with_weights(q, k, v, mask, **options)
        else:
            out, weights = algorithm(q, k, v, mask, **options), None
            if weight_heads is not None:  # the side path: softmax(q_h k_hᵀ) of the asked heads only
                weights = attention_weights(q[:, weight_heads], k[:, weight_heads], _heads_of(mask, weight_heads),
                                            causal=causal, score_bias=_heads_of(score_bias, weight_heads),
                                            scale=self.scale)  # (B, H', Tq, Tk)
        out = out.transpose(1, 2).reshape(b, t_q, -1)  # (B, H, Tq, Dh) -> (B, Tq, H*Dh): Concat(head_1..head_h)
        return self.out_proj(out), weights


def _heads_of(t: Tensor | None, heads: Heads) -> Tensor | None:
    """The ``heads`` of a mask or bias broadcastable to (B, H, Tq, Tk); a broadcast head dim stays as it is."""
    if t is None or t.dim() < 4 or t.shape[1] == 1:
        return t
    return t[:, heads]
