"""`tformer train` end to end on a tiny corpus the test writes: loss falls, the run directory loads."""

import json

import pytest
from cli_helpers import tformer_cli as _tformer
from cli_helpers import write_recipe

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def recipe(corpus):
    return corpus, write_recipe(corpus, corpus / "run", max_steps=60)


def test_train_lowers_the_loss_and_writes_a_loadable_run(recipe):
    d, cfg = recipe
    r = _tformer("train", str(cfg), "--no-progress")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 60
    metrics = [json.loads(line) for line in (d / "run" / "metrics.jsonl").read_text().splitlines()]
    train = [m for m in metrics if m["kind"] == "train"]
    valid = [m for m in metrics if m["kind"] == "valid"]
    assert train[-1]["loss"] < 0.7 * train[0]["loss"]
    assert len(valid) == 2 and valid[1]["loss"] < valid[0]["loss"] and "bleu" in valid[0]
    run = d / "run"
    for name in ("config.yaml", "tokenizer.json", "model/config.json", "model/model.safetensors",
                 "checkpoints/last.pt", "checkpoints/best.pt", "checkpoints/step-00000060.pt"):
        assert (run / name).is_file(), name
    assert (run / "checkpoints/step-00000030.pt").exists()  # keep_checkpoints: 3

    from tformer.translator import Translator

    out = Translator.from_pretrained(run).translate(["one hundred five", "twelve"], beam_size=2)
    assert len(out) == 2 and all(isinstance(s, str) for s in out)

    # The run directory is protected: training into it again needs --resume.
    again = _tformer("train", str(cfg))
    assert again.returncode == 2 and "--resume" in again.stderr and "Traceback" not in again.stderr

    # --resume with a higher step budget continues from step 60.
    more = _tformer("train", str(cfg), "train.max_steps=70", "--resume", "--no-progress")
    assert more.returncode == 0, more.stderr
    assert "resumed from" in more.stderr and json.loads(more.stdout.splitlines()[-1])["steps"] == 70


@pytest.mark.parametrize(
    "override,message",
    [
        ("train.max_stepz=3", "unknown key"),
        ("data.train_tgt=missing.de", "missing.de"),
        ("model.d_model=30", "divisible"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(recipe, override, message, tmp_path):
    _, cfg = recipe
    r = _tformer("train", str(cfg), override, f"run_dir={tmp_path / 'r'}")
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_misaligned_corpus_names_both_files_and_counts(recipe, tmp_path):
    d, cfg = recipe
    (tmp_path / "short.de").write_text("eins\nzwei\n")
    r = _tformer("train", str(cfg), f"data.train_tgt={tmp_path / 'short.de'}", f"run_dir={tmp_path / 'r'}")
    assert r.returncode == 2
    assert "train.en" in r.stderr and "short.de" in r.stderr and "400" in r.stderr and "2" in r.stderr


def test_missing_config_file_exits_2(tmp_path):
    r = _tformer("train", str(tmp_path / "nope.yaml"))
    assert r.returncode == 2 and "not found" in r.stderr


def test_an_unusable_run_directory_is_one_line_before_any_work(recipe, tmp_path):
    _, cfg = recipe
    (tmp_path / "a-file").write_text("not a folder")
    r = _tformer("train", str(cfg), f"run_dir={tmp_path / 'a-file' / 'run'}")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [f"tformer: error: cannot create the run directory "
                                             f"{tmp_path / 'a-file' / 'run'}: {tmp_path / 'a-file'} is not a directory"]
    assert (tmp_path / "a-file").read_text() == "not a folder"
