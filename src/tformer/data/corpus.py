"""Reading parallel text and filtering sentence pairs.

Three on-disk layouts are read, each giving a list of ``(source, target)`` string pairs:

* two aligned files, one sentence a line (``train.de`` + ``train.en``): :func:`read_parallel`;
* one tab-separated file with a column per language: :func:`read_tsv`;
* one JSON object a line (``{"src": ..., "tgt": ...}``): :func:`read_jsonl`.

Each reader has a streaming twin (:func:`iter_parallel`, :func:`iter_tsv`, :func:`iter_jsonl`) that yields the
same pairs one at a time, for corpora too large to hold as Python strings (WMT's millions of pairs).

Any file may be gzip-compressed (name ending in ``.gz``). Text must be UTF-8 (a leading byte-order
mark is ignored); each line loses its newline and surrounding whitespace (in a TSV file, each cell). Lines
split only at ``\\n`` (and ``\\r\\n``), never at a lone ``\\r`` or the other characters Python's
``str.splitlines`` treats as breaks, so line numbers match what ``wc -l`` shows; such characters stay in
the line, where the tokenizer reads ``\\r`` and the other whitespace among them as a space. Control
characters and scripts of any kind are kept as text (the tokenizer maps characters it never saw to
``<unk>``).

Every problem with the input raises :class:`CorpusError` (a ``TformerError``, so a ``ValueError``) with
one line that names the file and, where it applies, the 1-based line number, e.g.::

    misaligned corpus: data/train.de has 29000 lines but data/train.en has 28999
    data/train.jsonl:17: invalid JSON (Expecting ',' delimiter: line 1 column 12 (char 11))

:func:`filter_pairs` then drops empty and over-long pairs from the tokenized corpus and reports how
many of each it dropped.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from collections.abc import Iterable, Iterator, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tformer.errors import TformerError

__all__ = [
    "CorpusError",
    "FilterReport",
    "filter_pairs",
    "iter_jsonl",
    "iter_parallel",
    "iter_tsv",
    "read_jsonl",
    "read_lines",
    "read_parallel",
    "read_tsv",
]

PathLike = str | os.PathLike[str]
PairT = TypeVar("PairT", bound=tuple[Sized, Sized])


class CorpusError(TformerError):
    """A corpus file is missing, unreadable, not UTF-8, malformed, or misaligned with its partner."""


# ---------------------------------------------------------------------------------------- reading


def _numbered_lines(path: PathLike) -> Iterator[tuple[int, str]]:
    """Yields ``(line_number, text)`` for each line of ``path`` (1-based), without its ``\\n`` or ``\\r\\n``."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"corpus file not found: {path}")
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
            for number, raw in enumerate(f, start=1):
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise CorpusError(f"{path}:{number}: invalid UTF-8 at byte {err.start} of the line") from None
                if number == 1:
                    text = text.removeprefix("\ufeff")
                yield number, text.removesuffix("\n").removesuffix("\r")
    except (OSError, EOFError, zlib.error) as err:  # unreadable, or a broken/truncated gzip stream
        raise CorpusError(f"cannot read corpus file {path}: {err}") from None


def read_lines(path: PathLike) -> list[str]:
    """Returns the lines of a text file (``.gz`` read transparently), each stripped of whitespace.

    Raises:
        CorpusError: If the file is missing, unreadable, or not valid UTF-8 (naming file and line).
    """
    return [text.strip() for _, text in _numbered_lines(path)]


def read_parallel(src_path: PathLike, tgt_path: PathLike) -> list[tuple[str, str]]:
    """Reads two aligned files, one sentence a line, into ``(source, target)`` pairs.

    Empty lines are kept (so that the alignment holds); :func:`filter_pairs` drops them later.

    Args:
        src_path: The source-language file, e.g. ``train.de`` or ``train.de.gz``.
        tgt_path: The target-language file with the translation of each line of ``src_path``.

    Returns:
        One pair per line.

    Raises:
        CorpusError: If a file is missing, unreadable or not UTF-8, or the line counts differ.
    """
    return list(iter_parallel(src_path, tgt_path))


def iter_parallel(src_path: PathLike, tgt_path: PathLike) -> Iterator[tuple[str, str]]:
    """:func:`read_parallel` one pair at a time, reading both files as it goes (a corpus of any size in little
    memory). A misaligned corpus raises the same error, once the shorter file ends. A line that is not UTF-8 is
    reported where the side-by-side reading meets it: the first bad line in line order (the source's, if both files
    are bad on the same line)."""
    src, tgt = _numbered_lines(src_path), _numbered_lines(tgt_path)
    count = 0
    while True:
        s, t = next(src, None), next(tgt, None)
        if s is None or t is None:
            break
        count += 1
        yield s[1].strip(), t[1].strip()
    src_rest = (s is not None) + sum(1 for _ in src)  # the lines left in the longer file (none if aligned)
    tgt_rest = (t is not None) + sum(1 for _ in tgt)
    if src_rest or tgt_rest:
        raise CorpusError(f"misaligned corpus: {src_path} has {count + src_rest} lines but {tgt_path} has "
                          f"{count + tgt_rest}")


def read_tsv(path: PathLike, src_col: int = 0, tgt_col: int = 1) -> list[tuple[str, str]]:
    """Reads one tab-separated file with a source and a target column.

    Blank lines (only whitespace) are skipped; extra columns are ignored. Each cell is stripped of
    surrounding whitespace; an empty cell (``"\\tdog"``) gives an empty sentence, which :func:`filter_pairs`
    drops and counts.

    Args:
        path: The file, e.g. ``train.tsv`` or ``train.tsv.gz``.
        src_col: The 0-based column of the source sentence.
        tgt_col: The 0-based column of the target sentence.

    Returns:
        One pair per non-blank line.

    Raises:
        CorpusError: If the file is missing, unreadable or not UTF-8, or a line has too few columns.
    """
    return list(iter_tsv(path, src_col, tgt_col))


