"""Hostile input (issue 7), fuzzed: corpora, text, stdin and configs either behave as documented or fail
with one clear line (a TformerError), never with another exception.

The strategies mix valid material with the hazards of the issue: misaligned files, empty and whitespace-only
lines, very long lines, invalid UTF-8, ``\\r\\n`` and lone ``\\r``, control characters, scripts the tokenizer
never saw, byte-order marks, gzip; configs with unknown keys, wrong types, NaN and infinities, huge and
negative numbers, d_model not divisible by num_heads. ``test_strategies_produce_every_hazard`` checks that
they really do, so that a property cannot pass by never meeting the hazard.
"""

import dataclasses
import gzip
import io
import json
import math
import re
import sys
from functools import cache
from unittest import mock

import pytest
import torch
import yaml
from hypothesis import Phase, event, example, find, given, settings
from hypothesis import strategies as st

from tformer.cli.translate import read_input_lines
from tformer.config import ConfigError
from tformer.data.corpus import CorpusError, read_jsonl, read_parallel, read_tsv
from tformer.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, TokenizerError
from tformer.data.vocabularies import Vocabularies
from tformer.errors import TformerError
from tformer.models.transformer.config import TransformerConfig
from tformer.tasks import load_run_config, parse_run_config
from tformer.training.config import DataConfig, RunConfig, TrainConfig


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """One folder for the whole module: each example overwrites the files it writes."""
    return tmp_path_factory.mktemp("hostile")


def one_line(err: BaseException) -> str:
    message = str(err)
    assert message and "\n" not in message and "\r" not in message, repr(message)
    return message


# ---------------------------------------------------------------------------------------------- corpora

