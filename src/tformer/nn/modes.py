"""Module modes: dropout off for a block of inference code, and the caller's mode back afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Evaluation mode (dropout off) inside the ``with`` block; the previous mode afterwards, even on an error.

        >>> with eval_mode(model):
        ...     out = model.generate(src)
    """
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
