"""tformer.models.vit.image_processor against ``transformers``' ViTImageProcessor (its Pillow backend) on the same
images: every resampling filter, with and without rescaling and normalization; the defaults of a
``preprocessor_config.json`` that leaves keys out; one-line errors."""

import numpy as np
import pytest

transformers = pytest.importorskip("transformers")
pytest.importorskip("PIL")
import torch  # noqa: E402

from tformer.errors import ConfigError, TformerError  # noqa: E402
from tformer.models.vit.image_processor import RESAMPLING, ImageProcessor, image_from_pixels  # noqa: E402

Processor = getattr(transformers, "ViTImageProcessorPil", None) or transformers.ViTImageProcessor


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:23, 0:41]
    return [rng.integers(0, 256, (17, 29, 3), dtype=np.uint8),
            np.stack([x * 6, y * 11, (x + y) % 256], -1).astype(np.uint8),  # smooth: where filters differ least
            rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)]  # the processor's own size


@pytest.mark.parametrize("code", sorted(RESAMPLING))
@pytest.mark.parametrize(("rescale", "normalize"), [(True, True), (True, False), (False, True)])
def test_pixel_values_are_transformers(code, rescale, normalize):
    kw = {"size": {"height": 16, "width": 16}, "resample": code, "do_rescale": rescale, "do_normalize": normalize,
          "image_mean": [0.1, 0.5, 0.9], "image_std": [0.3, 0.2, 0.25], "rescale_factor": 1 / 255}
    hf = Processor(**kw)
    ours = ImageProcessor.from_hf(hf.to_dict())
    assert ours.resample == RESAMPLING[code]
    ref = hf(_images(), return_tensors="pt")["pixel_values"]
    got = ours.pixel_values(_images())
    assert got.dtype == torch.float32 and got.shape == (3, 3, 16, 16)
    torch.testing.assert_close(got, ref.float(), atol=1e-6, rtol=0)


def test_missing_keys_take_vit_image_processors_defaults():
    hf = Processor().to_dict()
    ours = ImageProcessor.from_hf({"image_processor_type": "ViTImageProcessor"})
    assert (ours.height, ours.width) == (hf["size"]["height"], hf["size"]["width"]) == (224, 224)
    assert RESAMPLING[hf["resample"]] == ours.resample and ours.rescale_factor == hf["rescale_factor"]
    assert list(ours.image_mean) == list(hf["image_mean"]) and list(ours.image_std) == list(hf["image_std"])
    assert (ours.do_resize, ours.do_rescale, ours.do_normalize) == (hf["do_resize"], hf["do_rescale"],
                                                                    hf["do_normalize"])


def test_an_old_feature_extractors_config_reads():
    """google/vit-base-patch16-224's preprocessor_config.json: a number for size, no do_rescale."""
    ours = ImageProcessor.from_hf({"do_normalize": True, "do_resize": True, "feature_extractor_type":
                                   "ViTFeatureExtractor", "image_mean": 0.5, "image_std": [0.5, 0.5, 0.5],
                                   "resample": 2, "size": 224})
    assert (ours.height, ours.width, ours.do_rescale, ours.image_mean) == (224, 224, True, (0.5, 0.5, 0.5))


def test_without_resizing_an_image_of_another_size_is_one_line():
    p = ImageProcessor(height=16, width=16, do_resize=False)
    assert p.pixel_values([_images()[2]]).shape == (1, 3, 16, 16)
    with pytest.raises(TformerError, match=r"^the image is 29x17 pixels; the model reads 16x16 and this processor "
                                           r"does not resize$"):
        p.pixel_values([_images()[0]])


@pytest.mark.parametrize(("doc", "message"), [
    ({"size": {"shortest_edge": 224}}, r"tformer resizes to \{'height': H, 'width': W\}"),
    ({"do_pad": True}, r"do_pad is set: this processor pads images"),
    ({"image_std": [1, 0, 1]}, r"image_std must not hold 0"),
    ({"rescale_factor": -1}, r"rescale_factor must be a positive number"),
    ({"resample": "bilinear"}, r"resample must be one of Pillow's codes"),
    ({"size": {"height": 0, "width": 4}}, r"height must be positive"),
])
def test_a_processor_tformer_cannot_follow_is_one_line(doc, message):
    with pytest.raises(ConfigError, match=message) as e:
        ImageProcessor.from_hf(doc)
    assert "\n" not in str(e.value)


def test_pixels_from_json():
    image = image_from_pixels({"pixels": [[[0, 1, 2], [3, 4, 5]], [[6, 7, 8], [9, 10, 255]]]})
    assert image.dtype == np.uint8 and image.shape == (2, 2, 3) and image[1, 1].tolist() == [9, 10, 255]
    for bad, message in [({"pixels": [[1, 2, 3]]}, "shape"), ({"pixels": [[[1, 2, 3]], [[1, 2, 3], [4, 5, 6]]]},
                                                                "shape"),
                         ({"pixels": [[[1, 2, 3.5]]]}, "whole numbers"), ({"pixels": [[[1, 2, 256]]]}, "0..255"),
                         ({"pixels": [[[1, 2, 3]]], "x": 1}, "an image must be"), ("a", "an image must be")]:
        with pytest.raises(TformerError, match=message):
            image_from_pixels(bad)
