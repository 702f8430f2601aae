"""Adam as §5.3 sets it (or AdamW), its parameter groups, and the gradient norm that clipping and the
non-finite check read."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from tformer.training.config import TrainConfig


def build_optimizer(params, lr: float = 1.0, betas: tuple[float, float] = (0.9, 0.98), eps: float = 1e-9,
                    weight_decay: float = 0.0, decoupled: bool = False, fused: bool = True) -> torch.optim.Adam:
    """Adam (§5.3: beta1 0.9, beta2 0.98, eps 1e-9); the learning rate comes from the scheduler.

    ``decoupled``: AdamW (Loshchilov and Hutter, 2019), weight decay applied to the weights directly
    rather than added to the gradient. ``params`` may be parameter groups (each with its own decay).
    The fused implementation updates all parameters in one kernel per step (CPU and CUDA), instead of
    a loop of small operations per tensor (``fused=False``: torch's default, e.g. for sharded weights).
    """
    params = list(params)
    tensors = [p for g in params for p in g["params"]] if params and isinstance(params[0], dict) else params
    fused = fused and all(p.device.type in ("cpu", "cuda") for p in tensors)  # other devices: the default
    kind = torch.optim.AdamW if decoupled else torch.optim.Adam
    return kind(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, fused=fused or None)


def optimizer_for(model: torch.nn.Module, tc: TrainConfig, fused: bool = True) -> torch.optim.Adam:
    """The optimizer ``train`` describes for ``model`` (AdamW: decay on the weight matrices only)."""
    adamw = tc.optimizer == "adamw"
    params = decay_groups(model, tc.weight_decay) if adamw else model.parameters()
    return build_optimizer(params, lr=1.0, betas=(tc.beta1, tc.beta2), eps=tc.adam_eps,
                           weight_decay=tc.weight_decay, decoupled=adamw, fused=fused)


def decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two parameter groups: the weight matrices of linear and convolution layers get ``weight_decay``;
    biases, norms, embeddings, positions and special tokens get none (the usual AdamW split)."""
    decayed = {id(m.weight) for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))}
    params = list(model.parameters())
    return [{"params": [p for p in params if id(p) in decayed], "weight_decay": weight_decay},
            {"params": [p for p in params if id(p) not in decayed], "weight_decay": 0.0}]


def gradient_norm(model: torch.nn.Module, clip_norm: float) -> Tensor:
    """The 2-norm of all gradients of ``model`` together (of this process's shards, when sharded), after
    clipping them to ``clip_norm`` when it is > 0."""
    params = [p for p in model.parameters() if p.grad is not None]
    if clip_norm > 0:
        return torch.nn.utils.clip_grad_norm_(params, clip_norm)
    return total_norm([p.grad for p in params])


def total_norm(tensors: list[Tensor]) -> Tensor:
    """The 2-norm of all ``tensors`` together (as clip_grad_norm_ computes it, without clipping)."""
    get_total_norm = getattr(torch.nn.utils, "get_total_norm", None)  # torch >= 2.6
    if get_total_norm is not None:
        return get_total_norm(tensors)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in tensors]))