BOM = b"\xef\xbb\xbf"
INVALID_UTF8 = [b"\xff", b"\xfe\xff", b"\x80", b"\xc3(", b"\xe2\x82", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"]
WHITESPACE = " \t\x0b\x0c\x1c\x1f\x85\xa0\u1680\u2000\u2028\u2029\u3000"  # all removed by str.strip()
LONG_PIECES = ["Hund ", "日本", "x", "\u0301"]  # a combining mark on its own, too


def _text(**kw) -> st.SearchStrategy[str]:
    """Any text without \\n (so one line): every script, control characters, lone \\r, no surrogates."""
    return st.text(st.characters(codec="utf-8", exclude_characters="\n"), **kw)


_invalid_line = st.builds(lambda a, bad, b: a.encode() + bad + b.encode(), _text(max_size=4),
                          st.sampled_from(INVALID_UTF8), _text(max_size=4))
_long_line = st.sampled_from(LONG_PIECES).map(lambda piece: (piece * (100_000 // len(piece))).encode())  # 100k chars
_plain_lines = st.one_of(
    _text(max_size=30).map(str.encode),  # any script, control characters, lone \r, tabs
    st.just(b""),  # empty
    st.text(WHITESPACE, min_size=1, max_size=5).map(str.encode),  # whitespace only
    st.sampled_from(["Ein Hund läuft.", "A dog runs.", "\x1b[31mrot\x1b[0m", "a\rb", "a\r", "\x00\x07"]).map(
        str.encode),
)
_tsv_lines = st.one_of(
    st.lists(_text(max_size=8).filter(lambda c: "\t" not in c), max_size=4).map(lambda cs: "\t".join(cs).encode()),
    _plain_lines,
)
_records = st.fixed_dictionaries({"src": _text(max_size=12), "tgt": _text(max_size=12)},
                                 optional={"id": st.integers(), "src2": st.none()})
_json_records = st.builds(lambda r, ascii: json.dumps(r, ensure_ascii=ascii).encode(), _records, st.booleans())
_jsonl_lines = st.one_of(
    _json_records,
    _json_records,
    st.sampled_from([
        '{"src": "a"}', '["a", "b"]', '{"src": 1, "tgt": "b"}', '{"src": "a", "tgt": ', "NaN", "{}",
        '{"src": "\\ud800", "tgt": "b"}', '{"src": "a", "tgt": "\\udfff"}',  # escapes of lone surrogates
        '{"src": "a\\u0000b", "tgt": "\\r\\n"}', '{"src": "x", "tgt": "y"} tail', '{"src": "x", "tgt": null}',
        "[" * 50_000, '{"src": ' + "1" * 5000 + ', "tgt": "b"}',  # too deep; an int too long for Python
    ]).map(str.encode),
    _plain_lines,
)


@st.composite
def files(draw, lines=_plain_lines, max_lines=6):
    """``(bytes, gzipped)`` of a corpus file: lines joined by \\n or \\r\\n, the final newline optional,
    a quarter of the files with a line of invalid UTF-8, some with a BOM or a very long line; or any bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=200)), draw(st.booleans())
    body = draw(st.lists(lines, max_size=max_lines))
    if draw(st.integers(0, 9)) == 0:
        body.insert(draw(st.integers(0, len(body))), draw(_long_line))
    if draw(st.integers(0, 3)) == 0:
        body.insert(draw(st.integers(0, len(body))), draw(_invalid_line))
    ends = [draw(st.sampled_from([b"\n", b"\r\n"])) for _ in body]
    data = b"".join(line + end for line, end in zip(body, ends, strict=True))
    if body and draw(st.booleans()):
        data = data[: -len(ends[-1])]  # no newline at the end
    if draw(st.integers(0, 4)) == 0:
        data = BOM + data
    return data, draw(st.integers(0, 3)) == 0


def write_file(path, data: bytes, gz: bool):
    path = path.with_name(path.name + ".gz") if gz else path
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def decoded_lines(data: bytes):
    """The documented line split: at \\n only; a final \\n ends the last line; \\r before it is dropped, a
    lone \\r stays; a BOM opening the file is dropped. Yields ``(number, text)``, text None if not UTF-8."""
    raw = data.split(b"\n")
    if raw[-1] == b"":
        raw.pop()
    for n, line in enumerate(raw, start=1):
        try:
            text = line.decode("utf-8").removesuffix("\r")
        except UnicodeDecodeError:
            yield n, None
            return
        yield n, text.removeprefix("\ufeff") if n == 1 else text


def expected_lines(data: bytes) -> list[str] | int:
    """Each line stripped, or the number of the first line that is not UTF-8."""
    lines = []
    for n, text in decoded_lines(data):
        if text is None:
            return n
        lines.append(text.strip())
    return lines


def expected_tsv(data: bytes) -> list[tuple[str, str]] | tuple[int, str]:
    """Blank lines skipped, cells split at tabs and stripped (an empty cell is an empty sentence);
    or ``(line, message fragment)`` of the first bad line."""
    pairs = []
    for n, text in decoded_lines(data):
        if text is None:
            return n, "invalid UTF-8"
        if not text.strip():
            continue
        cells = text.split("\t")
        if len(cells) < 2:
            return n, f"expected at least 2 tab-separated columns, found {len(cells)}"
        pairs.append((cells[0].strip(), cells[1].strip()))
    return pairs


def expected_jsonl(data: bytes) -> list[tuple[str, str]] | tuple[int, str]:
    pairs = []
    for n, text in decoded_lines(data):
        if text is None:
            return n, "invalid UTF-8"
        if not text.strip():
            continue
        try:
            record = json.loads(text.strip())
        except (ValueError, RecursionError):
            return n, "invalid JSON"
        if not isinstance(record, dict):
            return n, "expected a JSON object"
        for key in ("src", "tgt"):
            if key not in record:
                return n, f"missing key {key!r}"
            if not isinstance(record[key], str):
                return n, f"key {key!r} holds"
            if not is_unicode(record[key]):
                return n, f"key {key!r} holds a lone surrogate"
        pairs.append((record["src"].strip(), record["tgt"].strip()))
    return pairs


def is_unicode(text: str) -> bool:
    """True unless ``text`` holds a lone surrogate (which no UTF-8 file and no tokenizer can hold)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_sentences(pairs):
    for pair in pairs:
        for s in pair:
            assert isinstance(s, str) and "\n" not in s and s == s.strip() and is_unicode(s), repr(s)


def hazards(data: bytes) -> None:
    """Labels for Hypothesis' statistics (pytest --hypothesis-show-statistics)."""
    for name, hit in [("invalid UTF-8", isinstance(expected_lines(data), int)), ("lone \\r", b"\r" in
                      data.replace(b"\r\n", b"")), ("\\r\\n", b"\r\n" in data), ("BOM", data.startswith(BOM)),
                      ("100k line", len(data) >= 100_000), ("empty line", b"\n\n" in data)]:
        if hit:
            event(name)


@settings(max_examples=120)
@given(src=files(), tgt=files())
@example(src=(b"a\nb\n", False), tgt=(b"a\n", True))  # misaligned, one side gzipped
@example(src=(b"a\r\nb\rc\n\n  \n", False), tgt=(BOM + b"1\n2\n3\n4", False))  # lone \r kept, empty lines kept
@example(src=(b"ok\n\xed\xa0\x80\n", False), tgt=(b"1\n2\n", False))  # an encoded surrogate is not UTF-8
def test_read_parallel_gives_the_documented_pairs_or_one_line(workdir, src, tgt):
    src_path, tgt_path = write_file(workdir / "p.src", *src), write_file(workdir / "p.tgt", *tgt)
    want_src, want_tgt = expected_lines(src[0]), expected_lines(tgt[0])
    hazards(src[0])
    if isinstance(want_src, int) or isinstance(want_tgt, int):
        # the files are read side by side: the first bad line in line order, the source's on the same line
        sides = ((want_src, 0, src_path), (want_tgt, 1, tgt_path))
        n, _, path = min(side for side in sides if isinstance(side[0], int))
        with pytest.raises(CorpusError) as e:
            read_parallel(src_path, tgt_path)
        assert one_line(e.value).startswith(f"{path}:{n}: invalid UTF-8")
    elif len(want_src) != len(want_tgt):
        event("misaligned")
        with pytest.raises(CorpusError) as e:
            read_parallel(src_path, tgt_path)
        assert one_line(e.value) == (f"misaligned corpus: {src_path} has {len(want_src)} lines "
                                     f"but {tgt_path} has {len(want_tgt)}")
    else:
        event("aligned")
        pairs = read_parallel(src_path, tgt_path)
        assert pairs == list(zip(want_src, want_tgt, strict=True))  # empty lines kept, for the alignment
        check_sentences(pairs)


@settings(max_examples=100)
@given(tsv=files(_tsv_lines))
@example(tsv=(b"\tdog\nHund\t\n \t \nKatze\tcat\t0.9\r\n", False))  # empty cells are empty sentences
@example(tsv=(b"Hund\tdog\nKatze cat\n", True))
def test_read_tsv_gives_the_documented_pairs_or_one_line(workdir, tsv):
    path = write_file(workdir / "t.tsv", *tsv)
    want = expected_tsv(tsv[0])
    if isinstance(want, tuple):
        event(want[1].split(",")[0])
        with pytest.raises(CorpusError) as e:
            read_tsv(path)
        assert one_line(e.value).startswith(f"{path}:{want[0]}: {want[1]}")
    else:
        pairs = read_tsv(path)
        assert pairs == want
        check_sentences(pairs)


@settings(max_examples=100)
@given(jsonl=files(_jsonl_lines))
@example(jsonl=(b'{"src": "\\ud800", "tgt": "b"}\n', False))
@example(jsonl=(b"[" * 100_000 + b"\n", False))
@example(jsonl=(b'{"src": ' + b"9" * 5000 + b', "tgt": "b"}\n', False))
@example(jsonl=(b'{"src": " Hund\\r ", "tgt": "dog\\u2028"}\n\n', True))
def test_read_jsonl_gives_the_documented_pairs_or_one_line(workdir, jsonl):
    path = write_file(workdir / "j.jsonl", *jsonl)
    want = expected_jsonl(jsonl[0])
    if isinstance(want, tuple):
        event(want[1])
        with pytest.raises(CorpusError) as e:
            read_jsonl(path)
        assert one_line(e.value).startswith(f"{path}:{want[0]}: {want[1]}")
    else:
        pairs = read_jsonl(path)
        assert pairs == want
        check_sentences(pairs)


@settings(max_examples=60)
@given(data=files())
@example(data=(BOM + b"eins\r\n\r\nzwei\rdrei\n", False))
def test_stdin_lines_are_the_documented_lines_or_one_line(data):
    """``tformer translate`` reads stdin like a file, except that lines keep inner and leading whitespace."""
    stdin = mock.Mock(buffer=io.BytesIO(data[0]))
    want = list(decoded_lines(data[0]))
    with mock.patch.object(sys, "stdin", stdin):
        if want and want[-1][1] is None:
            with pytest.raises(TformerError) as e:
                read_input_lines(None)
            assert one_line(e.value) == f"<stdin>:{want[-1][0]}: invalid UTF-8"
        else:
            assert read_input_lines(None) == [text.rstrip("\r") for _, text in want]


# -------------------------------------------------------------------------------------------- tokenizer

TRAINING_TEXT = [
    "Ein Hund läuft über die Straße.", "A dog runs across the street!", "Zwei Männer, 1990: „Schön“ (sagte er).",
    "Two men, 1990: \"Nice\" (he said); <s> and </s> are text.", "Ärztin, Öl; Größe - 2,5 m?",
] * 5
WHITE_SPACE = ("\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
               "\u2028\u2029\u202f\u205f\u3000")  # Unicode's White_Space, what the tokenizer's normalizer collapses
UNSEEN = "日本語русскийעברית\x00\x01\x07\x1b\u200b\ufeff🙂"  # NFC-stable, not whitespace, never in training


@cache
def vocabs(model: str) -> Vocabularies:
    return Vocabularies.train(TRAINING_TEXT, TRAINING_TEXT, 120, model=model)


SEEN = sorted({c for line in TRAINING_TEXT for c in line} - {" "})
_any_text = st.one_of(
    st.text(),  # any code point but lone surrogates: all scripts, control characters, unassigned ones
    st.lists(st.sampled_from(["<s>", "</s>", "<pad>", "<unk>", "▁", " ", "\r", "\r\n", "\t", "\x00", "Hund",
                              "日本", "\u0301", "\ufeff", "\u2028"]), max_size=8).map("".join),
)


@pytest.mark.parametrize("model", ["bpe", "unigram"])
@settings(max_examples=60)
@given(text=_any_text)
@example(text="<s> </s> <pad> <unk>")
@example(text="x" * 100_000)
def test_encode_gives_vocabulary_ids_and_decode_gives_text(model, text):
    tok = vocabs(model).src
    ids = tok.encode(text)
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert not {PAD_ID, BOS_ID, EOS_ID} & set(ids)  # special-token strings in the text stay text
    assert tok.encode_batch([text, text]) == [ids, ids]
    assert len(tok.tokens(text)) == len(ids)
    assert isinstance(tok.decode(ids), str)
    assert (ids == []) == (text.strip(WHITE_SPACE) == "")  # Unicode White_Space only: no tokens


@pytest.mark.parametrize("model", ["bpe", "unigram"])
@settings(max_examples=40)
@given(words=st.lists(st.text(st.sampled_from(SEEN + list(UNSEEN)), min_size=1, max_size=6), min_size=1, max_size=6))
def test_round_trip_with_unseen_characters_as_unk(model, words):
    """Documented: decode(encode(text)) == text for normalized text of training characters; a character
    never seen in training becomes <unk> (unigram: one <unk> per run of them)."""
    tok = vocabs(model).src
    text = " ".join(words)
    ids = tok.encode(text)
    assert (UNK_ID in ids) == any(c in UNSEEN for c in text)
    unseen = f"[{re.escape(UNSEEN)}]" + ("" if model == "bpe" else "+")
    assert tok.decode(ids) == re.sub(unseen, "<unk>", text)


@settings(max_examples=40)
@given(ids=st.lists(st.integers(0, 200), max_size=20))
def test_decode_of_any_vocabulary_ids_is_text(ids):
    tok = vocabs("bpe").src
    ids = [i % tok.vocab_size for i in ids]
    assert isinstance(tok.decode(ids), str)
    assert tok.decode_batch([ids]) == [tok.decode(ids)]


def test_lone_surrogates_are_a_one_line_tokenizer_error():
    tok = vocabs("bpe").src
    for call in (lambda: tok.encode("Hund \ud800"), lambda: tok.encode_batch(["Hund", "\udfff"]),
                 lambda: tok.tokens("\ud800")):
        with pytest.raises(TokenizerError) as e:
            call()
        assert "surrogate" in one_line(e.value)
    with pytest.raises(TypeError):  # not text at all is a programming error, not a user error
        tok.encode(None)


def test_documented_whitespace_handling():
    """Lone \\r, tabs, no-break and other Unicode spaces are word breaks; a literal ▁ reads as a space."""
    tok = vocabs("bpe").src
    assert tok.decode(tok.encode(" Ein\rHund\t\u00a0läuft\u2028über\r\n")) == "Ein Hund läuft über"
    assert tok.encode("Ein▁Hund") == tok.encode("Ein Hund")


# ---------------------------------------------------------------------------------------------- configs

SECTIONS = {
    "data": [f.name for f in dataclasses.fields(DataConfig)],
    "train": [f.name for f in dataclasses.fields(TrainConfig)],
    "model": ["preset"] + [f.name for f in dataclasses.fields(TransformerConfig)],
    "": [f.name for f in dataclasses.fields(RunConfig)],
}
UNKNOWN_KEYS = ["d_modle", "lr", "max_stepz", "", "a\nb", "Train", "1", "preset "]
BASE = {"run_dir": "runs/x", "data": {"train_src": "a.en", "train_tgt": "a.de", "vocab_size": 100},
        "model": {"preset": "tiny"}, "train": {"max_steps": 10}}

_values = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 70), st.integers(-(10**6), 10**6), st.integers(2**63, 2**70),
    st.just(10**400), st.floats(), st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 1e-9, 0.5, 1.5]),
    st.sampled_from(["nan", "inf", "-inf", "1e-9", "1e400", "relu", "tiny", "big", "bpe", "post", "13a", "cpu",
                     "", "a\nb", "x" * 1000]),
    st.text(max_size=6), st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(),
                                                                               max_size=2),
)
_key = st.one_of(st.sampled_from(sorted(SECTIONS)).flatmap(lambda s: st.tuples(st.just(s), st.sampled_from(
    SECTIONS[s]))), st.tuples(st.sampled_from(sorted(SECTIONS)), st.sampled_from(UNKNOWN_KEYS)))


