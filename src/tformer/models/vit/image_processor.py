"""How an image becomes a Vision Transformer's ``pixel_values``: the image processor of a ViT trained elsewhere (a
Hugging Face folder's ``preprocessor_config.json``, kept in an imported run as ``image_processor.json``). tformer's
own ViTs read the 8x8 digits (:mod:`tformer.tasks.vision`) and need none.

The steps are ``transformers``' ``ViTImageProcessor`` (its Pillow backend, the processor of transformers 4, which
transformers 5 uses without torchvision), in its order and number types, so that the pixels match it to float
rounding:

1. an image file is read with Pillow, turned upright by its EXIF orientation and converted to RGB
   (``transformers.image_utils.load_image``, as the image-classification pipeline reads files: an alpha channel is
   dropped, a grey image gets three equal channels); ``{"pixels": H rows of W [r, g, b]}`` are its values 0..255;
2. ``do_resize``: Pillow's ``Image.resize((width, height), resample)`` of the uint8 image, to the processor's size
   (the aspect ratio is not kept);
3. ``do_rescale``: times ``rescale_factor`` (1/255) in float64, then float32;
4. ``do_normalize``: ``(x - image_mean) / image_std`` per channel, in float32.

A processor that crops or pads, resizes keeping the aspect ratio (``size: {"shortest_edge": ...}``), or belongs to
another model family is refused in one line (:meth:`ImageProcessor.from_hf`).

Shape legend: B images, H, W an image's height and width, C = 3 channels (RGB), H', W' the processor's size.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from tformer.config import Config, check, check_choice
from tformer.errors import ConfigError, TformerError, first_line

__all__ = ["PROCESSOR_FILE", "RESAMPLING", "ImageProcessor", "image_from_pixels", "read_rgb_image"]

PROCESSOR_FILE = "image_processor.json"  # an imported image classifier's processor, beside its model/
CHANNELS = 3  # RGB
RESAMPLING = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
"""Pillow's resampling filters by the codes a ``preprocessor_config.json`` stores (``PIL.Image.Resampling``)."""
PROCESSOR_TYPES = ("ViTImageProcessor", "ViTImageProcessorFast", "ViTImageProcessorPil", "ViTFeatureExtractor")
_REFUSED = {"do_center_crop": "crops", "do_pad": "pads"}  # steps a ViT processor does not take


@dataclass(frozen=True)
class ImageProcessor(Config):
    """The steps from an RGB image to ``pixel_values`` (see the module docstring), ViTImageProcessor's fields.

    Attributes:
        height, width: the size images are resized to (the model's ``image_size``).
        do_resize: resize (else an image must already be ``height`` x ``width``).
        resample: Pillow's filter, one of :data:`RESAMPLING`'s names.
        do_rescale, rescale_factor: multiply the 0..255 values by the factor.
        do_normalize, image_mean, image_std: per channel, ``(x - mean) / std``.
    """

    height: int
    width: int
    do_resize: bool = True
    resample: str = "bilinear"
    do_rescale: bool = True
    rescale_factor: float = 1 / 255
    do_normalize: bool = True
    image_mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    image_std: tuple[float, ...] = (0.5, 0.5, 0.5)

    def __post_init__(self) -> None:
        self.check_positive("height", "width")
        check_choice("resample", self.resample, tuple(RESAMPLING.values()))
        check(math.isfinite(self.rescale_factor) and self.rescale_factor > 0,
              f"rescale_factor must be a positive number, got {self.rescale_factor}")
        for name in ("image_mean", "image_std"):
            values = getattr(self, name)
            check(len(values) == CHANNELS and all(math.isfinite(v) for v in values),
                  f"{name} must hold {CHANNELS} numbers (R, G, B), got {list(values)}")
        check(all(v != 0 for v in self.image_std), f"image_std must not hold 0, got {list(self.image_std)}")

    @classmethod
    def from_hf(cls, doc: dict[str, Any]) -> ImageProcessor:
        """The processor of a ``preprocessor_config.json`` (missing keys take ViTImageProcessor's defaults: 224 x
        224, bilinear, 1/255, mean and std 0.5).

        Raises:
            ConfigError: another processor type, a step tformer does not take, or a bad value, in one line.
        """
        kind = doc.get("image_processor_type") or doc.get("feature_extractor_type")
        check(kind is None or kind in PROCESSOR_TYPES, f"image_processor_type {kind!r}: tformer reads ViT's image "
                                                       f"processor ({', '.join(PROCESSOR_TYPES[:1])})")
        for key, what in _REFUSED.items():
            check(not doc.get(key), f"{key} is set: this processor {what} images, which tformer's does not")
        code = doc.get("resample", 2)
        check(code in RESAMPLING, f"resample must be one of Pillow's codes {sorted(RESAMPLING)}, got {code!r}")
        fields = {k: doc[k] for k in ("do_resize", "do_rescale", "rescale_factor", "do_normalize") if k in doc}
        for name in ("image_mean", "image_std"):
            value = doc.get(name, 0.5)
            fields[name] = [value] * CHANNELS if isinstance(value, (int, float)) else value
        height, width = _size(doc.get("size", 224))
        return cls.from_dict({"height": height, "width": width, "resample": RESAMPLING[code], **fields})

    # -- images to pixel values --
    def pixel_values(self, images: Sequence[np.ndarray]) -> Tensor:
        """RGB images, each (H, W, C) uint8 of any size -> the model's input (B, C, H', W') float32."""
        if not images:
            return torch.zeros(0, CHANNELS, self.height, self.width)
        return torch.from_numpy(np.stack([self._one(image) for image in images]))

    def _one(self, image: np.ndarray) -> np.ndarray:
        """(H, W, C) uint8 -> (C, H', W') float32: steps 2-4 of the module docstring."""
        if self.do_resize:
            from PIL import Image

            resample = Image.Resampling[self.resample.upper()]
            image = np.asarray(Image.fromarray(image).resize((self.width, self.height), resample=resample))
        elif image.shape[:2] != (self.height, self.width):
            raise TformerError(f"the image is {image.shape[1]}x{image.shape[0]} pixels; the model reads "
                               f"{self.width}x{self.height} and this processor does not resize")
        x = (image.astype(np.float64) * self.rescale_factor).astype(np.float32) if self.do_rescale else \
            image.astype(np.float32)  # (H', W', C)
        if self.do_normalize:
            x = (x - np.asarray(self.image_mean, np.float32)) / np.asarray(self.image_std, np.float32)
        return np.ascontiguousarray(x.transpose(2, 0, 1))  # (H', W', C) -> (C, H', W')


