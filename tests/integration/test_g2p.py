"""Grapheme to phoneme end to end: a generated dictionary split by tformer.data.cmudict, trained through the
shipped recipe (configs/g2p_cmudict.yaml, shrunk) with the `symbols` tokenizer, then `tformer evaluate --metric
per` and `tformer translate` from the run directory."""

import json
import math
import random
from pathlib import Path

import pytest
from cli_helpers import tformer_cli

from tformer.data.cmudict import CmudictConfig, build
from tformer.data.tokenizer import Tokenizer
from tformer.evaluation.wer import edit_counts, sequence_error_rate
from tformer.tasks import load_run_config, run_training

RECIPE = Path(__file__).resolve().parents[2] / "configs" / "g2p_cmudict.yaml"
# A regular spelling: each letter one phoneme, "sh" one phoneme, stress on the first vowel.
LETTERS = {"a": "AE", "b": "B", "d": "D", "e": "EH", "h": "HH", "i": "IH", "k": "K", "m": "M", "n": "N",
           "o": "AA", "p": "P", "s": "S", "t": "T", "u": "AH"}
VOWELS = {"AE", "EH", "IH", "AA", "AH"}


def pronounce(word: str) -> list[str]:
    phones = []
    i = 0
    while i < len(word):
        if word.startswith("sh", i):
            phones.append("SH")
            i += 2
        else:
            phones.append(LETTERS[word[i]])
            i += 1
    first = next((k for k, p in enumerate(phones) if p in VOWELS), None)
    return [p + ("1" if k == first else "0" if p in VOWELS else "") for k, p in enumerate(phones)]


def write_dictionary(path: Path, n: int = 220, seed: int = 5) -> None:
    rng = random.Random(seed)
    words: dict[str, None] = {}
    while len(words) < n:
        length = rng.randint(2, 6) if len(words) < n - 12 else rng.randint(8, 9)  # a few long ones
        words["".join(rng.choice(sorted(LETTERS)) for _ in range(length))] = None
    lines = [f"{w} {' '.join(pronounce(w))}" for w in words]
    lines += ["x-ray EH1 K S R EY2", f"{next(iter(words))}(2) B AA1"]  # dropped: a bad character, an alternative
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def g2p_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("g2p")
    write_dictionary(tmp / "cmudict.dict")
    splits = build(tmp / "cmudict.dict", tmp / "data", CmudictConfig(seed=1, valid=20, test=30, max_long=12))
    cfg = load_run_config(RECIPE, [
        f"run_dir={tmp / 'run'}", f"data.data_dir={tmp / 'data'}", "model.preset=tiny", "model.d_model=64",
        "model.num_heads=4", "model.d_ff=128", "model.num_encoder_layers=2", "model.num_decoder_layers=2",
        "model.dropout=0.0", "train.max_tokens=600", "train.max_steps=150", "train.warmup_steps=20", "train.lr=0.005",
        "train.eval_every=75", "train.label_smoothing=0.0", "train.max_minutes=0", "train.device=cpu",
        "translation.bleu_samples=10"])
    summary = run_training(cfg, show_progress=False)
    return tmp, splits, summary


def test_training_reads_symbols_and_learns(g2p_run):
    tmp, splits, summary = g2p_run
    run = tmp / "run"
    assert (run / "tokenizer.src.json").is_file() and (run / "tokenizer.tgt.json").is_file()
    vocab = Tokenizer.load(run / "tokenizer.tgt.json").vocab_size
    train = (tmp / "data" / "train.phonemes").read_text()
    assert "SH" in train and vocab == 4 + len(set(train.split())) and summary["steps"] == 150
    assert summary["valid_loss"] < math.log(vocab) / 2  # far below a uniform guess
    assert len(splits["test_long"]) == 12 and len(splits["train"]) == 220 - 12 - 50


@pytest.mark.parametrize("split", ["test", "test_long"])
def test_evaluate_reports_phoneme_and_word_error_rates(g2p_run, split):
    tmp, _, _ = g2p_run
    src, ref, hyp = tmp / "data" / f"{split}.graphemes", tmp / "data" / f"{split}.phonemes", tmp / f"{split}.hyp"
    r = tformer_cli("evaluate", str(tmp / "run"), "--src", str(src), "--ref", str(ref), "--metric", "per",
                    "--beam", "2", "-o", str(hyp))
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert "bleu" not in result  # only what --metric asks for
    refs, hyps = ref.read_text().splitlines(), hyp.read_text().splitlines()
    phonemes = {p for line in refs for p in line.split()}
    assert all(set(line.split()) <= phonemes for line in hyps)  # phonemes out, never letters
    counts = edit_counts(refs, hyps)
    assert result["per"] == pytest.approx(counts.error_rate, abs=1e-6)
    assert result["wer"] == pytest.approx(sequence_error_rate(refs, hyps), abs=1e-6)
    assert (result["ref_symbols"], result["sentences"]) == (counts.reference_length, len(refs))
    if split == "test":
        assert result["per"] < 0.5  # a regular spelling is learnt


def test_translate_from_the_run_directory(g2p_run):
    tmp, _, _ = g2p_run
    r = tformer_cli("translate", str(tmp / "run"), input="s h o p\nb a d\n")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 2 and all(line and line == line.upper() for line in lines)


def test_evaluate_rejects_an_unknown_metric(g2p_run):
    tmp, _, _ = g2p_run
    ref = tmp / "data" / "test.phonemes"
    r = tformer_cli("evaluate", "--hyp", str(ref), "--ref", str(ref), "--metric", "per", "--metric", "bleu")
    assert r.returncode == 0 and json.loads(r.stdout)["per"] == 0.0 and "bleu" in json.loads(r.stdout)
    r = tformer_cli("evaluate", "--hyp", str(ref), "--ref", str(ref), "--metric", "cer")
    assert r.returncode == 2 and "--metric" in r.stderr
