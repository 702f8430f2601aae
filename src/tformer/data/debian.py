"""Debian's package descriptions as a summarization corpus: the long description in, the synopsis out.

Every Debian package has a description: a one-line synopsis ("Real-time strategy game of ancient warfare") and a
long description of one or more paragraphs. ``apt-get update -o Acquire::Languages=en`` leaves them in
``/var/lib/apt/lists/*_i18n_Translation-en.lz4``, deb822 stanzas::

    Package: 0ad-data
    Description-md5: 26581e685027d5ae84824362a4ba59ee
    Description-en: Real-time strategy game of ancient warfare (data files)
     0 A.D. (pronounced "zero ey-dee") is a free, open-source, cross-platform
     real-time strategy (RTS) game of ancient warfare.
     .
     This package contains the main data files required by 0 A.D.

(continuation lines start with a space; a line " ." is a paragraph break). The ``*_Packages.lz4`` lists beside them
name each binary package's source package (``Source: 0ad-data``, maybe with a version in parentheses; no
``Source`` field = the package is its own source). Both are lz4 files, decompressed with the ``lz4`` command
(``lz4 -dc``; Debian's package ``lz4``): the lists exist only on Debian-like systems, where that command is one
``apt-get install lz4`` away, so no Python dependency is added. Uncompressed lists are read as they are.

:func:`build` makes the corpus:

* **whitespace**: each line is stripped and the lines of a paragraph joined by one space; paragraphs are joined by
  one space too (a source is one line of a text file, and ROUGE ignores layout; the model sees the first paragraph
  first either way). The synopsis is kept as written (its whitespace normalised).
* **duplicates**: one example per ``Description-md5`` (the same description in the main, security and updates
  lists), and one per identical long description (``libfoo1`` and ``libfoo-dev`` often share the long text under
  different synopses: the first package by name keeps it, as the task has no way to tell them apart).
* **trivial** long descriptions are dropped: fewer than ``min_words`` words (default 5), or equal to the synopsis.
* **split by source package**: ``sha256(seed, source)`` puts every binary package of one source in one split
  (``libfoo1``, ``libfoo-dev`` and ``libfoo-doc``, whose descriptions are near-copies, never straddle train and
  test); ``valid`` and ``test`` get about ``valid`` and ``test`` of the sources (default 5% each), train the
  rest. A package absent from the Packages lists (another architecture's) is its own source. Within a split the
  examples are in the order of a seeded hash of the package name, so that the first N of valid are a sample.

Layout of ``root`` (:data:`DEBIAN_PATH`, made by :data:`DEBIAN_COMMAND`, which runs ``python -m tformer.data.debian
build data/debian``)::

    {split}.src   the long description, one a line
    {split}.tgt   its synopsis
    {split}.ids   the package and its source, tab-separated
    README.txt    how it was built: the lists read, the settings, what was dropped, the counts; the licence note

The descriptions are Debian's, copyright of their packages' authors and maintainers (each package's licence,
/usr/share/doc/PACKAGE/copyright); the corpus is for research and is never committed.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tformer.data.build_cli import run_build
from tformer.errors import TformerError, first_line
from tformer.io.files import atomic_directory

__all__ = ["APT_LISTS", "DEBIAN_COMMAND", "DEBIAN_PATH", "SPLITS", "DebianConfig", "Description", "Example",
           "build", "examples", "normalize", "read_descriptions", "read_list", "read_sources", "split_of",
           "split_examples"]

DEBIAN_PATH = "data/debian"
DEBIAN_COMMAND = "./dev data debian"  # what makes DEBIAN_PATH, under the repository
APT_LISTS = "/var/lib/apt/lists"
TRANSLATIONS, PACKAGES = "*_i18n_Translation-en*", "*_Packages*"
SPLITS = ("train", "valid", "test")

_SPACE = re.compile(r"\s+")
_VERSION = re.compile(r"\s*\(.*\)\s*$")  # "Source: 2048-qt (0.1.6-2)": the source's version


@dataclass(frozen=True)
class Description:
    """One stanza of a Translation-en list.

    Attributes:
        package: the binary package.
        md5: its Description-md5 (of the description as Debian holds it).
        synopsis: the first line of Description-en.
        paragraphs: the long description's paragraphs, each one line (whitespace normalised).
    """

    package: str
    md5: str
    synopsis: str
    paragraphs: tuple[str, ...]

    @property
    def long(self) -> str:
        """The long description as one line: the paragraphs joined by a space."""
        return " ".join(self.paragraphs)


@dataclass(frozen=True)
class Example:
    """One long description and its synopsis, with the package and source it came from."""

    package: str
    source: str
    text: str  # the long description (the model's input)
    summary: str  # the synopsis (the reference)


@dataclass(frozen=True)
class DebianConfig:
    """How the corpus is made.

    Attributes:
        seed: salts the hash that splits the sources (and the order within a split).
        valid, test: the fractions of source packages in those splits (train gets the rest).
        min_words: long descriptions with fewer words are dropped as trivial.
    """

    seed: int = 1
    valid: float = 0.05
    test: float = 0.05
    min_words: int = 5

    def __post_init__(self) -> None:
        if not (0 < self.valid and 0 < self.test and self.valid + self.test < 1):
            raise TformerError(f"valid and test must be fractions > 0 with valid + test < 1, got {self.valid}, "
                               f"{self.test}")
        if self.min_words < 1:
            raise TformerError(f"min_words must be >= 1, got {self.min_words}")


@dataclass
class BuildReport:
    """What :func:`examples` kept and dropped (counts of Translation-en stanzas)."""

    stanzas: int = 0
    same_md5: int = 0  # a Description-md5 seen before
    same_long: int = 0  # a long description seen before (under another synopsis or package)
    trivial: int = 0  # fewer than min_words words, or the synopsis itself
    kept: int = 0
    lists: list[str] = field(default_factory=list)


def normalize(text: str) -> str:
    """Runs of whitespace -> one space, ends stripped."""
    return _SPACE.sub(" ", text).strip()


def read_list(path: str | os.PathLike[str]) -> list[str]:
    """The lines of an apt list: ``*.lz4`` through ``lz4 -dc``, anything else as plain text (UTF-8).

    Raises:
        TformerError: the file is missing, the ``lz4`` command is missing, or it fails (one line).
    """
    path = Path(path)
    if not path.is_file():
        raise TformerError(f"apt list not found: {path}")
    if path.suffix == ".lz4":
        lz4 = shutil.which("lz4")
        if lz4 is None:
            raise TformerError(f"reading {path.name} needs the lz4 command: sudo apt-get install lz4")
        done = subprocess.run([lz4, "-dc", str(path)], capture_output=True, check=False)
        if done.returncode != 0:
            raise TformerError(f"lz4 -dc {path} failed: {first_line(Exception(done.stderr.decode(errors='replace')))}")
        data = done.stdout
    else:
        data = path.read_bytes()
    return data.decode("utf-8", errors="replace").splitlines()


def _stanzas(lines: Iterable[str]) -> Iterator[list[str]]:
    """The stanzas of deb822 lines (separated by blank lines), each a list of its lines."""
    stanza: list[str] = []
    for line in lines:
        if line.strip():
            stanza.append(line)
        elif stanza:
            yield stanza
            stanza = []
    if stanza:
        yield stanza


def _field(stanza: list[str], name: str) -> str | None:
    prefix = f"{name}:"
    for line in stanza:
        if line.startswith(prefix):
            return line[len(prefix):].strip()
    return None


def read_descriptions(lines: Iterable[str]) -> Iterator[Description]:
    """The stanzas of a Translation-en list that have a Package and a Description-en, in order."""
    for stanza in _stanzas(lines):
        package, md5 = _field(stanza, "Package"), _field(stanza, "Description-md5") or ""
        start = next((i for i, line in enumerate(stanza) if line.startswith("Description-en:")), None)
        if not package or start is None:
            continue
        paragraphs: list[str] = []
        current: list[str] = []
        for line in stanza[start + 1:]:
            if not line.startswith((" ", "\t")):
                break  # the next field
            if line.strip() == ".":
                paragraphs.append(" ".join(current))
                current = []
            else:
                current.append(line.strip())
        paragraphs.append(" ".join(current))
        kept = tuple(p for p in (normalize(p) for p in paragraphs) if p)
        yield Description(package, md5, normalize(stanza[start][len("Description-en:"):]), kept)


def read_sources(lines: Iterable[str]) -> dict[str, str]:
    """Package -> source package from a Packages list (the Source field without its version; absent = itself)."""
    sources: dict[str, str] = {}
    package = source = None
    for line in [*lines, ""]:
        if not line.strip():
            if package:
                sources.setdefault(package, source or package)
            package = source = None
        elif line.startswith("Package:"):
            package = line[len("Package:"):].strip()
        elif line.startswith("Source:"):
            source = _VERSION.sub("", line[len("Source:"):].strip())
    return sources


def examples(descriptions: Iterable[Description], sources: dict[str, str], min_words: int = 5
             ) -> tuple[list[Example], BuildReport]:
    """Deduplicated, non-trivial examples (see the module docstring), in the order of package name then md5, so
    that the result does not depend on the order of the lists."""
    report = BuildReport()
    seen_md5: set[str] = set()
    seen_long: set[str] = set()
    out: list[Example] = []
    for d in sorted(descriptions, key=lambda d: (d.package, d.md5, d.synopsis, d.paragraphs)):
        report.stanzas += 1
        long = d.long
        if d.md5 and d.md5 in seen_md5:
            report.same_md5 += 1
            continue
        seen_md5.add(d.md5)
        if long in seen_long:
            report.same_long += 1
            continue
        seen_long.add(long)
        if len(long.split()) < min_words or long.casefold() == d.synopsis.casefold() or not d.synopsis:
            report.trivial += 1
            continue
        out.append(Example(d.package, sources.get(d.package, d.package), long, d.synopsis))
    report.kept = len(out)
    return out, report


def _unit(seed: int, key: str) -> float:
    """A number in [0, 1) from sha256(seed, key): the same on every machine and Python."""
    digest = hashlib.sha256(f"{seed}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(source: str, cfg: DebianConfig) -> str:
    """The split of every package of ``source``: test, valid or train, by a seeded hash of the source's name."""
    u = _unit(cfg.seed, source)
    return "test" if u < cfg.test else "valid" if u < cfg.test + cfg.valid else "train"


