"""How the dataset builders' command lines (``python -m tformer.data.X build ROOT ...``) end: the build's report,
or a user's error as one line and exit status 2, as the ``tformer`` command does.

Every builder writes ROOT atomically and returns None when ROOT exists without ``--force``; :func:`run_build`
turns that into the same message everywhere.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from tformer.errors import TformerError, os_error_line

R = TypeVar("R")


def run_build(make: Callable[[], R | None], root: str | Path, report: Callable[[R], str]) -> int:
    """Run ``make`` (a build, or any reading of a built set) and print ``report`` of its result; the exit status.

    Returns 0 after printing the report, or "ROOT exists; --force rebuilds it" when ``make`` returns None; 2 after
    printing ``error: ...`` (one line, on stderr) when it raises a :class:`TformerError` or an OSError (a source
    or ROOT that cannot be read or written)."""
    try:
        result = make()
    except TformerError as e:
        return _fail(str(e))
    except OSError as e:
        return _fail(os_error_line(e))
    print(f"{root} exists; --force rebuilds it" if result is None else report(result))
    return 0


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2
