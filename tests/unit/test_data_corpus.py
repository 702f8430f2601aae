"""Tests of corpus reading and pair filtering, on small files each test writes itself."""

import gzip
import json

import pytest

from tformer.data.corpus import (
    CorpusError,
    FilterReport,
    filter_pairs,
    iter_jsonl,
    iter_parallel,
    iter_tsv,
    read_jsonl,
    read_parallel,
    read_tsv,
)
from tformer.errors import TformerError


def write(path, text, *, gz=False):
    data = text.encode("utf-8") if isinstance(text, str) else text
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_read_parallel_strips_lines_and_keeps_alignment(tmp_path):
    de = write(tmp_path / "train.de", "Ein Hund läuft.\n  Zwei Männer \r\n\nStraße\n")
    en = write(tmp_path / "train.en", "A dog runs.\nTwo men\nEmpty German line\nStreet")  # no final newline
    assert read_parallel(de, en) == [
        ("Ein Hund läuft.", "A dog runs."),
        ("Zwei Männer", "Two men"),
        ("", "Empty German line"),
        ("Straße", "Street"),
    ]


def test_read_parallel_reads_gzip_transparently(tmp_path):
    de = write(tmp_path / "train.de.gz", "Ein Hund\nZwei Katzen\n", gz=True)
    en = write(tmp_path / "train.en", "A dog\nTwo cats\n")
    assert read_parallel(de, en) == [("Ein Hund", "A dog"), ("Zwei Katzen", "Two cats")]


def test_read_parallel_ignores_a_byte_order_mark(tmp_path):
    de = write(tmp_path / "a.de", "\ufeffHund\n")
    en = write(tmp_path / "a.en", "dog\n")
    assert read_parallel(de, en) == [("Hund", "dog")]


def test_read_parallel_splits_only_at_newlines(tmp_path):
    de = write(tmp_path / "a.de", "eins\u2028zwei\x0cdrei\n")  # characters str.splitlines would split at
    en = write(tmp_path / "a.en", "one two three\n")
    assert len(read_parallel(de, en)) == 1


def test_misaligned_corpus_names_both_files_and_counts(tmp_path):
    de = write(tmp_path / "train.de", "a\nb\nc\n")
    en = write(tmp_path / "train.en.gz", "a\nb\n", gz=True)
    with pytest.raises(CorpusError) as excinfo:
        read_parallel(de, en)
    assert one_line_error(excinfo) == f"misaligned corpus: {de} has 3 lines but {en} has 2"
    assert isinstance(excinfo.value, TformerError)  # the CLI prints it as one line, exit status 2


@pytest.mark.parametrize(("de_lines", "en_lines"), [(3, 2), (2, 3), (0, 1), (5, 5)])
def test_streaming_parallel_reader_gives_the_same_pairs_and_counts(tmp_path, de_lines, en_lines):
    de = write(tmp_path / "s.de", "".join(f"d{i}\n" for i in range(de_lines)))
    en = write(tmp_path / "s.en.gz", "".join(f"e{i}\n" for i in range(en_lines)), gz=True)
    stream = iter_parallel(de, en)
    if de_lines == en_lines:
        assert list(stream) == read_parallel(de, en) == [(f"d{i}", f"e{i}") for i in range(5)]
        return
    with pytest.raises(CorpusError) as excinfo:
        list(stream)
    assert one_line_error(excinfo) == f"misaligned corpus: {de} has {de_lines} lines but {en} has {en_lines}"


def test_streaming_tsv_and_jsonl_readers_give_the_same_pairs(tmp_path):
    tsv = write(tmp_path / "a.tsv", "Hund\tdog\n\n Katze \tcat\textra\n")
    lines = '{"src": "Hund", "tgt": "dog"}\n\n{"tgt": "cat", "src": " Katze"}\n'
    jsonl = write(tmp_path / "a.jsonl.gz", lines, gz=True)
    assert list(iter_tsv(tsv)) == read_tsv(tsv) == [("Hund", "dog"), ("Katze", "cat")]
    assert list(iter_jsonl(jsonl)) == read_jsonl(jsonl) == [("Hund", "dog"), ("Katze", "cat")]


def test_invalid_utf8_names_file_and_line(tmp_path):
    de = write(tmp_path / "bad.de", b"gut\nschlecht \xff\xfe\nauch gut\n")
    en = write(tmp_path / "bad.en", "good\nbad\nalso good\n")
    with pytest.raises(CorpusError) as excinfo:
        read_parallel(de, en)
    assert one_line_error(excinfo).startswith(f"{de}:2: invalid UTF-8")


def test_invalid_utf8_in_gzip_names_file_and_line(tmp_path):
    en = write(tmp_path / "bad.en.gz", b"ok\nok\n\xc3(\n", gz=True)
    with pytest.raises(CorpusError, match=r"bad\.en\.gz:3: invalid UTF-8"):
        read_parallel(en, en)


