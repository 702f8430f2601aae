"""``tformer predict`` on runs trained by ``tformer train``'s code (conftest's shared tiny classify and vision runs):
inputs from files or stdin, one JSON answer a line to stdout or an atomically written --output, answers equal to
the Python predictor's, and one-line errors with exit status 2 that name the bad line."""

from __future__ import annotations

import json

import pytest
from cli_helpers import tformer_cli

from tformer.tasks import open_run


def _answers(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_classify_from_a_file_to_stdout_labels_the_languages(classify_run, langid_corpus, tmp_path):
    en = (langid_corpus / "valid.en").read_text().splitlines()[:10]
    de = (langid_corpus / "valid.de").read_text().splitlines()[:10]
    (tmp_path / "in.txt").write_text("".join(t + "\n" for t in en + de))
    r = tformer_cli("predict", classify_run, "--input", tmp_path / "in.txt")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    answers = _answers(r.stdout)
    assert len(answers) == 20 and all(set(a) == {"label", "probabilities"} for a in answers)
    right = sum(a["label"] == y for a, y in zip(answers, ["en"] * 10 + ["de"] * 10, strict=True))
    assert right >= 18  # the run's validation accuracy is about 1
    expected = open_run(classify_run).predict(en + de)  # the same answers as the Python API
    assert all(a["label"] == b["label"] for a, b in zip(answers, expected, strict=True))
    small = tformer_cli("predict", classify_run, "--input", tmp_path / "in.txt", "--max-tokens", "16")
    assert [a["label"] for a in _answers(small.stdout)] == [a["label"] for a in answers]


def test_stdin_and_output_file(classify_run, tmp_path):
    text = "zweihundert\nthree hundred one\n"
    r = tformer_cli("predict", classify_run, input=text)
    assert r.returncode == 0 and len(_answers(r.stdout)) == 2
    out = tmp_path / "answers.jsonl"
    r2 = tformer_cli("predict", classify_run, "-o", out, input=text)
    assert r2.returncode == 0 and r2.stdout == "" and out.read_text() == r.stdout
    out.write_text("kept\n")  # a failed run leaves an existing output as it was
    r3 = tformer_cli("predict", classify_run, "-o", out, input="one\n\nthree\n")
    assert r3.returncode == 2 and r3.stderr == "tformer: error: <stdin>:2: empty text\n"
    assert out.read_text() == "kept\n" and not list(tmp_path.glob(".answers*"))


def test_vision_reads_digits_pixels_and_image_files(vision_run, tmp_path):
    from PIL import Image

    from tformer.data.images import load_digits_splits

    test = load_digits_splits(seed=0).test
    pixels = (test.images[3, 0] * 16).round().int()  # (8, 8)
    img = Image.new("L", (8, 8))
    img.putdata([int(round(v * 255 / 16)) for v in pixels.flatten().tolist()])
    img.save(tmp_path / "three.png")
    lines = ["digits:3", json.dumps({"pixels": pixels.tolist()}), str(tmp_path / "three.png")]
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n")
    r = tformer_cli("predict", vision_run, "-i", tmp_path / "in.txt", "-o", tmp_path / "out.jsonl")
    assert r.returncode == 0, r.stderr
    a, b, c = _answers((tmp_path / "out.jsonl").read_text())
    # digits:N is that image's pixels (two rows of one batch: equal up to the matmul's blocking on this CPU)
    assert a["label"] == b["label"]
    assert all(abs(b["probabilities"][k] - p) < 1e-6 for k, p in a["probabilities"].items())
    assert c["label"] == a["label"]  # the PNG holds the pixels to the nearest of 256 grey levels
    assert all(abs(c["probabilities"][k] - p) < 1e-2 for k, p in a["probabilities"].items())
    assert set(a["probabilities"]) == {str(k) for k in range(10)}


@pytest.mark.parametrize("case", ["no run", "translation run", "empty line", "bad image", "bad json", "bad digits",
                                  "max tokens", "device"])
def test_errors_are_one_line_with_exit_2(case, classify_run, vision_run, tmp_path):
    (tmp_path / "translation").mkdir()
    (tmp_path / "translation" / "config.yaml").write_text("task: translation\n")
    (tmp_path / "not.png").write_text("text")
    run, text, extra, message = {
        "no run": (tmp_path / "none", "x\n", [], "is not a run directory"),
        "translation run": (tmp_path / "translation", "x\n", [], "use tformer translate"),
        "empty line": (classify_run, "one\ntwo\n \n", [], "<stdin>:3: empty text"),
        "bad image": (vision_run, f"digits:1\n{tmp_path / 'not.png'}\n", [], "<stdin>:2: cannot read the image"),
        "bad json": (vision_run, "digits:1\ndigits:2\n{oops\n", [], "<stdin>:3: an image line must be"),
        "bad digits": (vision_run, "digits:1000\n", [], "<stdin>:1: digits:1000: N must be"),
        "max tokens": (classify_run, "x\n", ["--max-tokens", "0"], "--max-tokens must be >= 1"),
        "device": (classify_run, "x\n", ["--device", "nonsense"], "unknown device"),
    }[case]
    r = tformer_cli("predict", run, *extra, input=text)
    assert r.returncode == 2 and r.stdout == "", r.stderr
    assert r.stderr.startswith("tformer: error: ") and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
