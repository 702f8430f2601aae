"""Tokenized sentence pairs on disk, memory-mapped: a corpus of millions of pairs (WMT14 en-de: 4.5 million) read
by every process without tokenizing it again and without holding it as Python objects.

A corpus folder (one entry of :mod:`tformer.data.cache`) holds, per side (``src``, ``tgt``):

* ``<side>.tokens``: the ids of every kept sentence, one after another, without BOS/EOS, as raw little-endian
  ``uint16`` (vocabularies of up to 65,536) or ``int32``;
* ``<side>.offsets``: ``int64`` (N + 1,): sentence ``i`` is ``tokens[offsets[i]:offsets[i + 1]]``;

and ``corpus.json``: the number of pairs, the id type and the filter report. The lengths the batches are built from
(:class:`tformer.data.batching.TokenBatchSampler`) are the differences of the offsets, N numbers per side.

:func:`write_pairs` makes such a folder from text pairs in chunks (``tokenizers``' batch encoding, which uses
every core, then the filter of :func:`tformer.data.corpus.filter_pairs`), so its memory stays flat whatever the
corpus size; :class:`BinarizedPairs` reads it. The files are memory-mapped read-only: their pages are the page
cache's, shared by every process that maps them (all DDP ranks of a machine) and read only where a batch touches.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, overload

import numpy as np

from tformer.console import log
from tformer.data.cache import cached_entry, file_fingerprint
from tformer.data.corpus import FilterReport, filter_pairs
from tformer.data.vocabularies import Vocabularies
from tformer.version import VERSION

__all__ = ["CHUNK_PAIRS", "FORMAT_VERSION", "BinarizedPairs", "cached_pairs", "cached_vocabularies", "data_source",
           "vocabularies_digest", "write_pairs"]

FORMAT_VERSION = 1  # of the files below; part of every cache key
CHUNK_PAIRS = 50_000  # pairs tokenized at a time: ~10 MB of text, ~3 million ids in Python lists
META_FILE = "corpus.json"
SIDES = ("src", "tgt")

Pair = tuple[list[int], list[int]]
Encode = Callable[[Sequence[str]], list[list[int]]]


def id_dtype(vocab_size: int) -> np.dtype:
    """The smallest id type that holds ids below ``vocab_size``: uint16 (up to 65,536) or int32."""
    return np.dtype("<u2") if vocab_size <= 1 << 16 else np.dtype("<i4")


def write_pairs(folder: Path, pairs: Iterable[tuple[str, str]], encode_src: Encode, encode_tgt: Encode, *,
                vocab_size: int, max_len: int | None, max_ratio: float | None, max_source_len: int | None = None,
                chunk_pairs: int | None = None) -> FilterReport:
    """Tokenize text pairs chunk by chunk, filter them and write the kept ones into ``folder`` (existing, empty).

    Args:
        folder: Where the files go.
        pairs: ``(source, target)`` texts, e.g. :func:`tformer.data.corpus.iter_parallel`; read once, in order.
        encode_src, encode_tgt: Batch tokenizers (``Tokenizer.encode_batch``) of each side.
        vocab_size: The larger vocabulary's size (picks the id type).
        max_len, max_ratio: :func:`tformer.data.corpus.filter_pairs`'s limits.
        max_source_len: Cut each source to this many ids before filtering (summarization), or None.
        chunk_pairs: Pairs tokenized at a time (default :data:`CHUNK_PAIRS`).

    Returns:
        The filter report of the whole corpus (the same as filtering it at once).
    """
    dtype = id_dtype(vocab_size)
    totals = {"total": 0, "kept": 0, "empty": 0, "too_long": 0, "ratio": 0}
    ends = {side: 0 for side in SIDES}  # tokens written so far per side
    files = {name: open(folder / name, "wb") for side in SIDES for name in (f"{side}.tokens", f"{side}.offsets")}
    try:
        for side in SIDES:
            files[f"{side}.offsets"].write(np.zeros(1, dtype="<i8").tobytes())
        it = iter(pairs)
        while chunk := list(itertools.islice(it, chunk_pairs or CHUNK_PAIRS)):
            src = encode_src([s for s, _ in chunk])
            if max_source_len is not None:
                src = [ids[:max_source_len] for ids in src]
            kept, report = filter_pairs(zip(src, encode_tgt([t for _, t in chunk]), strict=True),
                                        max_len=max_len, max_ratio=max_ratio)
            for name, value in asdict(report).items():
                totals[name] += value
            for i, side in enumerate(SIDES):
                sentences = [pair[i] for pair in kept]
                lengths = np.fromiter(map(len, sentences), dtype="<i8", count=len(sentences))
                ids = np.fromiter(itertools.chain.from_iterable(sentences), dtype=dtype, count=int(lengths.sum()))
                files[f"{side}.tokens"].write(ids.tobytes())
                files[f"{side}.offsets"].write((ends[side] + np.cumsum(lengths)).astype("<i8").tobytes())
                ends[side] += int(lengths.sum())
    finally:
        for f in files.values():
            f.close()
    meta = {"pairs": totals["kept"], "dtype": dtype.str, "tokens": ends, "report": totals}
    (folder / META_FILE).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return FilterReport(**totals)


class BinarizedPairs(Sequence[Pair]):
    """The pairs of a folder written by :func:`write_pairs`, memory-mapped: ``pairs[i]`` is ``(source ids, target
    ids)`` as lists (what :func:`tformer.data.batching.collate` takes), read from the mapped files.

    Args:
        folder: The corpus folder.

    Attributes:
        report: The filter report written with the corpus.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        meta = json.loads((self.folder / META_FILE).read_text(encoding="utf-8"))
        self.report = FilterReport(**meta["report"])
        n, dtype = int(meta["pairs"]), np.dtype(meta["dtype"])
        self._tokens = {side: _mapped(self.folder / f"{side}.tokens", dtype, int(meta["tokens"][side]))
                        for side in SIDES}
        self._offsets = {side: _mapped(self.folder / f"{side}.offsets", np.dtype("<i8"), n + 1) for side in SIDES}

    def __len__(self) -> int:
        return len(self._offsets["src"]) - 1

    @overload
    def __getitem__(self, i: int) -> Pair: ...

    @overload
    def __getitem__(self, i: slice) -> list[Pair]: ...

    def __getitem__(self, i: int | slice) -> Pair | list[Pair]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError(f"pair {i} of {len(self)}")
        i %= len(self)
        src, tgt = (self._tokens[side][self._offsets[side][i] : self._offsets[side][i + 1]].tolist() for side in SIDES)
        return src, tgt

    def token_ids(self, side: str, vocab_size: int) -> np.ndarray:
        """The distinct ids of one side ("src" or "tgt"), ascending: one counting pass over its tokens."""
        return np.flatnonzero(np.bincount(self._tokens[side], minlength=vocab_size))

    def lengths(self) -> tuple[np.ndarray, np.ndarray]:
        """Source and target lengths, (N,) int64 each (ids without BOS/EOS, as the sampler counts them)."""
        src, tgt = (np.diff(self._offsets[side]) for side in SIDES)
        return src, tgt


