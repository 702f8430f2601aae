"""Token embeddings scaled by sqrt(d_model) (§3.4), and the input of a stack:

    Dropout(Embedding(x) * sqrt(d_model) + PE)                                          (§3.4, §3.5, §5.4)

The positional encodings PE, and the relative position bias that replaces them in T5, are in
:mod:`tformer.nn.positional`.

Shape legend: B batch, T length, D d_model, V vocabulary.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from tformer.nn.dropout import Dropout


class TokenEmbedding(nn.Module):
    """Embedding(x) * sqrt(d_model) (§3.4). Its ``weight`` may be shared with the other stack and the
    pre-softmax projection."""

    def __init__(self, vocab_size: int, d_model: int, *, scale: bool = True, std: float | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(vocab_size, d_model))
        nn.init.normal_(self.weight, std=d_model**-0.5 if std is None else std)
        self.scale = math.sqrt(d_model) if scale else 1.0

    def forward(self, ids: Tensor) -> Tensor:
        return nn.functional.embedding(ids, self.weight) * self.scale  # (B, T) -> (B, T, D)


class Embeddings(nn.Module):
    """The input of a stack: Dropout(TokenEmbedding(x) + PE(positions)) (§3.4, §3.5, §5.4).

    ``positions`` None = no absolute positions (relative position bias instead): Dropout(TokenEmbedding(x)).
    """

    def __init__(self, tokens: TokenEmbedding, positions: nn.Module | None, dropout: float, max_len: int) -> None:
        super().__init__()
        self.tokens = tokens
        self.positions = positions
        self.dropout = Dropout(dropout)
        self.max_len = max_len

    def forward(self, ids: Tensor, offset: int = 0) -> Tensor:
        """ids (B, T) at positions offset .. offset+T-1 -> (B, T, D)."""
        t = ids.shape[1]
        if offset + t > self.max_len:
            raise ValueError(f"sequence of {offset + t} positions exceeds the model's max_len {self.max_len}")
        if self.positions is None:
            return self.dropout(self.tokens(ids))
        return self.dropout(self.tokens(ids) + self.positions(t, offset))