def split_examples(rows: Sequence[Example], cfg: DebianConfig) -> dict[str, list[Example]]:
    """The examples of each split (by source, :func:`split_of`), each in the order of a seeded hash of the package."""
    splits: dict[str, list[Example]] = {name: [] for name in SPLITS}
    for e in rows:
        splits[split_of(e.source, cfg)].append(e)
    order = f"order-{cfg.seed}"
    return {name: sorted(r, key=lambda e: (_unit(0, order + e.package), e.package)) for name, r in splits.items()}


def summary(splits: dict[str, list[Example]]) -> str:
    """A table of examples, sources and mean words (long description, synopsis) per split."""
    rows = [f"{'split':<6} {'examples':>8} {'sources':>7} {'words in':>8} {'words out':>9}"]
    for name in SPLITS:
        r = splits.get(name, [])
        n = max(len(r), 1)
        words_in, words_out = sum(len(e.text.split()) for e in r) / n, sum(len(e.summary.split()) for e in r) / n
        rows.append(f"{name:<6} {len(r):>8,} {len({e.source for e in r}):>7,} {words_in:>8.1f} {words_out:>9.1f}")
    return "\n".join(rows)


def _readme(cfg: DebianConfig, report: BuildReport, splits: dict[str, list[Example]]) -> str:
    settings = ", ".join(f"{k}={v}" for k, v in asdict(cfg).items())
    lists = "\n".join(f"  {name}" for name in report.lists)
    return (f"Debian's package descriptions as summarization pairs (long description -> synopsis), made by\n"
            f"`{DEBIAN_COMMAND}` (python -m tformer.data.debian build); see src/tformer/data/debian.py.\n\n"
            f"Lists read (apt-get update -o Acquire::Languages=en):\n{lists}\n"
            f"Settings: {settings}\n"
            f"Stanzas {report.stanzas:,}; dropped {report.same_md5:,} repeated Description-md5, {report.same_long:,} "
            f"repeated long descriptions,\n{report.trivial:,} trivial ones (fewer than {cfg.min_words} words, or the "
            f"synopsis itself); kept {report.kept:,}.\n"
            f"Split by source package (sha256 of seed and source name); paragraphs joined by a space.\n"
            f"Files: {{split}}.src (long description), {{split}}.tgt (synopsis), {{split}}.ids (package, source)\n\n"
            f"{summary(splits)}\n\n"
            f"Licence: the descriptions are Debian's package descriptions, copyright of the packages' authors and\n"
            f"maintainers under each package's licence (/usr/share/doc/PACKAGE/copyright). For research; do not\n"
            f"redistribute this corpus.\n")