def _size(size: Any) -> tuple[int, int]:
    """``size`` of a preprocessor_config.json (``{"height", "width"}``, or one number: a square) as (H, W)."""
    if isinstance(size, int) and not isinstance(size, bool):
        return size, size
    if isinstance(size, dict) and set(size) == {"height", "width"}:
        return size["height"], size["width"]
    raise ConfigError(f"size {size!r}: tformer resizes to {{'height': H, 'width': W}} (not keeping the aspect ratio "
                      "by a shortest or longest edge)")


def read_rgb_image(path: str | os.PathLike) -> np.ndarray:
    """The image file at ``path``, upright and in RGB, as (H, W, C) uint8 (step 1 of the module docstring).

    Raises:
        TformerError: Pillow is missing, or the file is missing or not an image Pillow reads, in one line.
    """
    try:
        from PIL import Image, ImageOps, UnidentifiedImageError
    except ImportError:
        raise TformerError("reading image files needs the package Pillow: pip install pillow") from None
    try:
        with Image.open(path) as img:
            return np.array(ImageOps.exif_transpose(img).convert("RGB"))  # (H, W, C) uint8
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as e:
        raise TformerError(f"cannot read the image {path}: {first_line(e)}") from None


def image_from_pixels(value: Any) -> np.ndarray:
    """``{"pixels": H rows of W [r, g, b]}`` (whole numbers 0..255) -> (H, W, C) uint8; one-line TformerError
    otherwise."""
    rows = value.get("pixels") if isinstance(value, dict) else None
    expected = '{"pixels": H rows of W [r, g, b] values, whole numbers 0..255}'
    if not isinstance(value, dict) or set(value) != {"pixels"} or not isinstance(rows, list) or not rows:
        raise TformerError(f"an image must be {expected}")
    try:
        array = np.array(rows, dtype=object)
    except ValueError:  # ragged rows
        raise TformerError(f"the rows of the image differ in length: an image is {expected}") from None
    if array.ndim != 3 or array.shape[2] != CHANNELS or 0 in array.shape:
        raise TformerError(f"an image must be {expected}; got an array of shape {array.shape}")
    flat = array.ravel().tolist()
    if any(isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 255 for v in flat):
        raise TformerError("the pixels must be whole numbers in 0..255")
    return np.array(flat, dtype=np.uint8).reshape(array.shape)  # (H, W, C)
