"""The spoken number sentences: the sentence generator, voice hold-out, the manifest and its loader, and building
(with a stand-in espeak-ng on PATH by default; with the real one in the slow test when it is installed)."""

from __future__ import annotations

import os
import random
import shutil
import stat
import statistics
import sys
import wave
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tformer.data.audio import read_wav
from tformer.data.audio.speech_sentences import (
    CHARACTERS,
    SPEECH_SENTENCES_COMMAND,
    SPLITS,
    VOCABULARY,
    SpeechSentencesConfig,
    SpokenSentence,
    load_speech_sentences,
    number_words,
    plan,
    read_manifest,
    sentence,
    voice_splits,
    write_manifest,
)
from tformer.data.audio.speech_sentences_build import build, main
from tformer.data.synthetic import english_words
from tformer.errors import TformerError

TINY = SpeechSentencesConfig(train=24, valid=6, test=6, test_long=4)

# ---- sentences ------------------------------------------------------------------------------------------------------


def test_number_words_are_the_demos_words_with_spaces():
    for n in (0, 7, 19, 20, 21, 99, 100, 105, 999, 1000, 1921, 9999):
        assert number_words(n) == english_words(n).replace("-", " ")
    assert number_words(1921) == "one thousand nine hundred twenty one"
    with pytest.raises(TformerError, match="0..9999"):
        number_words(10_000)


def test_vocabulary_is_the_thirty_number_words():
    units = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    units += "seventeen eighteen nineteen"
    tens = "twenty thirty forty fifty sixty seventy eighty ninety"
    assert set(VOCABULARY) == set(f"{units} {tens} hundred thousand".split())
    assert len(VOCABULARY) == 30
    assert set("".join(VOCABULARY)) <= set(CHARACTERS)


def test_sentence_has_exactly_the_words_asked_for_from_the_vocabulary():
    rng = random.Random(0)
    for n in list(range(1, 21)) * 5:
        text = sentence(rng, n)
        assert len(text.split()) == n
        assert text == " ".join(text.split())  # single spaces, none at the ends
        assert set(text.split()) <= set(VOCABULARY)
    with pytest.raises(TformerError):
        sentence(rng, 0)


def test_sentence_is_seeded():
    draw = [sentence(random.Random(3), n) for n in range(1, 9)]
    assert draw == [sentence(random.Random(3), n) for n in range(1, 9)]
    assert draw != [sentence(random.Random(4), n) for n in range(1, 9)]


# ---- the plan: splits, lengths, voices -------------------------------------------------------------------------------


def test_plan_is_deterministic_and_has_the_sizes():
    rows = plan(TINY)
    assert rows == plan(TINY)
    assert [r.text for r in rows] != [r.text for r in plan(replace(TINY, seed=1))]
    assert {s: sum(r.split == s for r in rows) for s in SPLITS} == {"train": 24, "valid": 6, "test": 6, "test_long": 4}
    assert len({r.id for r in rows}) == len(rows)
    assert all(r.path == f"wav/{r.id}.wav" and r.seconds == 0.0 for r in rows)


def test_word_counts_and_long_test_is_longer_than_all_training():
    cfg = SpeechSentencesConfig(train=400, valid=50, test=50, test_long=50)
    rows = plan(cfg)
    words = {s: [len(r.text.split()) for r in rows if r.split == s] for s in SPLITS}
    for split in ("train", "valid", "test"):
        assert min(words[split]) == 1 and max(words[split]) == cfg.max_words
    assert min(words["test_long"]) > max(words["train"])
    assert cfg.long_words[0] <= min(words["test_long"]) and max(words["test_long"]) <= cfg.long_words[1]
    for r in rows:
        assert set(r.text) <= set(CHARACTERS)
        assert cfg.speeds[0] <= r.speed <= cfg.speeds[1] and cfg.pitches[0] <= r.pitch <= cfg.pitches[1]


def test_held_out_texts_of_three_words_or_more_are_not_in_train():
    rows = plan(SpeechSentencesConfig(train=2000, valid=300, test=300, test_long=20))
    train = {r.text for r in rows if r.split == "train"}
    others = [r.text for r in rows if r.split != "train" and len(r.text.split()) >= 3]
    assert others and not set(others) & train


def test_voice_hold_out():
    cfg = SpeechSentencesConfig()
    voices = voice_splits(cfg)
    train, valid, test = set(voices["train"]), set(voices["valid"]), set(voices["test"])
    assert voices["test_long"] == voices["test"]
    assert not train & valid and not train & test and not valid & test
    every = {f"{a}+{v}" for a in cfg.accents for v in cfg.variants}
    assert train | valid | test == every
    assert len(test) == cfg.test_per_accent * len(cfg.accents) and len(valid) == cfg.valid_per_accent * len(cfg.accents)
    # held-out identities are new combinations: their accent and variant both speak in training
    trained_accents = {v.split("+")[0] for v in train}
    trained_variants = {v.split("+")[1] for v in train}
    assert trained_accents == set(cfg.accents) and trained_variants == set(cfg.variants)
    assert voice_splits(replace(cfg, seed=1)) != voices  # the seed picks them
    for r in plan(TINY):
        assert r.voice in voices[r.split]


