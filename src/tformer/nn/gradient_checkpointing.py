"""Gradient (activation) checkpointing per layer (Chen et al., 2016, "Training deep nets with sublinear
memory cost").

Backpropagation needs the activations of the forward pass. Normally every layer keeps its own
(attention scores, FFN hidden states, dropout masks, ...): memory grows with layers x batch x length.
With checkpointing a layer keeps only its input; backward runs the layer's forward again to get the
rest. Peak memory drops to about one layer's activations plus one input per layer, for about one
extra forward pass of compute (roughly +30% time per training step).

The gradients are the same: ``torch.utils.checkpoint`` restores the random state before the recompute,
so dropout draws the same masks (tested equal in ``tests/unit/test_checkpointing.py``).

Every stack of the toolkit (the encoder and decoder of :class:`~tformer.models.transformer.model.Transformer`,
:class:`~tformer.models.bert.model.EncoderOnly`, :class:`~tformer.models.gpt.model.DecoderOnly`,
:class:`~tformer.models.vit.model.VisionTransformer`) calls its layers through :func:`run_layer` and has a
``gradient_checkpointing`` switch; :func:`set_gradient_checkpointing` flips it for a whole model
(``train.gradient_checkpointing: true`` in a run config).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


def run_layer(stack: nn.Module, layer: nn.Module, *args: Any, **kwargs: Any) -> Any:
    """``layer(*args, **kwargs)``, checkpointed when ``stack.gradient_checkpointing`` is on and a
    backward pass will follow (training mode with gradients enabled)."""
    if getattr(stack, "gradient_checkpointing", False) and stack.training and torch.is_grad_enabled():
        return checkpoint(layer, *args, use_reentrant=False, **kwargs)
    return layer(*args, **kwargs)


def set_gradient_checkpointing(model: nn.Module, enabled: bool = True) -> int:
    """Switch checkpointing of every layer of every stack in ``model``; returns the number of stacks.

    Raises:
        ValueError: if ``model`` has no stack that supports it.
    """
    stacks = [m for m in model.modules() if hasattr(m, "gradient_checkpointing")]
    if not stacks:
        raise ValueError(f"{type(model).__name__} has no layer stack that supports gradient checkpointing")
    for m in stacks:
        m.gradient_checkpointing = enabled
    return len(stacks)
