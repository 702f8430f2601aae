"""ONNX export of classifier runs (tformer.export.onnx_classifiers, ``tformer export`` on classify and vision runs):
the graph's logits against the PyTorch model's on real inputs, at batch sizes and lengths other than the traced
ones, and the command's JSON and one-line errors.

Exporting with torch.export takes several seconds a model, so the default suite exports the text classifier once
(through the CLI) and a Swin (TorchScript tracer, fast) once; a tiny ViT (torch.export, as the text classifier) is
exported by the slow tests (``pytest -m slow``).
"""

from __future__ import annotations

import contextlib
import io
import json

import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from tformer.cli.main import main  # noqa: E402
from tformer.data.images import load_digits_splits  # noqa: E402
from tformer.data.synthetic import make_number_task  # noqa: E402
from tformer.errors import TformerError  # noqa: E402
from tformer.export.onnx import META_NAME  # noqa: E402
from tformer.export.onnx_classifiers import MODEL_FILE, ClassifierRuntime, export_classifier, parity  # noqa: E402
from tformer.models.swin.model import SwinClassifier  # noqa: E402
from tformer.models.vit.model import VisionClassifier, VisionConfig  # noqa: E402
from tformer.tasks import load_run_config, open_run  # noqa: E402
from tformer.tasks.classify import ClassificationTask  # noqa: E402
from tformer.tasks.vision import VisionTask  # noqa: E402
from tformer.training.config_file import dump_run_config  # noqa: E402

TEST_IMAGES = load_digits_splits(seed=0).test.images  # (360, 1, 8, 8) in [0, 1]


def _save_run(task_class, recipe: str, run_dir) -> None:
    """A run as training leaves it, untrained, its head given random weights (so that the classes differ)."""
    run_dir.mkdir(parents=True)
    (run_dir / "recipe.yaml").write_text(recipe)
    cfg = load_run_config(run_dir / "recipe.yaml")
    torch.manual_seed(0)
    _, model = task_class.build(cfg, run_dir, resume=False)
    with torch.no_grad():
        getattr(model.head, "proj", model.head).weight.normal_(0, 1.0)
    model.eval().save_pretrained(run_dir / "model")
    (run_dir / "config.yaml").write_text(dump_run_config(cfg))


def _export(*args) -> tuple[int, dict | None, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["export", *map(str, args)])
    return code, json.loads(out.getvalue()) if code == 0 else None, err.getvalue()


@pytest.fixture(scope="module")
def classify_export(tmp_path_factory):
    """A classify run (mean pooling), exported by ``tformer export``: (run dir, output dir, printed JSON)."""
    d = tmp_path_factory.mktemp("classify")
    task = make_number_task(60, 15, 0, max_number=9999, seed=4)
    for split in ("train", "valid"):
        (d / f"{split}.en").write_text("".join(en + "\n" for en, _ in task[split]))
        (d / f"{split}.de").write_text("".join(de + "\n" for _, de in task[split]))
    _save_run(ClassificationTask, f"""
task: classify
classify: {{labels: [en, de]}}
data: {{data_dir: {d}, train_src: 'train.{{label}}', valid_src: 'valid.{{label}}', vocab_size: 120, max_len: 32}}
model: {{preset: tiny, pooling: mean}}
""", d / "run")
    code, result, err = _export(d / "run", "--format", "onnx", "-o", d / "out")
    assert code == 0, err
    return d / "run", d / "out", result


def test_classify_export_agrees_with_pytorch_on_the_validation_texts(classify_export):
    run, out, result = classify_export
    assert result["task"] == "classify" and result["check_inputs"] == 30  # every validation text
    assert result["max_abs_logit_diff"] < 1e-4 and result["argmax_agreement"] == 1.0
    assert {"model.onnx", "tokenizer.json", "labels.json", "export.json"} <= set(result["files"])
    meta = json.loads((out / META_NAME).read_text())
    inputs = meta["graphs"][MODEL_FILE]["inputs"]
    assert [i["name"] for i in inputs] == ["input_ids", "attention_mask"]
    assert all(i["dtype"] == "int64" and all(isinstance(a, str) for a in i["shape"]) for i in inputs)  # B, S dynamic
    assert meta["labels"] == ["en", "de"] and meta["architecture"] == "EncoderOnlyForClassification"
    assert (out / "tokenizer.json").read_bytes() == (run / "tokenizer.json").read_bytes()


