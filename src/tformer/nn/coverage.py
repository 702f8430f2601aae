"""The coverage loss (See et al., 2017, "Get To The Point", §2.3): a penalty on attending again to what was covered.

The coverage vector at decoder step t is the sum of the attention distributions of the steps before it,

    c_t = Σ_{t' < t} a_{t'}                                                    (See et al., Eq. 10; c_0 = 0)

and the coverage loss of step t is the overlap of the step's attention with it,

    covloss_t = Σ_i min(a_{t,i}, c_{t,i})                                      (See et al., Eq. 12)

bounded by Σ_i a_{t,i} = 1. It is added to the negative log-likelihood with a weight λ (Eq. 13; See et al.: 1).
Summaries that repeat a phrase attend to the same source words twice: the loss makes that cost.

Here a_t is the same distribution the copy mechanism copies with (:mod:`tformer.nn.copy`): the last decoder layer's
cross-attention weights averaged over its heads. Under teacher forcing every step's a_t is known at once, so c is an
exclusive cumulative sum over the target positions (``cumsum - a``), computed for all steps in one pass. (See et al.
also feed c_t into the attention scores, Eq. 11; that changes the attention, and is not done here.)

Shape legend: B batch, T target positions, S source positions.
"""

from __future__ import annotations

import torch
from torch import Tensor


def coverage_vectors(attention: Tensor, tgt_mask: Tensor) -> Tensor:
    """c_t = Σ_{t' < t} a_{t'} (B, T, S) for attention (B, T, S); steps at padded targets (``tgt_mask`` False,
    (B, T)) add nothing."""
    a = attention * tgt_mask[..., None].to(attention.dtype)  # (B, T, S), zero rows at padded targets
    return a.cumsum(dim=1) - a  # (B, T, S) exclusive: the steps before t


def coverage_loss(attention: Tensor, tgt_mask: Tensor) -> Tensor:
    """Σ over real target steps t of Σ_i min(a_{t,i}, c_{t,i}): a scalar, summed as the cross-entropy is.

    Args:
        attention: a_t, (B, T, S), each real row a distribution over the source positions (padded sources 0).
        tgt_mask: (B, T) bool, True at real target positions.
    """
    c = coverage_vectors(attention, tgt_mask)  # (B, T, S)
    per_step = torch.minimum(attention, c).sum(dim=-1)  # (B, T)
    return (per_step * tgt_mask.to(per_step.dtype)).sum()