def test_voices_are_balanced_within_a_split():
    rows = plan(SpeechSentencesConfig(train=200, valid=20, test=40, test_long=0))
    for split in ("train", "valid", "test"):
        counts = {}
        for r in rows:
            if r.split == split:
                counts[r.voice] = counts.get(r.voice, 0) + 1
        assert max(counts.values()) - min(counts.values()) <= 1


@pytest.mark.parametrize("change", [dict(train=-1), dict(max_words=12), dict(long_words=(14, 12)), dict(max_words=0),
                                    dict(speeds=(200, 150)), dict(pitches=(30, 120)), dict(test_per_accent=13),
                                    dict(accents=())])
def test_bad_config(change):
    with pytest.raises(TformerError):
        SpeechSentencesConfig(**change)


# ---- the manifest and the loader -------------------------------------------------------------------------------------


def write_set(root: Path, rows: list[SpokenSentence], rate: int = 22050) -> None:
    """A tiny set: the manifest and one short WAV per row (a tone as long as the row's seconds)."""
    (root / "wav").mkdir(parents=True)
    for r in rows:
        t = np.arange(int(r.seconds * rate)) / rate
        soundfile.write(root / r.path, 0.3 * np.sin(2 * np.pi * 220 * t), rate, subtype="PCM_16")
    write_manifest(root / "manifest.tsv", rows)


def tiny_rows() -> list[SpokenSentence]:
    rows = plan(SpeechSentencesConfig(train=3, valid=1, test=1, test_long=0))
    return [replace(r, seconds=round(0.05 * (i + 1), 3)) for i, r in enumerate(rows)]


def test_load_round_trip(tmp_path):
    rows = tiny_rows()
    write_set(tmp_path / "set", rows)
    loaded = load_speech_sentences(tmp_path / "set")
    assert list(loaded) == list(SPLITS) and loaded["test_long"] == []
    flat = [r for split in SPLITS for r in loaded[split]]
    assert [replace(r, path="") for r in flat] == [replace(r, path="") for r in rows]
    for r in flat:
        assert os.path.isabs(r.path) and r.path.endswith(f"wav/{r.id}.wav")
        waveform, rate = read_wav(r.path)
        assert rate == 22050 and waveform.shape == (int(r.seconds * rate),)
    assert read_manifest(tmp_path / "set" / "manifest.tsv") == rows


