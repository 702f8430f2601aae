"""`tformer translate`, `evaluate` and `average` on a run made by `tformer train`."""

import json

import pytest
import sacrebleu
from cli_helpers import tformer_cli


def test_translate_stdin_to_stdout_keeps_empty_lines(trained_run):
    r = tformer_cli("translate", str(trained_run), "--beam", "2", input="one hundred five\n\ntwelve\n")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split("\n")
    assert len(lines) == 4 and lines[1] == "" and lines[3] == ""  # 3 lines + final newline
    assert lines[0] and lines[2]


def test_translate_files_nbest_and_scores(trained_run, corpus, tmp_path):
    out = tmp_path / "out.de"
    r = tformer_cli("translate", str(trained_run), "-i", str(corpus / "test.en"), "-o", str(out))
    assert r.returncode == 0, r.stderr
    n = len((corpus / "test.en").read_text().splitlines())
    assert len(out.read_text().splitlines()) == n

    r = tformer_cli("translate", str(trained_run), "--beam", "3", "--nbest", "3", input="seven\nnine\n")
    rows = [line.split(" ||| ") for line in r.stdout.splitlines()]
    assert [row[0] for row in rows] == ["0"] * 3 + ["1"] * 3
    scores = [float(row[2]) for row in rows[:3]]
    assert scores == sorted(scores, reverse=True)

    r = tformer_cli("translate", str(trained_run), "--scores", input="seven\n")
    text, s = r.stdout.rstrip("\n").split("\t")
    assert float(s) <= 0
    plain = tformer_cli("translate", str(trained_run), input="seven\n").stdout.strip()
    assert text == plain  # --scores shows the same best translation


def test_sampling_is_repeatable_with_a_seed(trained_run):
    a = tformer_cli("translate", str(trained_run), "--sample", "--seed", "3", "--temperature", "2", input="seven\n" * 5)
    b = tformer_cli("translate", str(trained_run), "--sample", "--seed", "3", "--temperature", "2", input="seven\n" * 5)
    assert a.returncode == 0 and a.stdout == b.stdout


def test_overlong_line_is_truncated_with_a_warning(trained_run):
    r = tformer_cli("translate", str(trained_run), "--beam", "1", input="one " * 300 + "\n")
    assert r.returncode == 0 and "truncated" in r.stderr and len(r.stdout.splitlines()) == 1


