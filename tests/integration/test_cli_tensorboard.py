"""`tformer train ... train.tensorboard=true` on the tiny corpus: TensorBoard's own reader finds the training
curves, the validation loss and BLEU at the steps of metrics.jsonl, and --resume goes on in the same place."""

import json

import pytest
from cli_helpers import tformer_cli, write_recipe
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

pytestmark = pytest.mark.filterwarnings("ignore")


def _steps(run_dir) -> dict[str, list[int]]:
    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    return {tag: [e.step for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_train_writes_tensorboard_events_and_resume_continues_them(corpus, tmp_path):
    run = tmp_path / "run"
    cfg = write_recipe(corpus, run, max_steps=20)
    r = tformer_cli("train", cfg, "train.tensorboard=true", "train.eval_every=10", "--no-progress")
    assert r.returncode == 0, r.stderr
    steps = _steps(run)
    for tag in ("train/loss", "train/lr", "train/ppl", "train/tokens_per_s"):
        assert steps[tag] == [10, 20], tag
    for tag in ("valid/loss", "valid/ppl", "valid/bleu"):
        assert steps[tag] == [10, 20], tag

    more = tformer_cli("train", cfg, "train.tensorboard=true", "train.eval_every=10", "train.max_steps=30",
                       "--resume", "--no-progress")
    assert more.returncode == 0, more.stderr
    steps = _steps(run)
    assert steps["train/loss"] == steps["valid/bleu"] == [10, 20, 30]
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in logged if m["kind"] == "valid"] == steps["valid/loss"]