def test_missing_file_is_named(tmp_path):
    en = write(tmp_path / "train.en", "a\n")
    missing = tmp_path / "train.de"
    with pytest.raises(CorpusError) as excinfo:
        read_parallel(missing, en)
    assert one_line_error(excinfo) == f"corpus file not found: {missing}"


def test_corrupt_gzip_is_a_corpus_error(tmp_path):
    broken = write(tmp_path / "broken.de.gz", gzip.compress(b"Hund\n" * 100)[:-12])  # truncated
    with pytest.raises(CorpusError) as excinfo:
        read_parallel(broken, broken)
    assert str(broken) in one_line_error(excinfo)


def test_read_tsv_columns(tmp_path):
    path = write(tmp_path / "train.tsv", "Hund\tdog\t0.9\n\n Katze \t cat \t0.8\n")
    assert read_tsv(path) == [("Hund", "dog"), ("Katze", "cat")]  # the blank line is skipped
    assert read_tsv(path, src_col=1, tgt_col=2) == [("dog", "0.9"), ("cat", "0.8")]


def test_read_tsv_too_few_columns_names_file_and_line(tmp_path):
    path = write(tmp_path / "train.tsv.gz", "Hund\tdog\nKatze cat\n", gz=True)
    with pytest.raises(CorpusError) as excinfo:
        read_tsv(path)
    assert one_line_error(excinfo) == f"{path}:2: expected at least 2 tab-separated columns, found 1"


def test_read_jsonl(tmp_path):
    records = [{"src": " Hund ", "tgt": "dog", "id": 1}, {"de": "Katze", "en": "cat"}]
    path = write(tmp_path / "train.jsonl", json.dumps(records[0]) + "\n\n")
    assert read_jsonl(path) == [("Hund", "dog")]
    path = write(tmp_path / "other.jsonl", json.dumps(records[1], ensure_ascii=False) + "\n")
    assert read_jsonl(path, src_key="de", tgt_key="en") == [("Katze", "cat")]


@pytest.mark.parametrize(
    ("second_line", "expected"),
    [
        ('{"src": "a", "tgt": ', ":2: invalid JSON"),
        ('["a", "b"]', ":2: expected a JSON object, found list"),
        ('{"src": "a"}', ":2: missing key 'tgt'"),
        ('{"src": "a", "tgt": 5}', ":2: key 'tgt' holds int, expected a string"),
    ],
)
def test_read_jsonl_errors_name_file_and_line(tmp_path, second_line, expected):
    path = write(tmp_path / "train.jsonl", '{"src": "x", "tgt": "y"}\n' + second_line + "\n")
    with pytest.raises(CorpusError) as excinfo:
        read_jsonl(path)
    assert one_line_error(excinfo).startswith(f"{path}{expected}")


def test_filter_pairs_counts_each_reason(tmp_path):
    pairs = [
        ([5, 6], [7]),  # kept
        ([], [7]),  # empty source
        ([5], []),  # empty target
        ([5] * 5, [7, 8]),  # source too long (max_len 4)
        ([5, 6, 7], [7] * 4),  # kept: length 4 is allowed
        ([5], [7, 8, 9, 10]),  # ratio 4 > 3
        ([], [7] * 9),  # empty wins over too long
    ]
    kept, report = filter_pairs(pairs, max_len=4, max_ratio=3)
    assert kept == [([5, 6], [7]), ([5, 6, 7], [7] * 4)]
    assert report == FilterReport(total=7, kept=2, empty=3, too_long=1, ratio=1)
    text = str(report)
    assert "\n" not in text
    assert "kept 2 of 7" in text and "3 empty" in text and "1 too long" in text


def test_filter_pairs_without_limits_drops_only_empty_pairs_read_from_files(tmp_path):
    de = write(tmp_path / "train.de", "Hund\n\nKatze\nsehr langer Satz mit vielen Wörtern\n")
    en = write(tmp_path / "train.en", "dog\ncat\n\nvery long sentence with many words\n")
    pairs = [(src.split(), tgt.split()) for src, tgt in read_parallel(de, en)]
    kept, report = filter_pairs(pairs)
    assert [(" ".join(s), " ".join(t)) for s, t in kept] == [
        ("Hund", "dog"),
        ("sehr langer Satz mit vielen Wörtern", "very long sentence with many words"),
    ]
    assert (report.total, report.kept, report.empty, report.too_long, report.ratio) == (4, 2, 2, 0, 0)


def test_filter_pairs_rejects_bad_limits():
    with pytest.raises(ValueError, match="max_len"):
        filter_pairs([], max_len=0)
    with pytest.raises(ValueError, match="max_ratio"):
        filter_pairs([], max_ratio=0.5)
