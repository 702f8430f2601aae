"""Run configs of the old layout (task settings in the data and train sections) load with the same meaning:
the recipes as they were, every run directory's saved config.yaml, and old-style overrides on the command line."""

import dataclasses
from pathlib import Path

import pytest
import yaml

from tformer.config import ConfigError
from tformer.tasks import get_task, load_run_config, parse_run_config
from tformer.training.config import DataConfig, TrainConfig
from tformer.training.config_file import dump_run_config, read_run_config
from tformer.training.config_migration import MOVED, migrate_run_config

LEGACY_RUN = Path(__file__).resolve().parents[1] / "fixtures" / "legacy" / "translation_run" / "config.yaml"

# configs/multi30k_de_en_cmlm.yaml, digits_vit.yaml and multi30k_langid.yaml as they were (trimmed)
OLD_CMLM = """
task: cmlm
data: {train_src: a.de, train_tgt: a.en, max_len: 100, max_len_ratio: 3.0}
model: {preset: small, num_encoder_layers: 2, num_decoder_layers: 2, max_target_len: 128}
train: {max_steps: 1200, bleu_samples: 150, nat_iterations: 7, nat_length_candidates: 2, bleu_tokenize: intl}
"""
NEW_CMLM = """
task: cmlm
cmlm: {bleu_samples: 150, iterations: 7, length_candidates: 2, bleu_tokenize: intl}
data: {train_src: a.de, train_tgt: a.en, max_len: 100, max_len_ratio: 3.0}
model: {preset: small, num_encoder_layers: 2, num_decoder_layers: 2, max_target_len: 128}
train: {max_steps: 1200}
"""
OLD_VISION = ("task: vision\ndata: {train_src: digits, max_shift: 0, mixup: 0.4}\nmodel: {preset: digits}\n"
              "train: {max_steps: 10}\n")
OLD_CLASSIFY = ("task: classify\ndata: {train_src: 'train.{label}.gz', test_src: 'test.{label}.gz', "
                "labels: [en, de, fr, cs]}\nmodel: {preset: tiny}\ntrain: {max_steps: 10}\n")


