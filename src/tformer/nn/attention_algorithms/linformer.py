"""Linformer attention (kind "linformer", approximate): learned E, F (k, max_len) project keys and values along
the sequence, K' = E K, V' = F V, so the scores are (T, k) (Wang et al., 2020, "Linformer", §4). Not causal,
self-attention only.

On random inputs (``benchmarks/long_attention.py``: T = 2048, k = 256, E and F at their initialisation: they are
meant to be learned) it is 2.70 away from full attention, relative; answering every query with the mean of V is
0.81 away. Random scores of size 1 spread the weights over all T keys, and random mixtures of the keys are far
from that; Linformer is built for attention of low rank and for E, F trained with the model.

Shape legend: B batch, H heads, T length, Dh = d_k = d_v, k Linformer's projected length.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tformer.config import AttentionConfig, ConfigError
from tformer.nn.attention_algorithms.common import key_padding, refuse_score_bias
from tformer.nn.attention_algorithms.registry import AttentionAlgorithm, register_attention


def attention_linformer(
    q: Tensor, k: Tensor, v: Tensor, e: Tensor, f: Tensor, mask: Tensor | None = None, *, causal: bool = False,
    dropout_p: float = 0.0, score_bias: Tensor | None = None, scale: float | None = None,
) -> Tensor:
    """Linformer self-attention (Wang et al., 2020, Eq. 7): softmax(Q (E K)ᵀ / sqrt(d_k)) (F V).

    Args:
        q, k, v: (B, H, T, Dh), one sequence's own positions (self-attention).
        e, f: (k, max_len) projections of the sequence axis; their first T columns are used.
        mask: None or a key-padding mask (B, 1, 1, T): padded keys and values are set to 0 before the
            projection, so padding content never reaches the output (a zero key still scores 0, so this is
            not the same as excluding it: padding changes the approximation, not only the inputs).

    With k = T and E = F = the identity this is full attention; error on random inputs with E, F at their
    initialisation: see the module docstring (2.70 relative to full attention at T = 2048, k = 256).

    Returns:
        (B, H, T, Dh).
    """
    if causal:
        raise ConfigError("linformer attention cannot be causal")
    refuse_score_bias(score_bias, "linformer")
    t = k.shape[-2]
    if q.shape[-2] != t:
        raise ConfigError("linformer attention is self-attention: queries and keys must have one length")
    if t > e.shape[-1]:
        raise ConfigError(f"linformer attention covers {e.shape[-1]} positions (max_len), got {t}")
    key_real = key_padding(mask, "linformer")  # (B|1, H|1, T|1) or None
    if key_real is not None:
        k = k.masked_fill(~key_real[..., None], 0.0)
        v = v.masked_fill(~key_real[..., None], 0.0)
    k = e[:, :t].to(k.dtype) @ k  # (k, T) @ (B, H, T, Dh) -> (B, H, k, Dh): K' = E K
    v = f[:, :t].to(v.dtype) @ v  # V' = F V
    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, scale=scale)  # (B, H, T, Dh)


@register_attention
class LinformerAttention(AttentionAlgorithm):
    """Kind "linformer": the learned E, F (k, max_len) of one layer (§4), shared by its heads ("headwise sharing"),
    and :func:`attention_linformer` with them. A layer registers it as ``linformer``: ``self_attn.linformer.E``.

    Initialised as the Linformer code released with fairseq does: Xavier-uniform with gain 1/sqrt(2), variance
    1 / (max_len + k), so that a projected key or value has about the size of one key or value. (Theorem 1's
    N(0, 1/k) projection would make them sqrt(T / k) times larger.)
    """

    name = "linformer"
    can_be_causal = False
    takes_score_bias = False
    forms_weights = False

    def __init__(self, cfg: AttentionConfig, max_len: int | None = None) -> None:
        super().__init__(cfg)
        if max_len is None:
            raise ConfigError("linformer attention needs max_len, the positions its E and F cover")
        k = cfg.linformer_k
        self.E = nn.Parameter(nn.init.xavier_uniform_(torch.empty(k, max_len), gain=2**-0.5))  # projects the keys
        self.F = nn.Parameter(nn.init.xavier_uniform_(torch.empty(k, max_len), gain=2**-0.5))  # projects the values

    def forward(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, **options) -> Tensor:
        """:func:`attention_linformer` with this layer's E and F: (B, H, T, Dh)."""
        return attention_linformer(q, k, v, self.E, self.F, mask, **options)
