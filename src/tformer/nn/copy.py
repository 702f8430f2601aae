"""The copy mechanism: a pointer-generator output layer (See et al., 2017, "Get To The Point", §2.2).

The decoder either generates a word from the vocabulary or copies a source token it attends to:

    p_gen = sigmoid(w · [s_t ; y_{t-1}] + b)                       the probability of generating
    P(w)  = p_gen · softmax(logits_t)(w) + (1 - p_gen) · Σ_{i: x_i = w} a_{t,i}          (See et al., Eq. 9)

where s_t is the decoder's output state at step t (it already carries the cross-attention context
through the residual stream), y_{t-1} the embedding of the step's input token, and a_t the last decoder
layer's cross-attention weights averaged over its heads: a distribution over the source positions.
Copying needs one vocabulary for source and target (a source id is a target id).

The layer returns log P (B, T, V). Because P sums to one, log_softmax(log P) = log P: the losses and
decoders, which take logits and apply log_softmax, use it unchanged.

Shape legend: B batch, T target positions, S source positions, H heads, D d_model, V vocabulary.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class PointerGenerator(nn.Module):
    """The mixture of generating and copying; only the gate w, b (2 D + 1 numbers) is learned."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.gate = nn.Linear(2 * d_model, 1)  # w · [s_t ; y_{t-1}] + b

    def generation_probability(self, hidden: Tensor, inputs: Tensor) -> Tensor:
        """p_gen (B, T, 1) from the decoder states (B, T, D) and the input token embeddings (B, T, D)."""
        return torch.sigmoid(self.gate(torch.cat([hidden, inputs], dim=-1)).float())

    def forward(self, logits: Tensor, hidden: Tensor, inputs: Tensor, cross_weights: Tensor, src: Tensor) -> Tensor:
        """log P(w) (B, T, V), float32.

        Args:
            logits: the pre-softmax layer's output (B, T, V).
            hidden: the decoder's output states (B, T, D); inputs: the step's input embeddings (B, T, D).
            cross_weights: the last decoder layer's cross-attention weights (B, H, T, S); padded sources have 0.
            src: the source ids (B, S), in the shared vocabulary.
        """
        p_gen = self.generation_probability(hidden, inputs)  # (B, T, 1)
        p_vocab = logits.float().softmax(dim=-1)  # (B, T, V)
        attention = cross_weights.float().mean(dim=1)  # (B, H, T, S) -> (B, T, S), rows sum to 1
        index = src[:, None, :].expand(-1, attention.shape[1], -1)  # (B, T, S) the vocabulary id of each source
        p_copy = torch.zeros_like(p_vocab).scatter_add_(-1, index, attention)  # (B, T, V) Σ_{i: x_i = w} a_{t,i}
        p = p_gen * p_vocab + (1.0 - p_gen) * p_copy  # (B, T, V), rows sum to 1
        return p.clamp_min(torch.finfo(p.dtype).tiny).log()