def build(root: str | os.PathLike[str], cfg: DebianConfig | None = None, *, lists: str | os.PathLike[str] = APT_LISTS,
          force: bool = False) -> dict[str, list[Example]] | None:
    """Read the Translation-en and Packages lists under ``lists``, make the examples, split them and write ``root``
    atomically. Returns the splits, or None when ``root`` exists and not ``force`` (nothing is done).

    Raises:
        TformerError: no Translation-en list under ``lists`` (with the apt-get command that makes them), or an
            unreadable one (one line).
    """
    cfg = DebianConfig() if cfg is None else cfg
    target = Path(root)
    if target.exists() and not force:
        return None
    translations = sorted(glob.glob(os.path.join(lists, TRANSLATIONS)))
    if not translations:
        raise TformerError(f"no *_i18n_Translation-en lists in {lists}: run sudo apt-get update -o "
                           "Acquire::Languages=en")
    sources: dict[str, str] = {}
    for path in sorted(glob.glob(os.path.join(lists, PACKAGES))):
        for package, source in read_sources(read_list(path)).items():
            sources.setdefault(package, source)
    descriptions = [d for path in translations for d in read_descriptions(read_list(path))]
    rows, report = examples(descriptions, sources, cfg.min_words)
    report.lists = [os.path.basename(p) for p in translations]
    splits = split_examples(rows, cfg)
    with atomic_directory(target) as tmp:
        for name, r in splits.items():
            for suffix, lines in (("src", [e.text for e in r]), ("tgt", [e.summary for e in r]),
                                  ("ids", [f"{e.package}\t{e.source}" for e in r])):
                (tmp / f"{name}.{suffix}").write_text("".join(f"{x}\n" for x in lines), encoding="utf-8")
        (tmp / "README.txt").write_text(_readme(cfg, report, splits), encoding="utf-8")
    return splits


