"""`tformer demo` end to end, shortened (the full demo's numbers are in the README and a slow test)."""

import json
import subprocess
import sys

import pytest
from cli_helpers import tformer_cli


def test_short_demo_runs_and_ends_with_the_json_summary(tmp_path):
    r = tformer_cli("demo", "--run-dir", str(tmp_path / "demo"), "--train-size", "300", "--test-size", "20",
                    "--beam", "2", "--no-progress", "train.max_steps=20", "train.eval_every=20", "model.d_model=32",
                    "model.d_ff=64")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert set(summary) >= {"exact_match", "bleu", "train_seconds", "run_dir"}
    assert 0.0 <= summary["exact_match"] <= 1.0 and "tok:char" in summary["bleu_signature"]
    assert (tmp_path / "demo" / "model" / "model.safetensors").is_file()
    assert len(r.stdout.strip().splitlines()) >= 2  # translations before the JSON line


def test_the_names_demo_trains_a_pointer_generator_from_its_recipe(tmp_path):
    from pathlib import Path

    recipe = Path(__file__).resolve().parents[2] / "configs" / "copy_names.yaml"
    r = tformer_cli("demo", "--task", "names", "--recipe", str(recipe), "--run-dir", str(tmp_path / "names"),
                    "--train-size", "300", "--test-size", "20", "--beam", "2", "--no-progress", "train.max_steps=10",
                    "train.eval_every=10", "model.d_model=32", "model.d_ff=64")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert 0.0 <= summary["names_copied"] <= 1.0
    assert json.loads((tmp_path / "names" / "model" / "config.json").read_text())["pointer_generator"] is True
    assert " for " in (tmp_path / "names" / "data" / "test.en").read_text().splitlines()[0]


@pytest.mark.slow
def test_full_demo_meets_its_targets(tmp_path):
    """The README's promise: within 3 minutes on 2 cores, >= 95% exact match on held-out numbers."""
    import time

    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "tformer.cli.main", "demo", "--run-dir", str(tmp_path / "demo"),
                        "--no-progress"], capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["exact_match"] >= 0.95, summary
    assert elapsed < 180, elapsed
