"""Token embeddings scaled by sqrt(d_model) (§3.4) and positional encodings (§3.5).

    PE(pos, 2i)   = sin(pos / 10000^(2i / d_model))
    PE(pos, 2i+1) = cos(pos / 10000^(2i / d_model))                                   (§3.5)

The input to each stack is Dropout(Embedding(x) * sqrt(d_model) + PE) (§3.4, §5.4).

Relative positions (T5, Raffel et al., 2020) are the alternative: no PE is added to the embeddings;
instead :class:`RelativePositionBias` adds a learned scalar per head and per bucket of the distance
key - query to the attention scores of every layer of a stack:

    scores = Q Kᵀ + b[bucket(j - i)]         (B, H, Tq, Tk), before the mask and the softmax

Shape legend: B batch, T length, D d_model, V vocabulary, H heads, Tq/Tk query/key length, NB buckets.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from tformer.nn.dropout import Dropout


def sinusoidal_table(max_len: int, d_model: int, layout: str = "interleaved") -> Tensor:
    """The §3.5 table, (max_len, d_model).

    Args:
        layout: "interleaved" puts sin on even and cos on odd dimensions, as the paper writes it;
            "halves" puts all sines first and all cosines second (Marian, fairseq): the same
            frequencies in another order.
    """
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]  # (T, 1)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)  # (D/2,) the values 2i
    angle = pos / torch.pow(10000.0, two_i / d_model)  # (T, D/2)
    table = torch.empty(max_len, d_model, dtype=torch.float64)
    if layout == "interleaved":
        table[:, 0::2], table[:, 1::2] = torch.sin(angle), torch.cos(angle)
    elif layout == "halves":
        table[:, : d_model // 2], table[:, d_model // 2 :] = torch.sin(angle), torch.cos(angle)
    else:
        raise ValueError(f"unknown sinusoidal layout {layout!r}")
    return table.float()


class SinusoidalPositionalEncoding(nn.Module):
    """Fixed sinusoids (§3.5): no parameters, any position below ``max_len``."""

    def __init__(self, max_len: int, d_model: int, layout: str = "interleaved") -> None:
        super().__init__()
        self.register_buffer("table", sinusoidal_table(max_len, d_model, layout), persistent=False)

    def forward(self, length: int, offset: int = 0) -> Tensor:
        """Encodings of positions offset .. offset+length-1, (length, D)."""
        return self.table[offset : offset + length]


class LearnedPositionalEmbedding(nn.Module):
    """Learned position embeddings (the paper's alternative in Table 3, row E)."""

    def __init__(self, max_len: int, d_model: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(max_len, d_model))
        nn.init.normal_(self.weight, std=d_model**-0.5)

    def forward(self, length: int, offset: int = 0) -> Tensor:
        return self.weight[offset : offset + length]  # (length, D)


def relative_position_bucket(
    relative_position: Tensor, *, bidirectional: bool, num_buckets: int, max_distance: int
) -> Tensor:
    """The bucket of each distance ``relative_position`` = key position - query position (int64, any shape).

    Half of the buckets (per direction, when ``bidirectional``) hold the exact distances 0, 1, ...;
    the other half cover larger distances in logarithmically growing bins up to ``max_distance``,
    beyond which all distances share the last bucket. Without ``bidirectional`` (causal self-attention)
    only keys at or before the query are told apart; later keys fall in bucket 0 (they are masked anyway).

    Returns:
        int64 buckets in [0, num_buckets), same shape.
    """
    buckets = torch.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets += (relative_position > 0).long() * num_buckets  # keys after the query: the upper half
        distance = relative_position.abs()
    else:
        distance = (-relative_position).clamp(min=0)  # how far back the key lies
    max_exact = num_buckets // 2
    log_ratio = torch.log(distance.float().clamp(min=1) / max_exact) / math.log(max_distance / max_exact)
    if_large = (max_exact + (log_ratio * (num_buckets - max_exact)).long()).clamp(max=num_buckets - 1)
    return buckets + torch.where(distance < max_exact, distance, if_large)


class RelativePositionBias(nn.Module):
    """A learned bias per head and relative-distance bucket (T5), shared by every layer of one stack.

    Its ``weight`` (NB, H) is Hugging Face T5's ``relative_attention_bias`` of the stack's first layer.
    """

    def __init__(self, num_buckets: int, max_distance: int, num_heads: int, *, bidirectional: bool,
                 std: float = 1.0) -> None:
        super().__init__()
        self.num_buckets, self.max_distance, self.bidirectional = num_buckets, max_distance, bidirectional
        self.weight = nn.Parameter(torch.empty(num_buckets, num_heads))
        nn.init.normal_(self.weight, std=std)

    def forward(self, t_q: int, t_k: int, offset: int = 0) -> Tensor:
        """The bias for queries at positions offset .. offset+t_q-1 and keys at 0 .. t_k-1, (1, H, Tq, Tk)."""
        device = self.weight.device
        query = torch.arange(offset, offset + t_q, device=device)[:, None]  # (Tq, 1)
        key = torch.arange(t_k, device=device)[None, :]  # (1, Tk)
        bucket = relative_position_bucket(key - query, bidirectional=self.bidirectional,
                                          num_buckets=self.num_buckets, max_distance=self.max_distance)  # (Tq, Tk)
        return nn.functional.embedding(bucket, self.weight).permute(2, 0, 1)[None]  # (Tq, Tk, H) -> (1, H, Tq, Tk)


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