def main(argv: Sequence[str] | None = None) -> int:
    """``build [ROOT] [--lists DIR] [--seed S] [--valid F] [--test F] [--min-words N] [--force]``; exit 2 on errors."""
    parser = argparse.ArgumentParser(prog="python -m tformer.data.debian", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("build", help="write the splits under ROOT (atomically)")
    make.add_argument("root", nargs="?", default=DEBIAN_PATH)
    make.add_argument("--lists", default=APT_LISTS, help=f"where apt's lists are (default {APT_LISTS})")
    make.add_argument("--force", action="store_true", help="rebuild ROOT when it exists")
    d = DebianConfig()
    make.add_argument("--seed", type=int, default=d.seed, help=f"the split's hash salt (default {d.seed})")
    make.add_argument("--valid", type=float, default=d.valid, help=f"fraction of sources in valid (default {d.valid})")
    make.add_argument("--test", type=float, default=d.test, help=f"fraction of sources in test (default {d.test})")
    make.add_argument("--min-words", type=int, default=d.min_words,
                      help=f"drop shorter long descriptions (default {d.min_words})")
    args = parser.parse_args(argv)

    def build_root():
        cfg = DebianConfig(seed=args.seed, valid=args.valid, test=args.test, min_words=args.min_words)
        return build(args.root, cfg, lists=args.lists, force=args.force)

    def report(splits: dict[str, list[Example]]) -> str:
        return f"wrote {args.root}\n{summary(splits)}\n{json.dumps({name: len(r) for name, r in splits.items()})}"

    return run_build(build_root, args.root, report)


if __name__ == "__main__":
    sys.exit(main())
