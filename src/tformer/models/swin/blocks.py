"""The parts of the Swin Transformer (Liu et al., 2021): window attention with its relative position bias, the
Swin Transformer block, patch merging, and a stage of blocks.

    Attention(Q, K, V) = SoftMax(Q Kᵀ / sqrt(d) + B) V                                   (Eq. 4)

    ẑ^l   = W-MSA(LN(z^{l-1})) + z^{l-1},      z^l   = MLP(LN(ẑ^l)) + ẑ^l
    ẑ^l+1 = SW-MSA(LN(z^l)) + z^l,             z^l+1 = MLP(LN(ẑ^l+1)) + ẑ^l+1              (Eq. 3)

B (N x N per head) is read from a learned table B̂ of (2M - 1)^2 entries per head at each pair's offset (§3.2,
"relative position bias"). Each sub-layer's output passes dropout and stochastic depth (§4.1) before the sum.

Shape legend: B batch, R x R the stage's patch map (Rp x Rp padded to a multiple of M), L = R^2 tokens, C the
stage's width, H heads, M window side, N = M^2 tokens per window, nW windows per image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tformer.models.swin.windows import (
    cyclic_shift,
    pad_to_multiple,
    relative_position_index,
    shift_mask,
    window_partition,
    window_reverse,
)
from tformer.nn.attention import MultiHeadAttention
from tformer.nn.drop_path import DropPath
from tformer.nn.dropout import Dropout
from tformer.nn.gradient_checkpointing import run_layer
from tformer.nn.linear import Linear


class WindowAttention(nn.Module):
    """Multi-head self-attention inside each M x M window, with the relative position bias B of Eq. 4.

    ``attention`` is tformer's :class:`MultiHeadAttention` (W^Q, W^K, W^V, W^O); the bias is handed to it as the
    score bias, the shift mask as its boolean mask. The table B̂ is a parameter, ((2M - 1)^2, H); the index of each
    pair into it is a buffer recomputed from M (never saved).
    """

    def __init__(self, dim: int, num_heads: int, window: int, *, qkv_bias: bool, attention_dropout: float) -> None:
        super().__init__()
        self.window = window
        self.attention = MultiHeadAttention(dim, num_heads, attention_dropout, bias=qkv_bias)
        if not qkv_bias:
            self.attention.out_proj = Linear(dim, dim)  # W^O keeps its bias: only Q, K, V lose theirs
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))  # B̂
        self.register_buffer("relative_position_index", relative_position_index(window), persistent=False)

    def position_bias(self) -> Tensor:
        """B of Eq. 4 for every head, (1, H, N, N)."""
        n = self.window**2
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]  # (N * N, H)
        return bias.view(n, n, -1).permute(2, 0, 1).unsqueeze(0)  # (N, N, H) -> (1, H, N, N)

    def forward(self, windows: Tensor, mask: Tensor | None = None, need_weights: bool = False
                ) -> tuple[Tensor, Tensor | None]:
        """windows (B * nW, N, C), mask (B * nW, 1, N, N) bool or None -> (B * nW, N, C) and the weights
        (B * nW, H, N, N) if asked."""
        return self.attention(windows, mask=mask, need_weights=need_weights, score_bias=self.position_bias())


class SwinBlock(nn.Module):
    """One Swin Transformer block (Eq. 3) on an R x R map: W-MSA (``shift`` 0) or SW-MSA, then the MLP, each
    pre-normed, with dropout and stochastic depth on its output.

    A map that is not a multiple of M is padded with zeros after the norm (and cropped after attention), as
    Hugging Face does; the padded patches take part in the attention of their windows like any other.

    Args:
        attn: the window attention of this block's M.
        ffn: the MLP, (B, L, C) -> (B, L, C).
        attn_norm, ffn_norm: LN before each sub-layer.
        resolution: R; shift: the cyclic shift, 0 or floor(M / 2).
        dropout: on each sub-layer's output; drop_path: this block's stochastic-depth rate.
    """

    def __init__(self, attn: WindowAttention, ffn: nn.Module, *, attn_norm: nn.Module, ffn_norm: nn.Module,
                 resolution: int, shift: int, dropout: float, drop_path: float) -> None:
        super().__init__()
        self.attn_norm, self.attn, self.ffn_norm, self.ffn = attn_norm, attn, ffn_norm, ffn
        self.resolution, self.window, self.shift = resolution, attn.window, shift
        self.padded = -(-resolution // self.window) * self.window  # Rp: R rounded up to a multiple of M
        self.dropout = Dropout(dropout)
        self.drop_path = DropPath(drop_path)
        self.register_buffer("shift_mask", shift_mask(self.padded, self.padded, self.window, shift), persistent=False)

    def _window_mask(self, batch: int) -> Tensor | None:
        if self.shift_mask is None:
            return None
        n_windows, n, _ = self.shift_mask.shape
        mask = self.shift_mask.unsqueeze(0).expand(batch, -1, -1, -1)  # (nW, N, N) -> (B, nW, N, N)
        return mask.reshape(batch * n_windows, 1, n, n)  # (B * nW, 1, N, N), the order of window_partition

    def forward(self, x: Tensor, need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """x (B, L, C) -> (B, L, C), and the attention weights (B * nW, H, N, N) if asked."""
        b, length, c = x.shape
        r, m, rp = self.resolution, self.window, self.padded
        h = self.attn_norm(x).view(b, r, r, c)  # (B, L, C) -> (B, R, R, C)
        h = cyclic_shift(pad_to_multiple(h, m), self.shift)  # (B, Rp, Rp, C)
        out, weights = self.attn(window_partition(h, m), self._window_mask(b), need_weights)  # (B * nW, N, C)
        h = cyclic_shift(window_reverse(out, m, rp, rp), self.shift, reverse=True)  # (B, Rp, Rp, C)
        h = h[:, :r, :r].reshape(b, length, c)  # (B, R, R, C) -> (B, L, C)
        x = x + self.drop_path(self.dropout(h))
        x = x + self.drop_path(self.dropout(self.ffn(self.ffn_norm(x))))
        return x, weights


class PatchMerging(nn.Module):
    """Patch merging (§3.1): the features of each group of 2 x 2 neighbouring patches concatenated (4C), a
    LayerNorm, and a linear map 4C -> 2C without bias; the map halves (an odd side is padded with zeros first,
    as Hugging Face does).

    The concatenation order is the reference implementation's: (even row, even column), (odd, even), (even, odd),
    (odd, odd).
    """

    def __init__(self, dim: int, resolution: int, eps: float) -> None:
        super().__init__()
        self.resolution = resolution
        self.norm = nn.LayerNorm(4 * dim, eps=eps)
        self.reduction = Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, R^2, C) -> (B, ceil(R / 2)^2, 2C)."""
        b, _, c = x.shape
        r = self.resolution
        x = x.view(b, r, r, c)  # (B, L, C) -> (B, R, R, C)
        if r % 2:
            x = F.pad(x, (0, 0, 0, 1, 0, 1))  # (B, R + 1, R + 1, C)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        x = x.flatten(1, 2)  # (B, R/2, R/2, 4C) -> (B, L / 4, 4C)
        return self.reduction(self.norm(x))  # (B, L / 4, 2C)


class SwinStage(nn.Module):
    """One stage of Fig. 3: patch merging (every stage but the first, as the paper draws it), then its blocks.

    (Hugging Face and the reference implementation hold the merging at the end of the stage before: the same
    computation, cut elsewhere.)
    """

    def __init__(self, layers: list[SwinBlock], merge: PatchMerging | None = None) -> None:
        super().__init__()
        self.merge = merge
        self.layers = nn.ModuleList(layers)
        self.gradient_checkpointing = False  # see tformer.nn.gradient_checkpointing

    def forward(self, x: Tensor, need_weights: bool = False) -> tuple[Tensor, list[Tensor]]:
        """x (B, L_in, C_in) -> (B, L, C), and each block's attention weights if asked (else an empty list)."""
        if self.merge is not None:
            x = self.merge(x)  # (B, L_in, C_in) -> (B, L_in / 4, 2 C_in)
        weights = []
        for layer in self.layers:
            x, w = run_layer(self, layer, x, need_weights)
            if need_weights:
                weights.append(w)
        return x, weights