@st.composite
def raw_configs(draw):
    """BASE (valid) with up to four keys set to hostile values, a section replaced, or heads not dividing d_model."""
    d = json.loads(json.dumps(BASE))
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 2, 4]))):
        section, key = draw(_key)
        (d.setdefault(section, {}) if section and isinstance(d.get(section, {}), dict) else d)[key] = draw(_values)
    if draw(st.integers(0, 5)) == 0:
        d["model"] = {"preset": "tiny", "d_model": draw(st.integers(1, 80)), "num_heads": draw(st.integers(-1, 9))}
    if draw(st.integers(0, 9)) == 0:
        d[draw(st.sampled_from(["data", "train", "model"]))] = draw(_values)
    return d


def check_accepted(cfg: RunConfig) -> None:
    """What a config that validates promises to the code that runs it."""
    m = cfg.model_config(vocab_size=64)
    for obj in (cfg.data, cfg.train, m):
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if isinstance(value, float):
                assert math.isfinite(value), f"{f.name}={value}"
    assert m.d_model % m.num_heads == 0
    assert m.init_std is None or m.init_std > 0
    t = cfg.train
    torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=t.lr_scale, betas=(t.beta1, t.beta2), eps=t.adam_eps,
                     weight_decay=t.weight_decay)  # raises a plain ValueError for what it refuses
    if cfg.seed is not None:
        torch.Generator().manual_seed(cfg.seed)  # raises for a seed outside its range


