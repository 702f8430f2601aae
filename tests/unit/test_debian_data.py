"""tformer.data.debian on small apt lists the tests write: stanza parsing, continuation lines and paragraph
breaks, the source package of each binary, duplicates and trivial descriptions dropped, the split by source, and
a build that depends only on the data and the seed."""

import shutil
import subprocess
from pathlib import Path

import pytest

from tformer.data import debian
from tformer.data.debian import DebianConfig, build, examples, read_descriptions, read_sources, split_of
from tformer.errors import TformerError

TRANSLATION = """\
Package: foo
Description-md5: 00000000000000000000000000000001
Description-en: fast frobnicator for widgets
 Foo frobnicates widgets quickly
 and  reliably.
 .
 It also   has a second paragraph.

Package: libfoo1
Description-md5: 00000000000000000000000000000002
Description-en: fast frobnicator - shared library
 The shared library of the foo frobnicator, which frobnicates widgets.

Package: libfoo-dev
Description-md5: 00000000000000000000000000000003
Description-en: fast frobnicator - development files
 The shared library of the foo frobnicator, which frobnicates widgets.

Package: bar
Description-md5: 00000000000000000000000000000004
Description-en: a bar
 Bar.

Package: baz
Description-md5: 00000000000000000000000000000005
Description-en: baz does things
 baz does things
"""

# the same description again (as the security list repeats the main one), and one of another package
TRANSLATION_2 = """\
Package: foo
Description-md5: 00000000000000000000000000000001
Description-en: fast frobnicator for widgets
 Foo frobnicates widgets quickly and reliably.
 .
 It also has a second paragraph.

Package: qux
Description-md5: 00000000000000000000000000000006
Description-en: quick unified extractor
 Qux extracts archives of every known kind into one directory tree.
"""

PACKAGES = """\
Package: foo
Version: 1.0-1
Architecture: amd64

Package: libfoo1
Source: foo (1.0-1)
Version: 1.0-1+b1

Package: libfoo-dev
Source: foo
Version: 1.0-1
"""


def descriptions():
    return list(read_descriptions(TRANSLATION.splitlines()))


def test_stanzas_continuation_lines_and_paragraph_breaks():
    d = {x.package: x for x in descriptions()}
    assert list(d) == ["foo", "libfoo1", "libfoo-dev", "bar", "baz"]
    assert d["foo"].synopsis == "fast frobnicator for widgets"
    assert d["foo"].md5 == "00000000000000000000000000000001"
    assert d["foo"].paragraphs == ("Foo frobnicates widgets quickly and reliably.", "It also has a second paragraph.")
    assert d["foo"].long == "Foo frobnicates widgets quickly and reliably. It also has a second paragraph."


def test_sources_strip_the_version_and_default_to_the_package():
    assert read_sources(PACKAGES.splitlines()) == {"foo": "foo", "libfoo1": "foo", "libfoo-dev": "foo"}


def test_duplicates_and_trivial_descriptions_are_dropped():
    more = list(read_descriptions(TRANSLATION_2.splitlines()))
    rows, report = examples(descriptions() + more, read_sources(PACKAGES.splitlines()))
    by_package = {e.package: e for e in rows}
    # foo's repeat (same md5) goes; libfoo1 and libfoo-dev share a long text: the first by name (libfoo-dev) stays;
    # bar is too short, baz only repeats its synopsis
    assert sorted(by_package) == ["foo", "libfoo-dev", "qux"]
    assert (report.stanzas, report.same_md5, report.same_long, report.trivial, report.kept) == (7, 1, 1, 2, 3)
    assert by_package["libfoo-dev"].source == "foo"
    assert by_package["qux"].source == "qux"  # not in the Packages list: its own source
    assert by_package["foo"].summary == "fast frobnicator for widgets"


def test_examples_do_not_depend_on_the_order_of_the_lists():
    more = list(read_descriptions(TRANSLATION_2.splitlines()))
    sources = read_sources(PACKAGES.splitlines())
    assert examples(more + descriptions(), sources)[0] == examples(descriptions() + more, sources)[0]


def test_every_package_of_a_source_lands_in_one_split():
    cfg = DebianConfig(seed=3, valid=0.2, test=0.2)
    rows = [debian.Example(f"pkg{i}-{j}", f"src{i}", f"text {i} {j} a b c d", f"sum {i}") for i in range(300)
            for j in range(3)]
    splits = debian.split_examples(rows, cfg)
    where = {e.source: name for name, r in splits.items() for e in r}
    for name, r in splits.items():
        assert all(where[e.source] == name for e in r)
    assert all(where[f"src{i}"] == split_of(f"src{i}", cfg) for i in range(300))
    counts = {name: len({e.source for e in r}) for name, r in splits.items()}
    assert 30 < counts["valid"] < 90 and 30 < counts["test"] < 90  # about 20% of 300 sources each
    assert split_of("src1", cfg) == split_of("src1", DebianConfig(seed=3, valid=0.2, test=0.2))


def write_lists(root: Path) -> Path:
    lists = root / "lists"
    lists.mkdir()
    (lists / "x_main_i18n_Translation-en").write_text(TRANSLATION)
    (lists / "x-security_main_i18n_Translation-en").write_text(TRANSLATION_2)
    (lists / "x_main_binary-amd64_Packages").write_text(PACKAGES)
    return lists


def test_build_writes_aligned_files_and_is_deterministic(tmp_path):
    lists = write_lists(tmp_path)
    cfg = DebianConfig(seed=1, valid=0.3, test=0.3)
    splits = build(tmp_path / "a", cfg, lists=lists)
    build(tmp_path / "b", cfg, lists=lists)
    assert sum(len(r) for r in splits.values()) == 3
    for name in debian.SPLITS:
        src, tgt, ids = (tmp_path / "a" / f"{name}.{s}" for s in ("src", "tgt", "ids"))
        assert len(src.read_text().splitlines()) == len(tgt.read_text().splitlines()) == len(splits[name])
        assert [line.split("\t")[0] for line in ids.read_text().splitlines()] == [e.package for e in splits[name]]
        for suffix in ("src", "tgt", "ids"):
            a, b = (tmp_path / run / f"{name}.{suffix}" for run in ("a", "b"))
            assert a.read_bytes() == b.read_bytes()
    readme = (tmp_path / "a" / "README.txt").read_text()
    assert "copyright" in readme and "kept 3" in readme
    assert build(tmp_path / "a", cfg, lists=lists) is None  # exists: nothing done without force


def test_missing_lists_and_missing_lz4_are_one_line_errors(tmp_path, monkeypatch):
    with pytest.raises(TformerError, match="apt-get update -o Acquire::Languages=en"):
        build(tmp_path / "out", lists=tmp_path)
    path = tmp_path / "x_i18n_Translation-en.lz4"
    path.write_bytes(b"")
    monkeypatch.setattr(debian.shutil, "which", lambda name: None)
    with pytest.raises(TformerError, match="apt-get install lz4"):
        debian.read_list(path)


@pytest.mark.skipif(shutil.which("lz4") is None, reason="needs the lz4 command")
def test_lz4_lists_read_as_the_plain_ones(tmp_path):
    plain = tmp_path / "t_i18n_Translation-en"
    plain.write_text(TRANSLATION)
    subprocess.run(["lz4", "-q", str(plain), str(plain) + ".lz4"], check=True)
    assert debian.read_list(str(plain) + ".lz4") == debian.read_list(plain)
