"""``tformer import`` of a ViT folder, proved by ``transformers`` itself.

A real ``ViTForImageClassification`` (32 x 32 images, patches of 8, labels ``red``/``green``/``blue`` in
``id2label``: the brightest channel, briefly trained here) saved with a ``ViTImageProcessor`` (bicubic resizing,
ImageNet's mean and std) becomes an ``image_classify`` run. Images the test writes with Pillow (noise and patterns, of
other sizes than 32 x 32, RGBA, grey, a palette, a JPEG turned by its EXIF orientation) are read as
``transformers.image_utils.load_image`` reads them and processed as the folder's processor (its Pillow backend) does:
``tformer predict`` answers the label of ``transformers``' largest logit with its probabilities, ``POST /predict``
of ``tformer serve`` the same for the pixels, and ``tformer export --format onnx`` agrees with the model on them.
"""

import json
import re

import numpy as np
import pytest

transformers = pytest.importorskip("transformers")
pytest.importorskip("PIL")
import torch  # noqa: E402
from cli_helpers import tformer_cli  # noqa: E402
from hf_import_helpers import edited_copy  # noqa: E402
from PIL import Image  # noqa: E402

from tformer.errors import TformerError  # noqa: E402
from tformer.interop.folders import import_folder  # noqa: E402
from tformer.models.vit.image_processor import PROCESSOR_FILE, ImageProcessor, read_rgb_image  # noqa: E402

LABELS = ("red", "green", "blue")
# the Pillow processor (transformers 5 without torchvision falls back to it; transformers 4's ViTImageProcessor is it)
Processor = getattr(transformers, "ViTImageProcessorPil", None) or transformers.ViTImageProcessor


