"""`tformer generate` end to end on a tiny language-model run trained by `tformer train`: greedy, beam (with scores
and n-best lists), sampling, prompts from flags, files and stdin, --json, atomic --output, and the one-line errors
(exit 2). The CLI, Python (open_run) and the model's own generate() give the same continuations."""

import json

import pytest
import torch
from cli_helpers import tformer_cli

from tformer.data.synthetic import make_number_task

PROMPTS = ["three hundred", "two thousand four", "nine"]


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    """A tiny lm run on English number words (a few seconds of training), with the text it was trained on."""
    d = tmp_path_factory.mktemp("lm")
    task = make_number_task(200, 20, 0, max_number=9999, seed=5)
    for split in ("train", "valid"):
        (d / f"{split}.en").write_text("".join(en + "\n" for en, _ in task[split]))
    recipe = d / "lm.yaml"
    recipe.write_text(f"""
run_dir: {d / 'run'}
seed: 3
task: lm
data: {{data_dir: {d}, train_src: train.en, valid_src: valid.en, vocab_size: 80, max_len: 40}}
model: {{preset: tiny, dropout: 0.0}}
train: {{max_steps: 40, max_tokens: 800, warmup_steps: 20, eval_every: 20, label_smoothing: 0.0, device: cpu}}
""")
    r = tformer_cli("train", str(recipe), "--no-progress")
    assert r.returncode == 0, r.stderr
    return d / "run"


def _generate(run, *args, stdin=None):
    return tformer_cli("generate", str(run), *args, input=stdin)


def _prompts(*texts):
    return [a for t in texts for a in ("--prompt", t)]


def test_greedy_is_the_default_and_equals_the_models_own_generate(lm_run):
    from tformer.data.tokenizer import Tokenizer
    from tformer.models.gpt.model import DecoderOnly

    r = _generate(lm_run, *_prompts(*PROMPTS), "--max-new-tokens", "12")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 3 and all(line.startswith(p) for line, p in zip(lines, PROMPTS, strict=True))
    model = DecoderOnly.from_pretrained(lm_run / "model").eval()
    tok = Tokenizer.load(lm_run / "tokenizer.json")
    for prompt, line in zip(PROMPTS, lines, strict=True):  # each prompt alone, through the model itself
        ids = [model.cfg.bos_id, *tok.encode(prompt)]
        new = model.generate(torch.tensor([ids]), max_new_tokens=12)[0].tolist()
        assert tok.decode(ids + new) == tok.decode(tok.encode(line))  # the same text, as the tokenizer reads it
    assert any(line != p for line, p in zip(lines, PROMPTS, strict=True))  # it continued something


def test_json_beam_nbest_and_the_python_predictor_agree(lm_run):
    from tformer.tasks import open_run

    r = _generate(lm_run, *_prompts(*PROMPTS), "--beam", "4", "--nbest", "3", "--json", "--max-new-tokens", "10")
    assert r.returncode == 0, r.stderr
    answers = [json.loads(line) for line in r.stdout.splitlines()]
    assert [a["prompt"] for a in answers] == PROMPTS
    for a in answers:
        assert set(a) == {"prompt", "continuation", "tokens", "score", "nbest"} and len(a["nbest"]) == 3
        scores = [h["score"] for h in a["nbest"]]
        assert scores == sorted(scores, reverse=True) and scores[0] == a["score"] and a["score"] <= 0
        assert a["nbest"][0]["continuation"] == a["continuation"] and 0 < a["tokens"] <= 10
    predictor = open_run(lm_run)
    assert predictor.endpoint == "generate" and predictor.example() is not None
    assert predictor.predict(PROMPTS, beam_size=4, nbest=3, max_len=10) == answers  # one path: CLI = Python
    plain = _generate(lm_run, *_prompts(*PROMPTS), "--beam", "4", "--nbest", "2", "--max-new-tokens", "10")
    rows = [line.split(" ||| ") for line in plain.stdout.splitlines()]
    assert [int(i) for i, _, _ in rows] == [0, 0, 1, 1, 2, 2]
    assert rows[0][1] == PROMPTS[0] + answers[0]["continuation"] and float(rows[0][2]) == pytest.approx(
        answers[0]["score"], abs=1e-4)


def test_sampling_is_seeded_and_files_in_and_out(lm_run, tmp_path):
    src = tmp_path / "prompts.txt"
    src.write_text("".join(p + "\n" for p in PROMPTS))
    out = tmp_path / "out" / "continued.jsonl"
    out.parent.mkdir()
    args = ("--input", str(src), "--output", str(out), "--json", "--sample", "--seed", "3", "--top-k", "5")
    r = _generate(lm_run, *args)
    assert r.returncode == 0 and r.stdout == "", r.stderr
    first = out.read_text()
    assert [json.loads(line)["prompt"] for line in first.splitlines()] == PROMPTS
    assert _generate(lm_run, *args).returncode == 0 and out.read_text() == first  # the same seed, the same samples
    stdin = _generate(lm_run, "--json", "--sample", "--seed", "3", "--top-k", "5", stdin=src.read_text())
    assert stdin.stdout == first
    assert list(out.parent.iterdir()) == [out]  # written atomically: no temporary file left behind


@pytest.mark.parametrize("args, message", [
    (["--prompt", "nine", "--temperature", "0.7"], "--temperature only applies when sampling: add --sample"),
    (["--prompt", "nine", "--alpha", "1.0"], "--alpha (the length penalty) only applies to beam search"),
    (["--prompt", "nine", "--nbest", "3"], "--nbest must be in [1, --beam=1], got 3"),
    (["--prompt", "nine", "--max-new-tokens", "0"], "--max-new-tokens must be >= 1, got 0"),
    (["--prompt", "nine", "--prompt", " "], "--prompt 2: empty prompt"),
    (["--prompt", "nine", "--sample", "--beam", "3"], "sampling draws one hypothesis per sentence"),
])
def test_bad_flags_and_prompts_are_one_line_errors(lm_run, args, message):
    r = _generate(lm_run, *args)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("tformer: error: ") and message in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_a_missing_run_a_run_of_another_task_and_an_empty_line_are_one_line_errors(lm_run, trained_run, tmp_path):
    src = tmp_path / "prompts.txt"
    src.write_text("nine\n\nseven\n")
    out = tmp_path / "out.txt"
    for run, args, message in [
        (tmp_path / "nowhere", ["--prompt", "nine"], "is not a run directory"),
        (trained_run, ["--prompt", "nine"], "is a run of task translation"),
        (lm_run, ["--input", str(src), "--output", str(out)], f"{src}:2: empty prompt"),
    ]:
        r = _generate(run, *args)
        assert r.returncode == 2 and r.stdout == "", r.stderr
        assert message in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert not out.exists()  # nothing written when a prompt is refused