@settings(max_examples=250)
@given(d=raw_configs())
@example(d={**BASE, "train": {"max_steps": 10, "lr_scale": math.nan}})
@example(d={**BASE, "train": {"max_steps": 10, "lr_scale": 10**400}})
@example(d={**BASE, "train": {"max_steps": 10, "adam_eps": -1.0}})
@example(d={**BASE, "train": {"max_steps": 10, "weight_decay": "nan"}})
@example(d={**BASE, "model": {"preset": "tiny", "init_std": -0.5}})
@example(d={**BASE, "model": {"preset": "tiny", "layer_norm_eps": math.inf}})
@example(d={**BASE, "seed": 10**30})
@example(d={**BASE, "a\nb": 1})
def test_from_dict_returns_a_valid_config_or_one_line(d):
    try:
        cfg = parse_run_config(d)
    except ConfigError as e:
        event("rejected")
        one_line(e)
        return
    event("accepted")
    check_accepted(cfg)


_override_keys = st.one_of(
    st.sampled_from(sorted(SECTIONS)).flatmap(lambda s: st.sampled_from(SECTIONS[s]).map(
        lambda k: f"{s}.{k}" if s else k)),
    st.sampled_from(["train.max_steps.x", "model.preset.deep", "a..b", "", ".", "data", "x=y", "train.\n"]),
)
_override_values = st.one_of(
    _values.map(lambda v: yaml.safe_dump(v, default_flow_style=True).removesuffix("\n...\n").strip()),
    st.sampled_from([".nan", ".inf", "-.inf", "1e400", "2001-13-01", "[1", "{a: 1}", "!!float abc", "!!int x",
                     "1" * 5000, "[" * 600, "&a [*a]", "0x10", "1_000", "~", "'", "a: b: c", "\t"]),
    st.text(max_size=8),
)