def _write(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_run_directory_saved_by_the_old_code_loads_with_the_same_meaning():
    old = yaml.safe_load(LEGACY_RUN.read_text())
    cfg = load_run_config(LEGACY_RUN)
    assert cfg.task == "translation" and cfg.task_settings == {"bleu_samples": 0, "bleu_tokenize": "13a"}
    moved = {key for section, key in MOVED}
    data, expected = dataclasses.asdict(cfg.data), {k: v for k, v in old["data"].items() if k not in moved}
    newer = {k: data.pop(k) for k in set(data) - set(expected)}  # data settings newer than the run: their defaults
    assert data == expected
    assert newer == {k: v for k, v in dataclasses.asdict(DataConfig()).items() if k in newer}
    train, expected = dataclasses.asdict(cfg.train), {k: v for k, v in old["train"].items() if k not in moved}
    added = {k: train.pop(k) for k in set(train) - set(expected)}  # settings newer than the run: their defaults
    assert train == expected
    assert added == {k: v for k, v in dataclasses.asdict(TrainConfig(max_steps=1)).items() if k in added}
    assert (cfg.run_dir, cfg.seed, cfg.model) == (old["run_dir"], old["seed"], old["model"])
    assert read_run_config(LEGACY_RUN) == cfg  # nothing left to fill in: both settings were in the file


def test_old_task_keys_move_into_the_task_section(tmp_path):
    old = load_run_config(_write(tmp_path, OLD_CMLM))
    assert old == load_run_config(_write(tmp_path, NEW_CMLM, "new.yaml"))
    settings = get_task("cmlm").settings_from(old)
    assert (settings.iterations, settings.length_candidates, settings.bleu_samples, settings.bleu_tokenize) == (
        7, 2, 150, "intl")
    vision = load_run_config(_write(tmp_path, OLD_VISION))
    assert vision.task_settings == {"max_shift": 0, "mixup": 0.4}
    classify = load_run_config(_write(tmp_path, OLD_CLASSIFY))
    assert classify.task_settings == {"labels": ("en", "de", "fr", "cs")}
    assert classify.data.test_src == "test.{label}.gz"  # test data stays data


def test_old_keys_a_task_never_read_are_dropped(tmp_path):
    cfg = load_run_config(_write(tmp_path, "data: {train_src: a, train_tgt: b, mixup: 0.4, labels: [x]}\n"
                                           "train: {max_steps: 1, nat_iterations: 3}\n"))
    assert (cfg.task, cfg.task_settings) == ("translation", {"bleu_samples": 200, "bleu_tokenize": "13a"})
    lm = load_run_config(_write(tmp_path, "task: lm\ndata: {train_src: a}\nmodel: {preset: tiny}\n"
                                          "train: {max_steps: 1, bleu_samples: 3, bleu_tokenize: char}\n"))
    assert (lm.task, lm.task_settings) == ("lm", {})


def test_old_overrides_land_in_the_task_section_and_win_over_the_file(tmp_path):
    path = _write(tmp_path, NEW_CMLM)
    cfg = load_run_config(path, ["train.bleu_samples=5", "train.nat_iterations=3"])
    assert (cfg.task_settings["bleu_samples"], cfg.task_settings["iterations"]) == (5, 3)
    assert load_run_config(path, ["cmlm.iterations=4"]).task_settings["iterations"] == 4
    # the task an override names decides, whatever the order of the overrides
    plain = _write(tmp_path, "data: {train_src: a, train_tgt: b}\ntrain: {max_steps: 1}\n", "plain.yaml")
    cmlm = load_run_config(plain, ["train.nat_iterations=3", "task=cmlm", "model.max_target_len=128"])
    assert cmlm.task == "cmlm" and cmlm.task_settings["iterations"] == 3
    assert "iterations" not in load_run_config(plain, ["train.nat_iterations=3"]).task_settings
    # task=NAME carries the section over (and a setting the new task lacks is an error, not dropped)
    translation = _write(tmp_path, "task: translation\ntranslation: {bleu_samples: 7}\n"
                                   "data: {train_src: a, train_tgt: b}\ntrain: {max_steps: 1}\n", "translation.yaml")
    assert load_run_config(translation, ["task=cmlm", "model.max_target_len=128"]).task_settings == {
        "bleu_samples": 7, "bleu_tokenize": "13a", "iterations": 10, "length_candidates": 3}
    with pytest.raises(ConfigError, match="unknown key.* for TranslationSettings: iterations, length_candidates"):
        load_run_config(path, ["task=translation"])


def test_a_key_given_both_ways_is_one_line(tmp_path):
    text = "translation: {bleu_samples: 3}\ndata: {train_src: a, train_tgt: b}\n" \
           "train: {max_steps: 1, bleu_samples: 4}\n"
    with pytest.raises(ConfigError, match="train.bleu_samples is translation.bleu_samples now") as e:
        read_run_config(_write(tmp_path, text))
    assert "\n" not in str(e.value)


def test_the_task_section_is_typed_and_checked_at_load(tmp_path):
    path = _write(tmp_path, NEW_CMLM)
    for override, message in [("cmlm.iterations=0", "cmlm: iterations and length_candidates must be >= 1"),
                              ("cmlm.iterations=many", "cmlm.iterations must be an integer"),
                              ("cmlm.beam=4", "cmlm: unknown key(s) for CMLMSettings: beam"),
                              ("cmlm.bleu_tokenize=bogus", "cmlm: bleu_tokenize"),
                              ("cmlm=[1]", "cmlm: expected a mapping"),
                              ("translation.bleu_samples=3", "unknown key(s) for RunConfig: translation (known: "
                                                             "run_dir, task, cmlm, seed, data, model, train;"),
                              ("task=clasify", "task must be one of"),
                              ("task=[1]", "unknown key(s) for RunConfig: cmlm")]:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
            load_run_config(path, [override])
        assert "\n" not in str(e.value)


def test_the_saved_config_round_trips_in_the_new_layout(tmp_path):
    cfg = load_run_config(_write(tmp_path, OLD_CMLM))
    saved = _write(tmp_path, dump_run_config(cfg), "saved.yaml")
    text = saved.read_text()
    assert "task: cmlm\ncmlm:\n" in text and yaml.safe_load(text)["cmlm"] == {
        "bleu_samples": 150, "bleu_tokenize": "intl", "iterations": 7, "length_candidates": 2}
    assert load_run_config(saved) == cfg
    assert parse_run_config(yaml.safe_load(OLD_CMLM)) == cfg == parse_run_config(cfg.to_dict())


def test_migration_leaves_its_input_alone_and_new_configs_as_they_are():
    old = yaml.safe_load(OLD_CMLM)
    before = yaml.safe_load(OLD_CMLM)
    migrate_run_config(old)
    assert old == before
    new = yaml.safe_load(NEW_CMLM)
    assert migrate_run_config(new) == new


def test_a_task_override_decides_where_old_file_keys_go_and_its_position_does_not_matter(tmp_path):
    old_translation = _write(tmp_path, "data: {train_src: a, train_tgt: b}\n"
                                       "train: {max_steps: 1, nat_iterations: 5, bleu_samples: 9}\n")
    cfg = load_run_config(old_translation, ["task=cmlm", "model.max_target_len=128"])
    assert (cfg.task_settings["iterations"], cfg.task_settings["bleu_samples"]) == (5, 9)  # as the old code read it
    recipe = _write(tmp_path, "task: translation\ntranslation: {bleu_samples: 7}\n"
                              "data: {train_src: a, train_tgt: b}\ntrain: {max_steps: 1}\n", "recipe.yaml")
    first = load_run_config(recipe, ["cmlm.iterations=3", "task=cmlm", "model.max_target_len=128"])
    then = load_run_config(recipe, ["task=cmlm", "cmlm.iterations=3", "model.max_target_len=128"])
    assert first.task_settings == then.task_settings == {
        "bleu_samples": 7, "bleu_tokenize": "13a", "iterations": 3, "length_candidates": 3}
