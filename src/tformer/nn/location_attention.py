"""Location-aware attention (Chorowski et al., 2015, "Attention-Based Models for Speech Recognition"),
as dot-product multi-head encoder-decoder attention.

Chorowski et al. let the scores of step i see where step i-1 attended: k convolution filters Q of width 2r + 1
slide over the previous weights α_{i-1} (Eq. 8) and the features enter the score beside the source annotation
(Eq. 9):

    f_i = Q * α_{i-1}                                                                 (Eq. 8)
    e_{i,j} = wᵀ tanh(W s_{i-1} + V h_j + U f_{i,j} + b)                             (Eq. 9)

Here the score is the Transformer's scaled dot product (Eq. 1 of Vaswani et al.), and the location features
join the key exactly where Eq. 9 puts U f_{i,j}, beside V h_j (= the key k_j):

    f_i^h = Q^h * α^h_{i-1}          k filters per head over that head's previous weights (S positions)
    e^h_{i,j} = q^h_i · (k^h_j + U^h f^h_{i,j}) / sqrt(d_k),     α^h_i = softmax_j(e^h_{i,j})

so each head scores, with its query, both what a source position holds and where it lies relative to the last
alignment. With Q = 0 it is the paper's attention exactly. Before the first target position the previous weights
are uniform over the real source positions (as ESPnet's AttLoc), whatever window decoding applies
(:meth:`~LocationAwareAttention.initial_state`, which :meth:`Decoder.start` seeds the cache with).

Teacher forcing computes the exact recurrence, position by position (not the parallel approximation that feeds
each position a previous alignment computed without location features): the features of position i need the
weights of i-1, which need those of i-2, and only the exact recurrence makes cached decoding equal full
recomputation and teacher forcing train what decoding runs. Its cost is T steps over (B, H, S) tensors per
layer, small beside the layer's matrix products (:mod:`tformer.nn.aligned_attention`).

Shape legend: B batch, H heads, T target positions, S source length, C filters k, Dh head width.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from tformer.nn.aligned_attention import AlignedAttention

__all__ = ["LocationAwareAttention"]


class LocationAwareAttention(AlignedAttention):
    """Multi-head encoder-decoder attention whose scores also see convolutional features of the previous target
    position's weights (Chorowski et al., 2015, Eq. 8-9; see the module docstring).

    Args:
        d_model, num_heads, attention_dropout, **options: as :class:`~tformer.nn.attention.MultiHeadAttention`
            (``d_head``, ``bias``, ``scale_scores``).
        channels: k, the filters per head (Chorowski et al.: 10).
        kernel_size: their width 2r + 1 (odd), centred on the position.
    """

    def __init__(self, d_model: int, num_heads: int, attention_dropout: float = 0.0, *, channels: int = 10,
                 kernel_size: int = 31, **options) -> None:
        super().__init__(d_model, num_heads, attention_dropout, **options)
        if kernel_size % 2 == 0:
            raise ValueError(f"the location filters' width must be odd, got {kernel_size}")
        h = self.num_heads
        self.channels = channels
        # Q of Eq. 8: k filters per head, each head's over its own previous weights (groups), no bias (Q * 0 = 0)
        self.location_conv = nn.Conv1d(h, h * channels, kernel_size, padding=kernel_size // 2, groups=h, bias=False)
        # U of Eq. 9, per head: the k features of a position -> the key space of that head (Xavier-uniform)
        self.location_proj = nn.Parameter(torch.empty(h, channels, self.d_head))
        bound = math.sqrt(6.0 / (channels + self.d_head))
        nn.init.uniform_(self.location_proj, -bound, bound)

    def location_features(self, previous: Tensor) -> Tensor:
        """f_i = Q * α_{i-1} (Eq. 8): previous weights (B, H, S) -> features (B, H, C, S)."""
        b, h, s = previous.shape
        return self.location_conv(previous).view(b, h, self.channels, s)  # (B, H*C, S) -> (B, H, C, S)

    def initial_state(self, memory_mask: Tensor) -> dict[str, Tensor]:
        """α_0: uniform over the real source positions of ``memory_mask`` (B, 1, 1, S) (a decoding window does not
        change it), {"weights": (B, H, S)}."""
        real = memory_mask[:, :, 0].to(self.location_proj.dtype)  # (B, 1, S)
        return {"weights": (real / real.sum(-1, keepdim=True).clamp(min=1)).expand(-1, self.num_heads, -1)}

    def align(self, q: Tensor, k: Tensor, allowed: Tensor, state: dict[str, Tensor]) -> Tensor:
        """α^h_i = softmax_j(q^h_i · (k^h_j + U^h f^h_{i,j}) / sqrt(d_k)) for each position i in turn; ``state``
        carries the last weights ("weights", (B, H, S))."""
        b, h, t, _ = q.shape
        scale = 1.0 / math.sqrt(self.d_head) if self.scale is None else self.scale  # Eq. 1's, as written out
        content = q @ k.transpose(-2, -1) * scale  # (B, H, T, S): q_i · k_j
        q_loc = torch.einsum("bhtd,hcd->bhtc", q, self.location_proj) * scale  # (B, H, T, C): U^hᵀ q_i
        previous = state.get("weights")
        if previous is None:  # teacher forcing: the mask of the first position is the source padding mask
            previous = self.initial_state(allowed[:, :, :1])["weights"]  # (B, H, S)
        rows = []
        for i in range(t):
            location = torch.einsum("bhc,bhcs->bhs", q_loc[:, :, i], self.location_features(previous))  # (B, H, S)
            scores = (content[:, :, i] + location).masked_fill(~allowed[:, :, i], float("-inf"))  # (B, H, S)
            previous = scores.softmax(dim=-1)  # α_i, (B, H, S)
            rows.append(previous)
        state["weights"] = previous
        return torch.stack(rows, dim=2)  # (B, H, T, S)