@settings(max_examples=150)
@given(body=st.one_of(st.builds(yaml.safe_dump, raw_configs()), st.binary(max_size=60).map(
    lambda b: b.decode("utf-8", "replace"))),
    overrides=st.lists(st.builds(lambda k, eq, v: f"{k}{eq}{v}", _override_keys, st.sampled_from(["=", "=", ""]),
                                 _override_values), max_size=3))
@example(body="a: 2001-13-01\n", overrides=[])
@example(body="[" * 600, overrides=[])  # nested too deep for PyYAML
@example(body="seed: " + "1" * 5000 + "\n", overrides=[])
@example(body=yaml.safe_dump(BASE), overrides=["train.lr_scale=.nan"])
@example(body=yaml.safe_dump(BASE), overrides=["train.max_steps=2001-13-01"])
@example(body=yaml.safe_dump(BASE), overrides=["train.clip_norm=" + "[" * 600])
@example(body=yaml.safe_dump(BASE), overrides=["model.init_std=-1"])
def test_load_run_config_returns_a_valid_config_or_one_line(workdir, body, overrides):
    path = workdir / "c.yaml"
    path.write_text(body, encoding="utf-8")
    try:
        cfg = load_run_config(path, overrides)
    except ConfigError as e:
        event("rejected")
        one_line(e)
        return
    event("accepted")
    check_accepted(cfg)


