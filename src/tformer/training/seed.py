"""Reproducibility: seeding that reports what it did, and RNG states that checkpoints carry."""

from __future__ import annotations

import random
from typing import Any

import torch


def set_seed(seed: int | None = None) -> int:
    """Seed Python's, NumPy's (when installed) and torch's generators (CPU and CUDA).

    Args:
        seed: the seed; None draws one from the OS so that the run can still be repeated.

    Returns:
        The seed that was used.
    """
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:
        pass
    torch.manual_seed(seed)  # also seeds every CUDA device
    return seed


def rng_state() -> dict[str, Any]:
    """The state of every generator, to store in a checkpoint."""
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    try:
        import numpy as np

        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        state["numpy"] = (kind, torch.from_numpy(keys.astype("int64")), pos, has_gauss, gauss)
    except ImportError:
        pass
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    if "numpy" in state:
        import numpy as np

        kind, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype("uint32"), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
