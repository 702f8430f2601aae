"""SIGINT and SIGTERM during training: finish the current update, save, stop (the run resumes exactly).

A second SIGINT aborts at once (``KeyboardInterrupt``); the last checkpoint still resumes.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def stop_on_signals(request_stop: Callable[[str], None], stop_requested: Callable[[], bool]) -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM call ``request_stop`` with the signal's name ("SIGTERM"); a SIGINT
    when ``stop_requested()`` already raises ``KeyboardInterrupt``. The old handlers come back after the block.
    Only the main thread can take signals; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if signum == signal.SIGINT and stop_requested():
            raise KeyboardInterrupt
        request_stop(signal.Signals(signum).name)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