def test_missing_set_names_the_command(tmp_path):
    with pytest.raises(TformerError, match=SPEECH_SENTENCES_COMMAND) as e:
        load_speech_sentences(tmp_path / "nowhere")
    assert "\n" not in str(e.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(TformerError, match="manifest.tsv"):
        load_speech_sentences(tmp_path / "empty")


LINE = "train-00000\ttrain\ten-us+m1\t150\t40\t1.250\tone hundred five"


@pytest.mark.parametrize(("line", "match"), [
    ("train-00000\ttrain\ten-us+m1\t150\t40\t1.250", "7 tab-separated fields"),
    (LINE.replace("\ttrain\t", "\tdev\t"), "split 'dev'"),
    (LINE.replace("\t150\t", "\tfast\t"), "integers"),
    (LINE.replace("1.250", "0"), "seconds must be positive"),
    (LINE.replace("one hundred", "One hundred"), "text"),
    (LINE.replace("one hundred", "one  hundred"), "text"),
    (LINE.replace("one hundred", "1 hundred"), "text"),
    (LINE.replace("one hundred five", "five "), "text"),
    (LINE.replace("train-00000", "../up"), "id"),
    (LINE.replace("en-us+m1", "en us"), "voice"),
    (f"{LINE}\n{LINE}", "duplicate id train-00000"),
])
def test_bad_manifest_lines(tmp_path, line, match):
    path = tmp_path / "manifest.tsv"
    path.write_text("id\tsplit\tvoice\tspeed\tpitch\tseconds\ttext\n" + line + "\n")
    with pytest.raises(TformerError, match=match) as e:
        read_manifest(path)
    assert "\n" not in str(e.value) and "manifest.tsv:" in str(e.value)


def test_bad_manifest_header_and_empty(tmp_path):
    path = tmp_path / "manifest.tsv"
    path.write_text("id split voice speed pitch seconds text\n" + LINE + "\n")
    with pytest.raises(TformerError, match="header"):
        read_manifest(path)
    path.write_text("id\tsplit\tvoice\tspeed\tpitch\tseconds\ttext\n")
    with pytest.raises(TformerError, match="no utterances"):
        read_manifest(path)


def test_missing_wav(tmp_path):
    rows = tiny_rows()
    write_set(tmp_path / "set", rows)
    os.unlink(tmp_path / "set" / rows[2].path)
    with pytest.raises(TformerError, match=f"{rows[2].id}.wav is missing"):
        load_speech_sentences(tmp_path / "set")


# ---- building, with a stand-in espeak-ng -----------------------------------------------------------------------------

FAKE_ESPEAK = '''
import sys, wave
args = sys.argv[1:]
if args == ["--version"]:
    print("eSpeak NG text-to-speech: 0.0-fake  Data at: nowhere")
elif args == ["--voices=en"]:
    print("Pty Language Age/Gender VoiceName File Other Languages")
    for lang in %(accents)r:
        print(f" 5  {lang}  --/M  X  gmw/{lang}")
elif args == ["--voices=variant"]:
    print("Pty Language Age/Gender VoiceName File Other Languages")
    for v in %(variants)r:
        print(f" 5  variant  --/M  X  !v/{v}")
else:
    opts = dict(zip(args[:-1:2], args[1:-1:2]))
    if "FAIL" in opts["-v"]:
        sys.exit("error: no such voice")
    with wave.open(opts["-w"], "wb") as w:
        w.setnchannels(1); w.setsampwidth(2); w.setframerate(22050)
        w.writeframes(b"\\x01\\x00" * (2205 * len(args[-1].split())))
'''


@pytest.fixture
def fake_espeak(tmp_path, monkeypatch):
    """An espeak-ng on PATH that knows the default voices and writes 0.1 s of audio per word."""
    cfg = SpeechSentencesConfig()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "espeak-ng"
    script.write_text(f"#!{sys.executable}\n" + FAKE_ESPEAK % {"accents": cfg.accents,
                                                                 "variants": (*cfg.variants, "FAIL")})
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_build_writes_the_set_atomically(tmp_path, fake_espeak, capsys):
    root = tmp_path / "data" / "speech_sentences"
    cfg = SpeechSentencesConfig(train=6, valid=2, test=2, test_long=2)
    rows = build(root, cfg)
    assert sorted(os.listdir(tmp_path / "data")) == ["speech_sentences"]  # no temporary directory left
    assert sorted(os.listdir(root)) == ["README.txt", "manifest.tsv", "wav"]
    loaded = load_speech_sentences(root)
    assert [replace(r, path="") for s in SPLITS for r in loaded[s]] == [
        replace(r, path="", seconds=round(r.seconds, 3)) for r in rows]
    assert all(r.seconds == pytest.approx(0.1 * len(r.text.split())) for r in rows)
    assert "0.0-fake" in (root / "README.txt").read_text()
    assert build(root, cfg) is None  # present: nothing done
    assert main(["build", str(root), "--train", "3"]) == 0 and "exists" in capsys.readouterr().out
    assert main(["build", str(root), "--force", "--train", "3", "--valid", "1", "--test", "1", "--test-long", "0"]) == 0
    assert len(load_speech_sentences(root)["train"]) == 3
    assert sorted(os.listdir(tmp_path / "data")) == ["speech_sentences"]


def test_failed_build_leaves_nothing(tmp_path, fake_espeak):
    # FAIL is a variant the stand-in lists but cannot speak: synthesis fails half-way
    cfg = SpeechSentencesConfig(train=8, valid=0, test=0, test_long=0, accents=("en-us",), variants=("m1", "FAIL"),
                                test_per_accent=0, valid_per_accent=0)
    with pytest.raises(TformerError, match="espeak-ng .*FAIL.* failed: error: no such voice"):
        build(tmp_path / "set", cfg)
    assert os.listdir(tmp_path) == ["bin"]
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "keep").write_text("the previous set")
    with pytest.raises(TformerError):
        build(tmp_path / "set", cfg, force=True)
    assert sorted(os.listdir(tmp_path)) == ["bin", "set"] and os.listdir(tmp_path / "set") == ["keep"]


def test_unknown_voice_is_refused_before_any_audio(tmp_path, fake_espeak):
    cfg = SpeechSentencesConfig(train=2, valid=0, test=0, test_long=0, accents=("en-us",), variants=("m1", "nosuch"),
                                test_per_accent=0, valid_per_accent=0)
    with pytest.raises(TformerError, match=r"espeak-ng has no voice en-us\+nosuch"):
        build(tmp_path / "set", cfg)
    assert os.listdir(tmp_path) == ["bin"]


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and SPEECH_SENTENCES_COMMAND in err


# ---- the real espeak-ng ----------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng (apt-get install espeak-ng)")
def test_build_with_espeak_ng(tmp_path):
    root = tmp_path / "set"
    rows = build(root, SpeechSentencesConfig(train=6, valid=2, test=2, test_long=2))
    assert rows is not None and len(rows) == 12
    loaded = load_speech_sentences(root)
    for r in (r for split in SPLITS for r in loaded[split]):
        with wave.open(r.path) as w:
            assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 22050)
        waveform, rate = read_wav(r.path)
        assert waveform.shape[0] / rate == pytest.approx(r.seconds, abs=1e-3)
        assert 0.3 < r.seconds < 12 and waveform.abs().max() > 0.05  # speech, not silence
    assert min(r.seconds for r in loaded["test_long"]) > statistics.median(r.seconds for r in loaded["train"])
    with pytest.raises(TformerError, match=r"no voice en-us\+nosuch"):  # espeak-ng ignores unknown variants: we do not
        build(tmp_path / "other", SpeechSentencesConfig(train=1, valid=0, test=0, test_long=0, accents=("en-us",),
                                                        variants=("nosuch",), test_per_accent=0, valid_per_accent=0))