def iter_tsv(path: PathLike, src_col: int = 0, tgt_col: int = 1) -> Iterator[tuple[str, str]]:
    """:func:`read_tsv` one pair at a time, reading the file as it goes."""
    needed = max(src_col, tgt_col) + 1
    for number, line in _numbered_lines(path):
        if not line.strip():
            continue
        columns = line.split("\t")  # split before stripping, so that an empty first or last cell counts
        if len(columns) < needed:
            raise CorpusError(
                f"{path}:{number}: expected at least {needed} tab-separated columns, found {len(columns)}"
            )
        yield columns[src_col].strip(), columns[tgt_col].strip()


def read_jsonl(path: PathLike, src_key: str = "src", tgt_key: str = "tgt") -> list[tuple[str, str]]:
    """Reads a JSON Lines file, one object with a source and a target string a line.

    Blank lines are skipped; other keys are ignored. JSON escapes are decoded, so a sentence may hold a
    newline or a control character (the tokenizer reads them as a space or ``<unk>``), but not a lone
    surrogate such as ``"\\ud800"``, which is no Unicode text.

    Args:
        path: The file, e.g. ``train.jsonl`` or ``train.jsonl.gz``.
        src_key: The key of the source sentence.
        tgt_key: The key of the target sentence.

    Returns:
        One pair per non-blank line, each sentence stripped of surrounding whitespace.

    Raises:
        CorpusError: If the file is missing, unreadable or not UTF-8, or a line is not valid JSON,
            not an object, lacks a key, or holds a non-string value or a lone surrogate.
    """
    return list(iter_jsonl(path, src_key, tgt_key))


def iter_jsonl(path: PathLike, src_key: str = "src", tgt_key: str = "tgt") -> Iterator[tuple[str, str]]:
    """:func:`read_jsonl` one pair at a time, reading the file as it goes."""
    for number, line in _numbered_lines(path):
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError) as err:  # also too deep, or an integer too long for Python
            raise CorpusError(f"{path}:{number}: invalid JSON ({err})") from None
        if not isinstance(record, dict):
            raise CorpusError(f"{path}:{number}: expected a JSON object, found {type(record).__name__}")
        sentences = []
        for key in (src_key, tgt_key):
            if key not in record:
                raise CorpusError(f"{path}:{number}: missing key {key!r}")
            if not isinstance(record[key], str):
                raise CorpusError(f"{path}:{number}: key {key!r} holds {type(record[key]).__name__}, expected a string")
            try:
                record[key].encode("utf-8")
            except UnicodeEncodeError as err:  # an escape such as "\\ud800" that pairs with nothing
                bad = record[key][err.start]
                raise CorpusError(f"{path}:{number}: key {key!r} holds a lone surrogate ({bad!r}), not text") from None
            sentences.append(record[key].strip())
        yield sentences[0], sentences[1]


# -------------------------------------------------------------------------------------- filtering


@dataclass(frozen=True)
class FilterReport:
    """How many pairs :func:`filter_pairs` kept, and why it dropped the others.

    Each dropped pair is counted once, under the first rule it breaks, in the order: empty, too long,
    length ratio. So ``kept + empty + too_long + ratio == total``.
    """

    total: int
    kept: int
    empty: int
    too_long: int
    ratio: int

    def __str__(self) -> str:
        return (
            f"kept {self.kept} of {self.total} pairs; dropped {self.empty} empty, "
            f"{self.too_long} too long, {self.ratio} over the length ratio"
        )


def filter_pairs(
    pairs: Iterable[PairT],
    *,
    max_len: int | None = None,
    max_ratio: float | None = None,
) -> tuple[list[PairT], FilterReport]:
    """Drops pairs with an empty side, an over-long side, or too unequal side lengths.

    Works on anything whose items are ``(source, target)`` pairs of sized sequences. Meant for
    token-id lists (tokenize first, then filter), where lengths count subword tokens as given, without
    the EOS or BOS that :func:`tformer.data.batching.collate` adds: a kept pair can need ``max_len + 1``
    positions in the model.

    Args:
        pairs: ``(source, target)`` pairs, e.g. ``list(zip(src_ids, tgt_ids))``.
        max_len: Drop a pair when either side is longer than this; ``None`` keeps any length.
        max_ratio: Drop a pair when the longer side is more than ``max_ratio`` times the shorter
            (Moses' ``clean-corpus-n`` uses 9); ``None`` applies no ratio limit.

    Returns:
        The kept pairs, in their original order, and a :class:`FilterReport`.

    Raises:
        TformerError: If ``max_len`` < 1 or ``max_ratio`` < 1.
    """
    if max_len is not None and max_len < 1:
        raise TformerError(f"max_len must be at least 1, got {max_len}")
    if max_ratio is not None and max_ratio < 1:
        raise TformerError(f"max_ratio must be at least 1, got {max_ratio}")
    kept: list[PairT] = []
    total = empty = too_long = ratio = 0
    for pair in pairs:
        total += 1
        src_len, tgt_len = len(pair[0]), len(pair[1])
        if src_len == 0 or tgt_len == 0:
            empty += 1
        elif max_len is not None and max(src_len, tgt_len) > max_len:
            too_long += 1
        elif max_ratio is not None and max(src_len, tgt_len) > max_ratio * min(src_len, tgt_len):
            ratio += 1
        else:
            kept.append(pair)
    return kept, FilterReport(total=total, kept=len(kept), empty=empty, too_long=too_long, ratio=ratio)