def _mapped(path: Path, dtype: np.dtype, count: int) -> np.ndarray:
    """The first ``count`` items of ``path``, memory-mapped read-only (an empty file cannot be mapped)."""
    if count == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=(count,))


# ---------------------------------------------------------------------------------------------- the cache


def data_source(files: Sequence[str | os.PathLike[str]], fmt: str) -> dict[str, Any]:
    """The part of a cache key that names the training data: each file's fingerprint and how it is read."""
    return {"files": [file_fingerprint(f) for f in files], "format": fmt}


def vocabularies_digest(vocabs: Vocabularies) -> str:
    """SHA-256 of the tokenizers' JSON (canonical: sorted keys), shared or separate; what a corpus was tokenized
    with."""
    sides = [vocabs.src] if vocabs.shared else [vocabs.src, vocabs.tgt]
    text = json.dumps([json.loads(tok.to_json()) for tok in sides], sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cached_vocabularies(cache_dir: str | os.PathLike[str], source: dict[str, Any], settings: dict[str, Any],
                        train: Callable[[], Vocabularies]) -> Vocabularies:
    """The vocabularies trained on ``source`` with ``settings`` (kind, size, shared): from the cache, or
    ``train()``-ed and cached (a new run on the same data with the same settings then trains none)."""
    key = {"kind": "tokenizer", "tformer": VERSION, "source": source, "settings": settings}
    folder, built = cached_entry(cache_dir, "tokenizer", key, lambda tmp: train().save(tmp))
    vocabs = Vocabularies.load(folder)
    if not built:
        sizes = f"{vocabs.src.vocab_size}" + ("" if vocabs.shared else f" + {vocabs.tgt.vocab_size}")
        log(f"tokenizer: {settings.get('tokenizer', '')}, vocabulary {sizes} (trained before: {folder})")
    return vocabs


def cached_pairs(cache_dir: str | os.PathLike[str], source: dict[str, Any], vocabs: Vocabularies,
                 pairs: Callable[[], Iterable[tuple[str, str]]], *, max_len: int | None, max_ratio: float | None,
                 max_source_len: int | None = None) -> BinarizedPairs:
    """The training pairs of ``source`` tokenized by ``vocabs`` and filtered: from the cache (memory-mapped), or
    tokenized from ``pairs()`` by :func:`write_pairs` first. A run, its ``--resume`` and every DDP rank read the
    same entry."""
    key = {"kind": "corpus", "format_version": FORMAT_VERSION, "source": source,
           "tokenizer_sha256": vocabularies_digest(vocabs), "max_len": max_len, "max_ratio": max_ratio,
           "max_source_len": max_source_len}

    def build(folder: Path) -> None:
        t0 = time.perf_counter()
        report = write_pairs(folder, pairs(), vocabs.src.encode_batch, vocabs.tgt.encode_batch,
                             vocab_size=max(vocabs.src.vocab_size, vocabs.tgt.vocab_size), max_len=max_len,
                             max_ratio=max_ratio, max_source_len=max_source_len)
        log(f"tokenized {report.total} training pairs in {time.perf_counter() - t0:.1f}s")

    folder, built = cached_entry(cache_dir, "corpus", key, build)
    out = BinarizedPairs(folder)
    log(f"train: {out.report}" + ("" if built else f" (tokenized before: {folder})"))
    return out
