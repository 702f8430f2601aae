"""A folder of derived data (a trained tokenizer, a tokenized corpus), built once and found again by fingerprint.

An entry is a folder ``<kind>-<digest>`` in the cache folder, where ``digest`` is the SHA-256 of its key: a JSON
object naming everything the entry is made from (the data files' fingerprints, the tokenizer's JSON hash, the
settings, a format version). The entry's ``key.json`` holds the key itself, so a folder whose key differs is never
used. A change to any input gives another digest, so another entry: stale entries are never read, only left on
disk (delete the cache folder to reclaim the space).

Building is safe under concurrency (two DDP ranks, two runs sharing ``data.cache_dir``):

* the builder works in a temporary folder beside the entry and renames it into place when complete, so a reader
  sees a whole entry or none;
* builders of one entry take an exclusive ``flock`` on ``<kind>-<digest>.lock`` first: the second one waits, then
  finds the finished entry and builds nothing;
* where locks do not work (some network file systems) both build and the first rename wins; the other's folder is
  deleted. Either way one valid entry remains.

A failed build leaves nothing behind: its temporary folder, its lock file and any folder it created to hold them
are removed (a failed ``tformer train`` changes nothing on disk).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tformer.console import log
from tformer.data.corpus import CorpusError
from tformer.errors import TformerError

try:
    import fcntl
except ImportError:  # Windows: no flock; the rename alone keeps the cache valid
    fcntl = None  # type: ignore[assignment]

__all__ = ["KEY_FILE", "cached_entry", "entry_folder", "file_fingerprint", "key_digest"]

KEY_FILE = "key.json"
SAMPLE_BYTES = 1 << 16  # the bytes hashed at each end of a data file


def file_fingerprint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What identifies a data file's content cheaply (no full read of a gigabyte corpus): its absolute path, size,
    modification time (ns) and the SHA-256 of its first and last 64 KiB.

    Raises:
        CorpusError: If the file is missing or cannot be read.
    """
    if not Path(path).is_file():
        raise CorpusError(f"corpus file not found: {path}")
    path = Path(path).resolve()
    try:
        st = path.stat()
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            digest.update(f.read(SAMPLE_BYTES))
            if st.st_size > SAMPLE_BYTES:
                f.seek(max(SAMPLE_BYTES, st.st_size - SAMPLE_BYTES))
                digest.update(f.read(SAMPLE_BYTES))
    except OSError as e:
        raise CorpusError(f"cannot read corpus file {path}: {e.strerror or e}") from None
    return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sample_sha256": digest.hexdigest()}


def key_digest(key: dict[str, Any]) -> str:
    """The SHA-256 of ``key`` as canonical JSON (sorted keys), in hex."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()


def entry_folder(cache_dir: str | os.PathLike[str], kind: str, key: dict[str, Any]) -> Path:
    """Where the entry of ``key`` lives (it may not exist yet)."""
    return Path(cache_dir) / f"{kind}-{key_digest(key)[:24]}"


def _complete(folder: Path, key: dict[str, Any]) -> bool:
    try:
        return json.loads((folder / KEY_FILE).read_text(encoding="utf-8")) == key
    except (OSError, ValueError):
        return False


def cached_entry(cache_dir: str | os.PathLike[str], kind: str, key: dict[str, Any],
                 build: Callable[[Path], None]) -> tuple[Path, bool]:
    """The folder of the entry of ``key``, built first if absent: ``build(folder)`` fills an empty temporary
    folder, which then becomes the entry. Returns (the entry's folder, whether this call built it).

    Raises:
        TformerError: If the cache folder cannot be written; whatever ``build`` raises (nothing is left behind).
    """
    final = entry_folder(cache_dir, kind, key)
    if _complete(final, key):
        return final, False
    created = _make_folders(Path(cache_dir))
    try:
        with _locked(final.with_name(final.name + ".lock")) as exclusive:
            if _complete(final, key):
                return final, False
            if exclusive:  # no builder of this entry is alive: folders of earlier, killed ones are debris
                for debris in final.parent.glob(f".{final.name}.building-*"):
                    shutil.rmtree(debris, ignore_errors=True)
            _build(final, key, build)
    except BaseException:
        for folder in reversed(created):  # leave no empty folder of ours behind
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    return final, True


def _build(final: Path, key: dict[str, Any], build: Callable[[Path], None]) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.building-", dir=final.parent))
    try:
        tmp.chmod(0o755)
        build(tmp)
        (tmp / KEY_FILE).write_text(json.dumps(key, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        try:
            os.rename(tmp, final)
        except OSError:  # another builder's rename came first (no lock here): keep the complete one
            if not _complete(final, key):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[bool]:
    """Hold an exclusive flock on ``path`` (waiting, with a log line, while another process holds it); yields
    whether the lock is real. The lock file is removed on the way out; a waiter that then gets the lock of the
    removed file opens the path again, so only one process at a time holds the lock of the file at ``path``."""
    if fcntl is None:
        yield False
        return
    told = False
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise TformerError(f"cannot write the data cache {path.parent}: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not told:
                log(f"waiting for another process to finish {path.stem} in {path.parent}")
                told = True
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # no locks on this file system: rely on the rename
            os.close(fd)
            yield False
            return
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)  # the holder removed that file: lock the one at ``path`` now
    try:
        yield True
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)


def _make_folders(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; returns the ones created, outermost first."""
    missing = []
    for p in [folder, *folder.parents]:
        if p.exists():
            break
        missing.append(p)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TformerError(f"cannot create the data cache {folder}: {e.strerror or e}") from None
    return list(reversed(missing))
