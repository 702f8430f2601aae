"""Position-wise feed-forward network (§3.3).

    FFN(x) = max(0, x W_1 + b_1) W_2 + b_2                                            (Eq. 2)

applied to each position separately and identically; d_model -> d_ff -> d_model. GELU (exact, as
BERT; or its tanh approximation, as GPT-2) and SiLU are offered as alternatives to the paper's ReLU.

Shape legend: B batch, T length, D d_model, F d_ff.
"""

from __future__ import annotations

from functools import partial

import torch.nn.functional as F
from torch import Tensor, nn

from tformer.nn.dropout import Dropout
from tformer.nn.linear import Linear

ACTIVATION_FUNCTIONS = {
    "relu": F.relu, "gelu": F.gelu, "gelu_tanh": partial(F.gelu, approximate="tanh"), "silu": F.silu,
}  # name -> function


class PositionwiseFeedForward(nn.Module):
    """Eq. 2: two linear maps with a non-linearity between them."""

    def __init__(self, d_model: int, d_ff: int, activation: str = "relu", activation_dropout: float = 0.0,
                 bias: bool = True) -> None:
        super().__init__()
        if activation not in ACTIVATION_FUNCTIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATION_FUNCTIONS)}, got {activation!r}")
        self.w_1 = Linear(d_model, d_ff, bias=bias)  # bias=False: no b_1, b_2 (T5)
        self.w_2 = Linear(d_ff, d_model, bias=bias)
        self.activation = ACTIVATION_FUNCTIONS[activation]
        self.dropout = Dropout(activation_dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.w_2(self.dropout(self.activation(self.w_1(x))))  # (B, T, D) -> (B, T, F) -> (B, T, D)
