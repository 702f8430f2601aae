"""Every shipped recipe parses and builds a valid model config."""

from pathlib import Path

import pytest

from tformer.tasks import load_run_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


def test_there_are_recipes():
    names = {p.name for p in CONFIGS}
    assert {"demo.yaml", "multi30k_de_en.yaml", "multi30k_en_de.yaml", "wmt14_en_de_base.yaml",
            "wmt14_en_de_big.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_recipe_loads(path):
    cfg = load_run_config(path)
    first = path.read_text().splitlines()[0]
    assert first.startswith("#")  # a header says what the recipe is
    assert "tformer " in path.read_text()  # and shows the command that runs it
    if cfg.task == "translation":  # (every task checks its own sections when the config loads)
        cfg.model_config(vocab_size=cfg.data.vocab_size)
