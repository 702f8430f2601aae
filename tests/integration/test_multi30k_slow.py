"""Slow checks on real data (../shared/data/multi30k beside the project); run with `./dev slow`."""

import json
from pathlib import Path

import pytest
from cli_helpers import tformer_cli

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "multi30k"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not DATA.is_dir(), reason="needs ../shared/data/multi30k (a project machine)")]


def test_multi30k_recipe_trains_with_falling_validation_loss(tmp_path):
    r = tformer_cli("train", str(ROOT / "configs" / "multi30k_de_en.yaml"), f"data.data_dir={DATA}",
                    f"run_dir={tmp_path / 'run'}", "train.max_steps=150", "train.eval_every=50",
                    "train.bleu_samples=50", "--no-progress", cwd=ROOT)
    assert r.returncode == 0, r.stderr
    valid = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [m["loss"] for m in valid if m["kind"] == "valid"]
    assert len(losses) == 3 and losses[0] > losses[1] > losses[2]
