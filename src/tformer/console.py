"""Where progress goes: messages and progress bars on stderr, so stdout keeps only results."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable


def log(msg: str) -> None:
    """A line on stderr; under ``torchrun``, from rank 0 only (the other ranks would repeat it)."""
    if os.environ.get("RANK", "0") == "0":
        print(msg, file=sys.stderr, flush=True)


def progress(items: Iterable | None = None, *, total: int | None = None, initial: int = 0, enabled: bool = True,
             unit: str = "it"):
    """A tqdm bar on stderr (a no-op bar when ``enabled`` is False)."""
    from tqdm import tqdm

    return tqdm(items, total=total, initial=initial, disable=not enabled, unit=unit, dynamic_ncols=True,
                file=sys.stderr)