@given(data=st.one_of(st.binary(max_size=80), st.sampled_from([
    b"[" * 100_000, b'{"vocab_size": ' + b"1" * 5000 + b"}", b'{"vocab_size": 64, "init_std": NaN}',
    b'{"vocab_size": 64, "dropout": Infinity}', b'{"vocab_size": 64, "d_model": 30, "num_heads": 4}', b"\xff",
])))
@example(data=json.dumps(TransformerConfig.tiny().to_dict()).encode())
def test_transformer_config_load_json_returns_a_config_or_one_line(workdir, data):
    """config.json of a run's model: a damaged one is a one-line error when translate loads it."""
    path = workdir / "config.json"
    path.write_bytes(data)
    try:
        cfg = TransformerConfig.load_json(path)
    except ConfigError as e:
        one_line(e)
        return
    assert cfg.d_model % cfg.num_heads == 0


def test_nan_and_infinity_are_rejected_by_name(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(BASE))
    for override, name in [("train.lr_scale=.nan", "lr_scale"), ("train.lr_scale=nan", "lr_scale"),
                           ("train.max_minutes=.inf", "max_minutes"), ("train.adam_eps=.nan", "adam_eps"),
                           ("train.weight_decay=-.inf", "weight_decay"), ("model.init_std=.nan", "init_std"),
                           ("model.dropout=.nan", "dropout"), ("data.max_len_ratio=.nan", "max_len_ratio")]:
        with pytest.raises(ConfigError, match=name) as e:
            load_run_config(path, [override])
        one_line(e.value)


