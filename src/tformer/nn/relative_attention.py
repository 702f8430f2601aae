"""Multi-head self-attention with relative sinusoidal positions (Transformer-XL, Dai et al., 2019, §3.3), the
attention of the Conformer's MHSA module (Gulati et al., 2020, §2.1).

No position vector is added to the inputs. Every layer scores query i against key j as

    A_ij = (W_q x_i + u)ᵀ W_k x_j   +   (W_q x_i + v)ᵀ W_R R_{i-j}                (Transformer-XL §3.3)
         =        (a) + (c)                     (b) + (d)

and divides by sqrt(d_k) before the softmax of Eq. 1. R_{i-j} is the sinusoid of §3.5 at the relative distance
i - j (positive: the key lies to the left), W_R a projection without bias, and u, v (H, Dh) learned biases
shared by all queries: u asks "which content", v "which distance", whatever the query.

The bd term (b)+(d) is formed once for all 2T - 1 distances, (B, H, T, 2T - 1), and :func:`relative_shift`
picks, for each query, the T columns of its own distances. The result is an additive score bias: the algorithm
of Eq. 1 (full, reference or chunked, from :mod:`tformer.nn.attention_algorithms`) computes
softmax(((q + u) kᵀ + bd) / sqrt(d_k)) V with the usual boolean mask (True = may attend).

Shape legend: B batch, T length, H heads, Dh = d_k = d_model / H, D d_model, P = 2T - 1 relative distances.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tformer.config import AttentionConfig, ConfigError
from tformer.nn.attention import MultiHeadAttention
from tformer.nn.linear import Linear
from tformer.nn.positional import sinusoidal_table

__all__ = ["RelativeMultiHeadAttention", "relative_shift", "relative_sinusoids"]


def relative_sinusoids(length: int, d_model: int, *, dtype: torch.dtype | None = None,
                       device: torch.device | None = None) -> Tensor:
    """R for the distances T - 1, T - 2, ..., 0, ..., -(T - 1) (row k is distance T - 1 - k), (2T - 1, D).

    The §3.5 sinusoids (sin on even, cos on odd dimensions) at signed positions: PE(-r) has the sines of PE(r)
    negated and the same cosines.
    """
    table = sinusoidal_table(length, d_model)  # (T, D), distances 0 .. T - 1
    left = table.flip(0)  # (T, D), distances T - 1 .. 0
    right = table[1:].clone()  # (T - 1, D), distances 1 .. T - 1, made negative below
    right[:, 0::2] = -right[:, 0::2]  # sin(-x) = -sin(x), cos(-x) = cos(x)
    return torch.cat([left, right]).to(device=device, dtype=dtype)  # (2T - 1, D)


def relative_shift(scores: Tensor) -> Tensor:
    """From scores over all 2T - 1 distances (column k = distance T - 1 - k) to scores over the keys:
    out[..., i, j] = scores[..., i, T - 1 - i + j], the column of distance i - j. (B, H, T, P) -> (B, H, T, T)."""
    t = scores.shape[-2]
    i = torch.arange(t, device=scores.device)[:, None]  # (T, 1) queries
    j = torch.arange(t, device=scores.device)[None, :]  # (1, T) keys
    column = (t - 1 - i + j).expand(*scores.shape[:-1], t)  # (B, H, T, T), the column of distance i - j
    return scores.gather(-1, column)


class RelativeMultiHeadAttention(MultiHeadAttention):
    """Self-attention with Transformer-XL's relative positions (§3.3): W^Q, W^K, W^V, W^O of
    :class:`MultiHeadAttention`, plus W_R (``pos_proj``, no bias) and the biases u, v (``pos_bias_u``,
    ``pos_bias_v``, (H, Dh), initialised to zero).

    Self-attention only (no memory, no cache, not causal); the algorithm must take a score bias (full,
    reference, chunked).
    """

    def __init__(self, d_model: int, num_heads: int, attention_dropout: float = 0.0, *,
                 attention: AttentionConfig | None = None) -> None:
        super().__init__(d_model, num_heads, attention_dropout, attention=attention)
        if not self.algorithm.takes_score_bias:
            raise ConfigError(f"relative positions need full or chunked attention, got {self.attention.kind!r}")
        self.pos_proj = Linear(d_model, d_model, bias=False)  # W_R
        self.pos_bias_u = nn.Parameter(torch.zeros(num_heads, self.d_head))  # u, content bias
        self.pos_bias_v = nn.Parameter(torch.zeros(num_heads, self.d_head))  # v, position bias

    def position_scores(self, q: Tensor, positions: Tensor) -> Tensor:
        """(b)+(d) of §3.3 for every query and key, unscaled: q (B, H, T, Dh), positions R (P, D) -> (B, H, T, T)."""
        p = self.pos_proj(positions)  # (P, D)
        p = p.view(p.shape[0], self.num_heads, self.d_head).permute(1, 2, 0)  # (P, D) -> (P, H, Dh) -> (H, Dh, P)
        bd = (q + self.pos_bias_v[:, None, :]) @ p  # (B, H, T, Dh) @ (H, Dh, P) -> (B, H, T, P)
        return relative_shift(bd)  # (B, H, T, T)

    def forward(self, x: Tensor, mask: Tensor | None = None, *, positions: Tensor | None = None,
                need_weights: bool = False) -> tuple[Tensor, Tensor | None]:  # type: ignore[override]
        """Attend from every position of ``x`` (B, T, D) to every position allowed by ``mask``.

        Args:
            mask: boolean, broadcastable to (B, H, T, T), True = may attend (a key-padding mask: (B, 1, 1, T)).
            positions: R from :func:`relative_sinusoids` for T (computed here when None; a stack computes it once
                and hands it to every layer).
            need_weights: also return the attention weights (B, H, T, T).

        Returns:
            (B, T, D) output and the weights or None.
        """
        b, t, d = x.shape
        if positions is None:
            positions = relative_sinusoids(t, d, dtype=x.dtype, device=x.device)
        q = self._split_heads(self.q_proj(x))  # (B, H, T, Dh)
        k, v = self._split_heads(self.k_proj(x)), self._split_heads(self.v_proj(x))  # (B, H, T, Dh)
        scale = self.d_head**-0.5
        bias = self.position_scores(q, positions) * scale  # (B, H, T, T)
        q = q + self.pos_bias_u[:, None, :]  # (a) + (c): (q + u) kᵀ
        p = self.attention_dropout if self.training else 0.0
        options = dict(causal=False, dropout_p=p, score_bias=bias, scale=scale)
        if need_weights:
            out, weights = self.algorithm.with_weights(q, k, v, mask, **options)
        else:
            out, weights = self.algorithm(q, k, v, mask, **options), None
        out = out.transpose(1, 2).reshape(b, t, -1)  # (B, H, T, Dh) -> (B, T, H*Dh)
        return self.out_proj(out), weights
