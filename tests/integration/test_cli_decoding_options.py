"""`tformer translate` and `evaluate` with the options translators expect: repetition flags, a prefix file, word
alignments, ensembles of runs (on the tiny trained run of the session)."""

import json
import re
import shutil

import pytest
from cli_helpers import tformer_cli

from tformer import Translator
from tformer.data.synthetic import make_number_task
from tformer.data.vocabularies import Vocabularies

LINES = ["seven", "three hundred twelve", "", "forty five", "nine hundred one"]
TEXT = "".join(line + "\n" for line in LINES)


def _translate(run, *args, input=TEXT):
    r = tformer_cli("translate", *map(str, run if isinstance(run, list) else [run]), *args, input=input)
    assert r.returncode == 0, r.stderr
    return r.stdout.split("\n")[:-1]


def test_repetition_flags_decode_as_the_python_api_and_are_checked(trained_run):
    translator = Translator.from_pretrained(trained_run)
    for beam in ("1", "3"):
        out = _translate(trained_run, "--beam", beam, "--repetition-penalty", "1.3", "--no-repeat-ngram", "2")
        assert out == translator.translate(LINES, beam_size=int(beam), repetition_penalty=1.3, no_repeat_ngram_size=2)
    r = tformer_cli("translate", str(trained_run), "--repetition-penalty", "0", input="seven\n")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "tformer: error: --repetition-penalty must be a positive number (1 = off), got 0.0"]


def test_a_prefix_file_starts_each_translation_and_its_own_start_changes_nothing(trained_run, tmp_path):
    free = _translate(trained_run, "--beam", "1")
    translator = Translator.from_pretrained(trained_run)
    tgt, eos = translator.vocabs.tgt, translator.model.cfg.eos_id
    own = []  # the first word of each free translation, where it is tokenized as the model produced it (the
    for text, ids in zip(free, translator.translate_ids(LINES, beam_size=1), strict=True):  # output ended with EOS)
        word = text.split(" ")[0]
        start = tgt.encode(word)
        own.append(word if ids and ids[-1] == eos and ids[: len(start)] == start else "")
    assert any(own)
    (tmp_path / "own.txt").write_text("".join(w + "\n" for w in own))
    assert _translate(trained_run, "--beam", "1", "--prefix-file", tmp_path / "own.txt") == free
    prefixes = ["sieben und", "", "acht", "vier", "neun hundert neun"]
    (tmp_path / "p.txt").write_text("".join(p + "\n" for p in prefixes))
    for beam in ("1", "3"):
        out = _translate(trained_run, "--beam", beam, "--prefix-file", tmp_path / "p.txt")
        for line, prefix, text in zip(LINES, prefixes, out, strict=True):
            assert text.startswith(prefix) if line else text == "", (prefix, text)
    (tmp_path / "short.txt").write_text("sieben\n")
    r = tformer_cli("translate", str(trained_run), "--prefix-file", str(tmp_path / "short.txt"), input=TEXT)
    assert r.returncode == 2 and "short.txt has 1 lines but the input has 5" in r.stderr


def test_print_alignment_appends_the_source_target_pairs(trained_run):
    translator = Translator.from_pretrained(trained_run)
    out = _translate(trained_run, "--beam", "2", "--print-alignment")
    ids = translator.translate_ids(LINES, beam_size=2)
    expected = translator.alignments(LINES, ids, layer=-1)
    for line, text, toks, pairs in zip(out, translator.texts(ids), ids, expected, strict=True):
        assert re.fullmatch(r"[^\t]*\t(\d+-\d+( \d+-\d+)*)?", line), line
        got = [tuple(map(int, p.split("-"))) for p in line.split("\t")[1].split()]
        assert line.split("\t")[0] == text and got == pairs
        assert [i for _, i in got] == list(range(len(toks) - (toks[-1:] == [translator.model.cfg.eos_id])))
    scored = _translate(trained_run, "--beam", "2", "--print-alignment", "--scores", "--alignment-layer", "0")
    assert [line.split("\t")[0] for line in scored] == [line.split("\t")[0] for line in out]
    assert all(len(line.split("\t")) == 3 for line in scored)
    r = tformer_cli("translate", str(trained_run), "--print-alignment", "--alignment-layer", "7", input="seven\n")
    assert r.returncode == 2 and "alignment layer 7 is out of range" in r.stderr


