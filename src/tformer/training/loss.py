"""Label-smoothed cross-entropy (§5.4, eps_ls = 0.1), padding ignored.

The smoothed target distribution of a position whose gold token is y:

    q(k) = 1 - eps                 for k = y
    q(k) = eps / (V - 2)           for every other k except pad
    q(pad) = 0

so q sums to 1 and never asks the model to predict padding. The loss is the cross-entropy
-sum_k q(k) log p(k), summed over non-pad positions. :func:`smoothed_targets` builds q
explicitly (the reference path); :func:`label_smoothed_loss` computes the same number without
materialising the (N, V) matrix (the fast path). They are tested equal.

Shape legend: N positions (B*T flattened), V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class LossOutput:
    loss: Tensor  # summed label-smoothed cross-entropy over real tokens (what is minimised)
    nll: Tensor  # summed negative log-likelihood of the gold tokens (for perplexity), detached
    num_tokens: int  # real (non-pad) target tokens


def smoothed_targets(target: Tensor, vocab_size: int, eps: float, pad_id: int) -> Tensor:
    """The explicit target distribution q, (N, V); rows at pad targets are all zero."""
    q = torch.full((target.numel(), vocab_size), eps / (vocab_size - 2), dtype=torch.float32, device=target.device)
    q[:, pad_id] = 0.0
    q.scatter_(1, target.reshape(-1, 1), 1.0 - eps)
    q[target.reshape(-1) == pad_id] = 0.0
    return q


def label_smoothed_loss(logits: Tensor, target: Tensor, eps: float, pad_id: int) -> LossOutput:
    """logits (..., V) and gold ids (...) -> summed smoothed loss and NLL over non-pad targets."""
    v = logits.shape[-1]
    logp = logits.reshape(-1, v).float().log_softmax(dim=-1)  # (N, V)
    target = target.reshape(-1)  # (N,)
    real = (target != pad_id).to(logp.dtype)  # (N,) 1 = real token; masks per-row numbers, not the (N, V) matrix
    gold = logp.gather(1, target[:, None]).squeeze(1)  # (N,)
    nll = -(gold * real).sum()
    if eps > 0:
        others = logp.sum(dim=1) - gold - logp[:, pad_id]  # (N,) sum over k not in {y, pad}
        loss = (1.0 - eps) * nll - eps / (v - 2) * (others * real).sum()
    else:
        loss = nll
    return LossOutput(loss=loss, nll=nll.detach(), num_tokens=int(real.sum()))