def test_classify_graph_takes_any_batch_and_length(classify_export):
    run, out, _ = classify_export
    model = open_run(run).model
    runtime = ClassifierRuntime(out)
    g = torch.Generator().manual_seed(1)
    batches = []
    for b, s, pads in ((1, 1, 0), (1, 32, 0), (5, 9, 4), (3, 17, 16)):
        ids = torch.randint(4, model.cfg.vocab_size, (b, s), generator=g)  # (B, S)
        mask = torch.ones(b, s, dtype=torch.long)
        mask[0, s - pads :] = 0  # the first row padded
        ids[mask == 0] = model.cfg.pad_id
        batches.append((ids, mask))
    result = parity(model, runtime, batches)
    assert result["check_inputs"] == 10 and result["max_abs_logit_diff"] < 1e-4 and result["argmax_agreement"] == 1


@pytest.mark.slow
def test_vit_export_agrees_with_pytorch_at_other_batch_sizes(tmp_path):
    """The same exporter as the text classifier's (torch.export), 4 s more: slow (the README's ViT run is checked
    on its 360 test images by ``tformer export``)."""
    torch.manual_seed(0)
    model = VisionClassifier(VisionConfig.digits(d_model=32, num_layers=1, d_ff=64, image_size=16, patch_size=4))
    with torch.no_grad():
        model.head.weight.normal_()
    info = export_classifier(model.eval(), tmp_path, {"labels": [str(k) for k in range(10)]})
    assert info["exporter"] == "torch.onnx.export(dynamo=True)"
    images = TEST_IMAGES.repeat_interleave(2, -2).repeat_interleave(2, -1)  # (N, 1, 16, 16)
    result = parity(model, ClassifierRuntime(tmp_path), [(images[:1],), (images[1:8],), (images[8:108],)])
    assert result["check_inputs"] == 108 and result["max_abs_logit_diff"] < 1e-4 and result["argmax_agreement"] == 1


def test_swin_run_exports_with_the_tracer_and_checks_the_given_inputs(tmp_path):
    _save_run(VisionTask, "task: vision\ndata: {train_src: digits}\n"
                          "model: {preset: digits_swin, embed_dim: 16, num_heads: [2, 2]}\n", tmp_path / "run")
    (tmp_path / "check.txt").write_text("".join(f"digits:{n}\n" for n in range(50)))
    code, result, err = _export(tmp_path / "run", "--format", "onnx", "-o", tmp_path / "out",
                                "--check", tmp_path / "check.txt", "--limit", 40)
    assert code == 0, err
    assert result["task"] == "vision" and result["exporter"] == "torch.onnx.export(dynamo=False)"
    assert result["check_inputs"] == 40 and result["max_abs_logit_diff"] < 1e-4 and result["argmax_agreement"] == 1
    model = SwinClassifier.from_pretrained(tmp_path / "run" / "model").eval()
    again = parity(model, ClassifierRuntime(tmp_path / "out"), [(TEST_IMAGES[:1],), (TEST_IMAGES[100:113],)])
    assert again["max_abs_logit_diff"] < 1e-4 and again["argmax_agreement"] == 1


def test_classifier_export_errors_are_one_line(classify_export, tmp_path):
    run, _, _ = classify_export
    for args, message in (
        ((run, "--format", "ctranslate2", "-o", tmp_path / "ct2"), "a classifier run exports with --format onnx"),
        ((tmp_path / "none", "--format", "onnx", "-o", tmp_path / "x"), "run directory not found"),
        ((run, "--format", "onnx", "-o", tmp_path / "x", "--check", tmp_path / "missing.txt"), "missing.txt"),
    ):
        code, _, err = _export(*args)
        assert code == 2 and message in err and err.count("\n") == 1, err
    from tformer.models.gpt.config import DecoderOnlyConfig
    from tformer.models.gpt.model import DecoderOnly

    DecoderOnly(DecoderOnlyConfig(vocab_size=20, d_model=16, num_heads=2, d_ff=32, num_layers=1, max_len=16)
                ).save_pretrained(tmp_path / "lm" / "model")
    code, _, err = _export(tmp_path / "lm", "--format", "onnx", "-o", tmp_path / "y")
    assert code == 2 and "holds a DecoderOnly" in err
    with pytest.raises(TformerError, match="no exported classifier"):
        ClassifierRuntime(tmp_path)


def test_a_bad_check_line_is_named(classify_export, tmp_path):
    run, _, _ = classify_export
    (tmp_path / "check.txt").write_text("".join(f"sentence {n}\n" for n in range(40)) + "\n")  # line 41 empty
    code, _, err = _export(run, "--format", "onnx", "-o", tmp_path / "x", "--check", tmp_path / "check.txt")
    assert code == 2 and err == f"tformer: error: {tmp_path / 'check.txt'}:41: empty text\n"
    assert not (tmp_path / "x").exists()