def colour_images(rng: np.random.Generator, n: int, side: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """``n`` noisy (side, side, 3) uint8 images, each with one channel brighter (its label) than the others."""
    labels = rng.integers(0, 3, n)
    images = rng.integers(0, 160, (n, side, side, 3))
    images[np.arange(n), :, :, labels] += 96
    return images.astype(np.uint8), labels


def vit_folder(path, *, seed: int = 0, steps: int = 40):
    """A ViTForImageClassification and its ViTImageProcessor, trained ``steps`` Adam steps to name the brightest
    channel."""
    torch.manual_seed(seed)
    cfg = transformers.ViTConfig(image_size=32, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=2,
                                 num_attention_heads=4, intermediate_size=64, hidden_dropout_prob=0.0,
                                 attention_probs_dropout_prob=0.0, id2label=dict(enumerate(LABELS)),
                                 label2id={y: i for i, y in enumerate(LABELS)})
    model = transformers.ViTForImageClassification(cfg)
    processor = Processor(size={"height": 32, "width": 32}, resample=3, image_mean=[0.485, 0.456, 0.406],
                          image_std=[0.229, 0.224, 0.225])
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        images, labels = colour_images(rng, 32)
        pixels = processor(list(images), return_tensors="pt")["pixel_values"]
        loss = model(pixel_values=pixels, labels=torch.from_numpy(labels)).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval().save_pretrained(path)
    processor.save_pretrained(path)
    return path


def write_images(d) -> list[str]:
    """Images of other sizes and modes than the model's 32 x 32 RGB, written with Pillow."""
    d.mkdir()
    rng = np.random.default_rng(5)
    y, x = np.mgrid[0:40, 0:50]
    images = {
        "noise.png": Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)),
        "red.png": Image.fromarray(np.stack([200 + x // 2, 40 + y, 60 + x], -1).astype(np.uint8)),
        "green_stripes.bmp": Image.fromarray(np.stack([(x % 7) * 20, 180 + (y % 3) * 20, x + y], -1)
                                             .astype(np.uint8)),
        "blue.png": Image.fromarray(colour_images(rng, 1, 32)[0][0][..., [1, 2, 0]]),
        "exact_32.png": Image.fromarray(colour_images(rng, 1, 32)[0][0]),
        "large.png": Image.fromarray(colour_images(rng, 1, 96)[0][0]),
        "rgba.png": Image.fromarray(np.concatenate([rng.integers(0, 256, (45, 30, 3)),
                                                    rng.integers(0, 256, (45, 30, 1))], -1).astype(np.uint8), "RGBA"),
        "grey.png": Image.fromarray(rng.integers(0, 256, (27, 33), dtype=np.uint8), "L"),
        "palette.gif": Image.fromarray(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)).convert("P"),
    }
    paths = []
    for name, img in images.items():
        img.save(d / name)
        paths.append(str(d / name))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotated 90°; load_image (and tformer) turn it upright
    Image.fromarray(np.stack([40 + y, 60 + x, 220 - x], -1).astype(np.uint8)).save(d / "turned.jpg", exif=exif)
    return [*paths, str(d / "turned.jpg")]


@pytest.fixture(scope="module")
def vit(tmp_path_factory):
    return vit_folder(tmp_path_factory.mktemp("hf") / "vit-tiny")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_images(tmp_path_factory.mktemp("img") / "images")


@pytest.fixture(scope="module")
def imported(vit, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "vit"
    record = import_folder(vit, run)
    assert record["task"] == "image_classify" and record["model_type"] == "vit"
    return run


@pytest.fixture(scope="module")
def expected(vit, images):
    """transformers' answers: pixel_values, labels of the largest logit and softmax probabilities, per image."""
    from transformers.image_utils import load_image

    model = transformers.ViTForImageClassification.from_pretrained(vit).eval()
    pixels = Processor.from_pretrained(vit)([load_image(p) for p in images], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        logits = model(pixel_values=pixels).logits.double()
    labels = [model.config.id2label[int(i)] for i in logits.argmax(-1)]
    assert len(set(labels)) == 3  # a model whose answers depend on the image
    return pixels, labels, logits.softmax(-1).tolist()


def test_pixels_are_the_image_processors(imported, images, expected):
    processor = ImageProcessor.load_json(imported / PROCESSOR_FILE)
    assert (processor.height, processor.width, processor.resample) == (32, 32, "bicubic")
    ours = processor.pixel_values([read_rgb_image(p) for p in images])
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, expected[0], atol=1e-6, rtol=0)


def test_predict_answers_transformers_labels_and_probabilities(imported, images, expected, tmp_path):
    _, labels, probs = expected
    (tmp_path / "images.txt").write_text("\n".join(images) + "\n")
    r = tformer_cli("predict", imported, "--input", tmp_path / "images.txt")
    assert r.returncode == 0, r.stderr
    answers = [json.loads(line) for line in r.stdout.splitlines()]
    assert [a["label"] for a in answers] == labels
    for a, p in zip(answers, probs, strict=True):
        assert list(a["probabilities"]) == list(LABELS)
        assert list(a["probabilities"].values()) == pytest.approx(p, abs=1e-5)


def test_serve_answers_transformers_labels_for_the_pixels(imported, images, expected):
    from serve_helpers import request, served_app

    from tformer.cli.serve import served
    from tformer.serving.app import create_app
    from tformer.serving.limits import Limits

    model, example = served(str(imported), "cpu")
    pixels = [{"pixels": read_rgb_image(p).tolist()} for p in images]
    with served_app(create_app(model, Limits(max_texts=16), name="vit", example=example)) as url:
        status, info = request(url, "/info")
        assert status == 200 and info["task"] == "image_classify" and info["input_kind"] == "rgb_image"
        assert info["labels"] == list(LABELS)
        status, got = request(url, "/predict", {"inputs": pixels})
        assert status == 200 and [out["label"] for out in got["outputs"]] == expected[1]
        for out, p in zip(got["outputs"], expected[2], strict=True):
            assert list(out["probabilities"].values()) == pytest.approx(p, abs=1e-5)
        status, err = request(url, "/predict", {"inputs": [images[0]]})  # a path: no file is opened
        assert status == 422
        status, err = request(url, "/predict", {"inputs": [{"pixels": [[[0, 0, 256]]]}]})
        assert status == 422


@pytest.mark.slow
def test_onnx_export_agrees_on_the_images(imported, images, tmp_path):
    """5 s (torch.export of the ViT): slow."""
    (tmp_path / "images.txt").write_text("\n".join(images) + "\n")
    r = tformer_cli("export", imported, "--format", "onnx", "-o", tmp_path / "onnx", "--check", tmp_path / "images.txt")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["task"] == "image_classify" and result["check_inputs"] == len(images)
    assert result["max_abs_logit_diff"] < 1e-4 and result["argmax_agreement"] == 1.0
    assert {"model.onnx", "labels.json", PROCESSOR_FILE, "export.json"} <= set(result["files"])
    assert (tmp_path / "onnx" / PROCESSOR_FILE).read_bytes() == (imported / PROCESSOR_FILE).read_bytes()


def test_a_bad_image_is_one_line_naming_its_line(imported, images, tmp_path):
    (tmp_path / "images.txt").write_text(f"{images[0]}\n{tmp_path / 'missing.png'}\n")
    r = tformer_cli("predict", imported, "--input", tmp_path / "images.txt")
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1
    assert re.search(r"images\.txt:2: cannot read the image \S+missing\.png", r.stderr)


@pytest.mark.parametrize(("change", "processor", "message"), [
    ({"drop": ("preprocessor_config.json",)}, {}, r"has no preprocessor_config\.json: an image classifier needs its "
                                                  r"image processor"),
    ({"architectures": ["ViTModel"]}, {}, r"holds a ViTModel; tformer imports ViTForImageClassification .*: a ViT "
                                          r"without a classification head"),
    ({"problem_type": "multi_label_classification"}, {}, r"a multi_label_classification head with 3 output\(s\)"),
    ({"num_channels": 1}, {}, r"a ViT of 1 channel\(s\); tformer reads images as RGB"),
    ({"hidden_act": "quick_gelu"}, {}, r"/bad: unsupported ViT activation 'quick_gelu'"),
    ({}, {"size": {"height": 64, "width": 64}}, r"resized to 64x64 but the model reads 32x32"),
    ({}, {"size": {"shortest_edge": 32}}, r"size \{'shortest_edge': 32\}: tformer resizes to"),
    ({}, {"do_center_crop": True}, r"do_center_crop is set: this processor crops images"),
    ({}, {"image_processor_type": "CLIPImageProcessor"}, r"image_processor_type 'CLIPImageProcessor': tformer reads "
                                                         r"ViT's"),
    ({}, {"resample": 9}, r"resample must be one of Pillow's codes"),
    ({}, {"image_std": [0.5, 0.5]}, r"image_std must hold 3 numbers"),
])
def test_a_folder_that_does_not_fit_is_one_line(vit, tmp_path, change, processor, message):
    folder = edited_copy(vit, tmp_path / "bad", **change)
    if processor:
        doc = json.loads((folder / "preprocessor_config.json").read_text())
        (folder / "preprocessor_config.json").write_text(json.dumps({**doc, **processor}))
    with pytest.raises(TformerError) as e:
        import_folder(folder, tmp_path / "run")
    assert re.search(message, str(e.value)) and "\n" not in str(e.value)
    assert not (tmp_path / "run").exists()