# ------------------------------------------------------------------------------------- the strategies


def _has(strategy, predicate):
    return find(strategy, predicate, settings=settings(max_examples=2000, database=None, phases=[Phase.generate]))


@pytest.mark.filterwarnings("ignore:Generating overly large repr")  # the 100k-character line
@pytest.mark.parametrize("name,strategy,predicate", [
    ("invalid UTF-8", files(), lambda f: isinstance(expected_lines(f[0]), int)),
    ("valid with empty and whitespace-only lines", files(), lambda f: isinstance(lines := expected_lines(f[0]), list)
     and "" in lines and any(c.isspace() for c in f[0].decode("utf-8", "replace").split("\n")[0])),
    ("100k-character line", files(), lambda f: not isinstance(expected_lines(f[0]), int)
     and max(map(len, expected_lines(f[0])), default=0) >= 100_000),
    ("lone \\r inside a valid line", files(), lambda f: isinstance(lines := expected_lines(f[0]), list)
     and any("\r" in s for s in lines)),
    ("\\r\\n line ends", files(), lambda f: b"\r\n" in f[0]),
    ("BOM", files(), lambda f: f[0].startswith(BOM)),
    ("gzip", files(), lambda f: f[1]),
    ("control characters and other scripts", files(), lambda f: isinstance(lines := expected_lines(f[0]), list)
     and any(0 < ord(c) < 32 and c not in "\t\r" for s in lines for c in s) and any(ord(c) > 0x2FF for s in lines
                                                                                    for c in s)),
    ("misaligned valid pair", st.tuples(files(), files()), lambda p: all(isinstance(expected_lines(f[0]), list)
                                                                         for f in p)
     and len(expected_lines(p[0][0])) != len(expected_lines(p[1][0])) > 0),
    ("TSV empty cell", files(_tsv_lines), lambda f: isinstance(r := expected_tsv(f[0]), list)
     and any("" in p for p in r)),
    ("JSONL of several pairs", files(_jsonl_lines), lambda f: isinstance(r := expected_jsonl(f[0]), list)
     and len(r) >= 2),
    ("JSONL pairs and a bad record", files(_jsonl_lines), lambda f: isinstance(r := expected_jsonl(f[0]), tuple)
     and r[0] > 1),
    ("config accepted", raw_configs(), lambda d: _accepts(d)),
    ("config with a NaN", raw_configs(), lambda d: "nan" in repr(d)),
    ("config with an unknown key", raw_configs(), lambda d: any(k in UNKNOWN_KEYS for s in d.values()
                                                                if isinstance(s, dict) for k in s)),
])
def test_strategies_produce_every_hazard(name, strategy, predicate):
    _has(strategy, predicate)


def _accepts(d) -> bool:
    try:
        parse_run_config(d)
    except ConfigError:
        return False
    return True