def test_evaluate_decodes_and_scores_with_sacrebleu(trained_run, corpus, tmp_path):
    hyp = tmp_path / "hyp.de"
    r = tformer_cli("evaluate", str(trained_run), "--src", str(corpus / "test.en"), "--ref", str(corpus / "test.de"),
                    "--beam", "2", "-o", str(hyp))
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    refs = (corpus / "test.de").read_text().splitlines()
    hyps = hyp.read_text().splitlines()
    # the oracle: sacreBLEU's own corpus functions on the same files
    assert result["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score, abs=0.006)
    assert result["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score, abs=0.006)
    assert result["bleu_signature"].startswith("nrefs:1|case:mixed") and "tok:13a" in result["bleu_signature"]
    # --hyp scores a file without a model
    again = tformer_cli("evaluate", "--hyp", str(hyp), "--ref", str(corpus / "test.de"))
    assert json.loads(again.stdout)["bleu"] == result["bleu"]


def test_evaluate_of_a_perfect_file_is_100(corpus):
    # One-word sentences have no 4-grams of words: word BLEU is 0 even when perfect; chrF and char BLEU see it.
    ref = str(corpus / "test.de")
    r = tformer_cli("evaluate", "--hyp", ref, "--ref", ref, "--tokenize", "char")
    result = json.loads(r.stdout)
    assert result["bleu"] == 100.0 and result["chrf"] == 100.0 and "tok:char" in result["bleu_signature"]


def test_average_of_checkpoints_translates(trained_run, corpus, tmp_path):
    import torch

    from tformer import Transformer
    from tformer.io.checkpoints import load_checkpoint, step_checkpoints

    out = tmp_path / "avg"
    r = tformer_cli("average", "--run", str(trained_run), "--last", "2", "--out", str(out))
    assert r.returncode == 0, r.stderr
    ckpts = step_checkpoints(trained_run / "checkpoints")[-2:]
    states = [load_checkpoint(p)["model"] for p in ckpts]
    avg = Transformer.from_pretrained(out / "model").state_dict()
    name = "encoder.layers.0.ffn.w_1.weight"
    torch.testing.assert_close(avg[name], (states[0][name] + states[1][name]) / 2)
    t = tformer_cli("translate", str(out), input="seven\n")
    assert t.returncode == 0 and t.stdout.strip()


def test_user_errors_exit_2_with_one_line(trained_run, corpus, tmp_path):
    cases = [
        ("translate", str(tmp_path / "no-run")),
        ("translate", str(corpus)),  # a folder without a model
        ("translate", str(trained_run), "-i", str(tmp_path / "missing.txt")),
        ("evaluate", "--hyp", str(corpus / "test.de"), "--ref", str(corpus / "train.en")),  # misaligned
        ("evaluate", "--ref", str(corpus / "test.de")),
        ("average", "--out", str(tmp_path / "x")),
        ("translate", str(trained_run), "--sample", "--beam", "3"),
    ]
    for args in cases:
        r = tformer_cli(*args, input="seven\n")
        assert r.returncode == 2, (args, r.stderr)
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
    # settings that the chosen search would ignore are refused, even at their default values
    for args, message in ((["--temperature", "0.7"], "--temperature only applies when sampling: add --sample"),
                          (["--top-k", "0", "--seed", "3"], "--top-k and --seed only apply when sampling"),
                          (["--beam", "1", "--alpha", "1.0"], "--alpha (the length penalty) only applies to beam "
                                                              "search: leave it out with --beam 1"),
                          (["--sample", "--alpha", "0.6"], "leave it out with --sample")):
        r = tformer_cli("translate", str(trained_run), *args, input="seven\n")
        assert r.returncode == 2 and message in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and r.stdout == ""
    r = tformer_cli("translate", str(trained_run), "--sample", "--temperature", "0.7", "--top-p", "0.9", "--seed", "1",
                    input="seven\n")
    assert r.returncode == 0 and r.stdout.strip(), r.stderr
    r = tformer_cli("translate", str(trained_run), "--no-repeat-ngram", "-1", input="seven\n")
    assert r.returncode == 2 and "--no-repeat-ngram must be >= 0 (0 = off), got -1" in r.stderr, r.stderr
    r = tformer_cli("translate", str(trained_run), "--no-repeat-ngram", "1", "--beam", "2", input="seven\n")
    assert r.returncode == 0 and r.stdout.strip(), r.stderr


def test_failed_translation_leaves_existing_output_untouched(trained_run, tmp_path):
    out = tmp_path / "keep.txt"
    out.write_text("precious\n")
    r = tformer_cli("translate", str(trained_run), "-i", str(tmp_path / "missing.txt"), "-o", str(out))
    assert r.returncode == 2 and out.read_text() == "precious\n"


def test_evaluate_int8_scores_close_to_fp32(trained_run, corpus):
    """--int8 decodes with int8 linear layers; on the trained tiny run it scores within a few BLEU of fp32."""
    args = ["evaluate", str(trained_run), "--src", str(corpus / "test.en"), "--ref", str(corpus / "test.de"),
            "--beam", "2"]
    fp32 = tformer_cli(*args)
    int8 = tformer_cli(*args, "--int8")
    assert fp32.returncode == 0 and int8.returncode == 0, int8.stderr
    a, b = json.loads(fp32.stdout.splitlines()[-1]), json.loads(int8.stdout.splitlines()[-1])
    assert abs(a["chrf"] - b["chrf"]) < 10, (a, b)
    r = tformer_cli("translate", str(trained_run), "--int8", "--device", "cuda", input="seven\n")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--int8" in r.stderr


def test_evaluate_reports_alignment_rates_and_decodes_under_a_monotonic_window(trained_run, corpus):
    args = ["evaluate", str(trained_run), "--src", str(corpus / "test.en"), "--ref", str(corpus / "test.de"),
            "--beam", "2"]
    plain = tformer_cli(*args)
    assert plain.returncode == 0, plain.stderr
    result = json.loads(plain.stdout)
    assert 0 <= result["diagonal_focus_rate"] <= 1 and 0 <= result["monotonic_rate"] <= 1
    assert result["focus_band"] == 0.1 and result["alignment_layer"] == -1 and "monotonic_window" not in result
    # a window that never reaches behind its focus: every step's peak is at or after the previous one's
    windowed = tformer_cli(*args, "--monotonic-window", "2", "--monotonic-window-back", "0", "--focus-band", "0.2")
    assert windowed.returncode == 0, windowed.stderr
    result = json.loads(windowed.stdout)
    assert result["monotonic_rate"] == 1.0 and result["monotonic_window"] == 2 and result["focus_band"] == 0.2
    t = tformer_cli("translate", str(trained_run), "--monotonic-window", "1", input="seven\n")
    assert t.returncode == 0 and t.stdout.strip()
    for bad, flag in ((["--monotonic-window", "-1"], "--monotonic-window must be"),
                      (["--monotonic-window", "0"], "--monotonic-window must be >= 1"),
                      (["--monotonic-window", "1", "--monotonic-window-back", "-2"], "--monotonic-window-back must"),
                      (["--alignment-layer", "5"], "alignment layer 5 is out of range")):
        r = tformer_cli(*args, *bad)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and flag in r.stderr, r.stderr


def test_a_window_of_nothing_ahead_is_refused(trained_run):
    r = tformer_cli("translate", str(trained_run), "--monotonic-window", "0", input="seven\n")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--monotonic-window must be >= 1" in r.stderr
    assert r.stdout == ""


def test_evaluate_checks_the_alignment_settings_before_decoding(trained_run, corpus, tmp_path, monkeypatch):
    from tformer.translator import Translator

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded before the alignment settings were checked")

    monkeypatch.setattr(Translator, "translate_ids", no_decoding)
    out = tmp_path / "hyps.de"
    args = ["evaluate", str(trained_run), "--src", str(corpus / "test.en"), "--ref", str(corpus / "test.de"),
            "-o", str(out)]
    for bad, message in ((["--focus-band", "-0.5"], "--focus-band: the diagonal band must be >= 0"),
                         (["--focus-band", "nan"], "--focus-band"),
                         (["--alignment-layer", "-9"], "alignment layer -9 is out of range")):
        r = tformer_cli(*args, *bad)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
        assert not out.exists()