@pytest.fixture(scope="module")
def other_run(trained_run, tmp_path_factory):
    """The run's checkpoints averaged (other weights, the same tokenizer files)."""
    out = tmp_path_factory.mktemp("avg") / "avg"
    r = tformer_cli("average", "--run", str(trained_run), "--last", "2", "--out", str(out))
    assert r.returncode == 0, r.stderr
    return out


def test_runs_given_together_decode_as_an_ensemble(trained_run, other_run, corpus, tmp_path):
    alone = _translate(trained_run, "--beam", "3")
    assert _translate([trained_run, trained_run], "--beam", "3") == alone  # two copies: the model itself
    members = [Translator.from_pretrained(trained_run), Translator.from_pretrained(other_run)]
    for beam in (1, 3):
        expected = Translator.ensemble(members).translate(LINES, beam_size=beam)
        assert _translate([trained_run, other_run], "--beam", str(beam)) == expected
    for side in ("en", "de"):  # five test sentences
        (tmp_path / f"test.{side}").write_text("".join((corpus / f"test.{side}").read_text().splitlines(True)[:5]))
    args = ["evaluate", str(trained_run), str(other_run), "--src", str(tmp_path / "test.en"), "--ref",
            str(tmp_path / "test.de"), "--beam", "2", "--repetition-penalty", "1.2", "-o", str(tmp_path / "hyp")]
    result = json.loads(tformer_cli(*args).stdout)
    assert result["ensemble"] == 2 and result["repetition_penalty"] == 1.2 and result["beam"] == 2
    sources = (tmp_path / "test.en").read_text().splitlines()
    hyps = Translator.ensemble(members).translate(sources, beam_size=2, repetition_penalty=1.2)
    assert (tmp_path / "hyp").read_text().splitlines() == hyps
    foreign = tmp_path / "foreign"  # the same model with other tokenizer files
    shutil.copytree(other_run, foreign)
    pairs = make_number_task(50, 0, 0, max_number=99, seed=9)["train"]
    Vocabularies.train([s for s, _ in pairs], [t for _, t in pairs], 40).save(foreign)
    r = tformer_cli("translate", str(trained_run), str(foreign), input="seven\n")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"tformer: error: ensemble {foreign} has other tokenizers than {trained_run}: the models of an ensemble "
        "must share the source and target vocabularies (the same tokenizer files)"]


def test_evaluate_lang_is_the_language_of_the_tokenized_bleu(corpus, tmp_path):
    from tformer.evaluation.bleu import score

    refs = (corpus / "test.de").read_text().splitlines()[:6]
    hyps = refs[:3] + [ref.replace("und", "oder") for ref in refs[3:]]
    (tmp_path / "ref.de").write_text("".join(r + "\n" for r in refs))
    (tmp_path / "hyp.de").write_text("".join(h + "\n" for h in hyps))
    r = tformer_cli("evaluate", "--hyp", str(tmp_path / "hyp.de"), "--ref", str(tmp_path / "ref.de"), "--lang", "de")
    assert r.returncode == 0, r.stderr
    result, expected = json.loads(r.stdout), score(hyps, refs, lang="de")
    assert result["bleu_tok"] == expected["bleu_tok"] and "moses:de" in result["bleu_tok_signature"]
    r = tformer_cli("evaluate", "--hyp", str(tmp_path / "hyp.de"), "--ref", str(tmp_path / "ref.de"), "--lang", "xx")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "no language 'xx'" in r.stderr
