"""Small file helpers shared by the data layer: transparent gzip and atomic writes.

An atomic write never leaves a half-written file behind: the bytes go to a temporary file in the
target's own directory (so the final rename stays on one filesystem), are flushed to disk, and only
then replace the target with ``os.replace``. A crash or a full disk leaves the old file untouched.
"""

from __future__ import annotations

import gzip
import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write_bytes", "atomic_write_text", "is_gzip_path"]


def is_gzip_path(path: str | os.PathLike[str]) -> bool:
    """Returns True if the file name ends in ``.gz`` (the file is then read and written as gzip)."""
    return str(path).endswith(".gz")


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically, creating missing parent directories.

    Args:
        path: The destination file. An existing file is replaced only once the new bytes are on disk.
        data: The complete file content.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp_name, 0o644)  # mkstemp creates 0600; give the usual permissions of a data file
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Writes ``text`` as UTF-8 to ``path`` atomically; gzip-compressed if the name ends in ``.gz``.

    Args:
        path: The destination file.
        text: The complete file content.
    """
    data = text.encode("utf-8")
    if is_gzip_path(path):
        data = gzip.compress(data, mtime=0)  # mtime=0: the same text gives byte-identical files
    atomic_write_bytes(path, data)
