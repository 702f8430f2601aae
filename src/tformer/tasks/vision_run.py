"""A trained ``task: vision`` run (:mod:`tformer.tasks.vision`, ViT or Swin on the 8x8 digits): images in, digits
and probabilities out.

An input is one of

* ``{"pixels": [[...8 numbers...] x 8]}``: the image itself, 8 rows of 8 values in 0..16 (0 = background,
  16 = full ink), the scale of scikit-learn's digits; what the HTTP API takes. A larger image with sides in whole
  multiples of 8 (a 32 x 32 drawing) is shrunk by averaging blocks (:func:`pixels_from_json`);
* ``"digits:N"``: image N of the digits' test split (the split the run never trained on);
* any other string: the path of an image file, read with Pillow (``tformer predict`` and Python; the HTTP API
  reads no files, see :meth:`VisionPredictor.predict`'s ``files``).

Reading a file (:func:`read_image`): transparent pixels are put on white, the image becomes grey (Pillow's ``L``:
0.299 R + 0.587 G + 0.114 B), is shrunk to 8x8 with ``Image.Resampling.BOX`` (each pixel the mean of the area it
covers: how the digits were made, each value counting the ink pixels of a 4x4 block of a 32x32 bitmap), and the
grey levels g are mapped to ink in 0..16. Ink is the minority of a digit's pixels: an image whose mean grey level
is above the middle (dark strokes on light paper) is read as 16 (255 - g) / 255, a darker one (light strokes on
black, as the digits are drawn) as 16 g / 255. Then, as in training, the pixels are divided by 16
(:data:`tformer.data.images.DIGITS_MAX`) and each is repeated to the model's ``image_size``
(:class:`~tformer.tasks.vision.VisionTask`).

Labels are the digits as strings, ``"0"`` to ``"9"``.

Shape legend: B images, C channels (1), S = 8 pixels a side, S' the model's image_size.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from functools import cached_property
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tformer.data.images import DIGITS_MAX, ImageSplit, load_digits_splits
from tformer.errors import TformerError, first_line
from tformer.tasks.classifier_runs import answers, check_device, input_error, run_model, token_batches
from tformer.tasks.predictor import Predictor, register_predictor
from tformer.tasks.vision import IMAGE_SIDE, PRESETS, VisionTask

DIGITS_PREFIX = "digits:"
GREY_MAX = 255.0


def read_image(path: str | os.PathLike) -> Tensor:
    """The image file at ``path`` as (S, S) float32 ink in 0..16 (see the module docstring).

    Raises:
        TformerError: Pillow is missing, or the file is missing or not an image Pillow reads, in one line.
    """
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise TformerError("reading image files needs the package Pillow: pip install pillow") from None
    try:
        with Image.open(path) as img:
            img.load()
            if "A" in img.getbands() or "transparency" in img.info:  # transparent pixels count as white paper
                rgba = img.convert("RGBA")
                img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
            grey = img.convert("L").convert("F").resize((IMAGE_SIDE, IMAGE_SIDE), Image.Resampling.BOX)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as e:
        raise TformerError(f"cannot read the image {path}: {first_line(e)}") from None
    g = torch.from_numpy(np.asarray(grey, dtype=np.float32).copy())  # (S, S) in 0..255
    if float(g.mean()) > GREY_MAX / 2:  # dark ink on light paper
        g = GREY_MAX - g
    return g * (DIGITS_MAX / GREY_MAX)


def pixels_from_json(value: Any) -> Tensor:
    """``{"pixels": rows of numbers in 0..16}`` -> (S, S) float32 ink (TformerError in one line otherwise).

    8 rows of 8 values is the image itself. A larger image whose sides are whole multiples of 8 (a 32 x 32 drawing)
    is shrunk by averaging each block, as the digits were made from 32 x 32 bitmaps (and as :func:`read_image`
    shrinks files).
    """
    rows = value.get("pixels") if isinstance(value, dict) else None
    shape_ok = (isinstance(rows, list) and rows and len(rows) % IMAGE_SIDE == 0
                and all(isinstance(r, list) and len(r) == len(rows[0]) for r in rows)
                and len(rows[0]) and len(rows[0]) % IMAGE_SIDE == 0)
    if not shape_ok or set(value) != {"pixels"}:
        raise TformerError(f'an image must be {{"pixels": {IMAGE_SIDE} rows of {IMAGE_SIDE} numbers}} (or rows and '
                           f'columns in whole multiples of {IMAGE_SIDE})')
    flat = [v for r in rows for v in r]
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in flat):
        raise TformerError("the pixels must be finite numbers")
    if any(not 0 <= v <= DIGITS_MAX for v in flat):
        raise TformerError(f"the pixels must lie in 0..{DIGITS_MAX:g}")
    h, w = len(rows), len(rows[0])
    image = torch.tensor(flat, dtype=torch.float64).view(1, h, w)  # (1, H, W)
    kernel = (h // IMAGE_SIDE, w // IMAGE_SIDE)
    return F.avg_pool2d(image, kernel).view(IMAGE_SIDE, IMAGE_SIDE).float()  # (1, H, W) -> (S, S): block means


@register_predictor
class VisionPredictor(Predictor):
    """The ViT or Swin classifier of a ``vision`` run."""

    task = VisionTask.name
    input_kind = "image"

    def __init__(self, model: nn.Module, device: torch.device | str = "cpu") -> None:
        self.model, self.device = model.eval(), torch.device(device)
        kind = next(k for k in PRESETS.values() if isinstance(model, k.classifier))
        self.tokens_per_image = kind.tokens_per_image(model.cfg)  # an image's cost in the token budget
        self.scale = model.cfg.image_size // IMAGE_SIDE  # each pixel repeated scale x scale times
        self.labels = [str(k) for k in range(model.cfg.num_classes)]

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike, device: str | torch.device = "cpu") -> VisionPredictor:
        d = check_device(device)
        return cls(run_model(run_dir, d, tuple(k.classifier for k in PRESETS.values()), "vision"), d)

    @cached_property
    def test_split(self) -> ImageSplit:
        """The digits' test split, as task vision holds it out (read on first use)."""
        return load_digits_splits(seed=0, valid_fraction=0.1, test_fraction=0.2).test

    # -- inputs --
    def parse_input(self, line: str) -> str | dict[str, Any]:
        """A JSON object (``{"pixels": ...}``) when the line starts with ``{``, else the string (a path or
        ``digits:N``)."""
        text = line.strip()
        if not text.startswith("{"):
            return text
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise TformerError(f'an image line must be a path, digits:N or {{"pixels": ...}}: {e.msg}') from None

    def pixels_of(self, value: Any, files: bool = True) -> Tensor:
        """One input as (S, S) float32 ink in 0..16 (see the module docstring)."""
        if isinstance(value, dict):
            return pixels_from_json(value)
        if not isinstance(value, str) or not value.strip():
            raise TformerError(f'expected an image path, digits:N or {{"pixels": ...}}, got {value!r:.40}')
        if value.startswith(DIGITS_PREFIX):
            n = value[len(DIGITS_PREFIX):]
            last = len(self.test_split) - 1
            if not n.isdigit() or int(n) > last:
                raise TformerError(f"{value}: N must be a whole number in 0..{last} (the digits' test images)")
            return self.test_split.images[int(n), 0] * DIGITS_MAX  # (S, S)
        if not files:
            raise TformerError('image files are not read here: send {"pixels": 8 rows of 8 numbers in 0..16}')
        return read_image(value)

    def pixels(self, inputs: Sequence[Any], files: bool = True) -> Tensor:
        """Every input as ink in 0..16, (B, S, S) float32; a bad one is a one-line error naming it."""
        if isinstance(inputs, (str, dict)):
            raise TformerError("predict() takes a list of images, not one")
        out = []
        for n, value in enumerate(inputs, start=1):
            try:
                out.append(self.pixels_of(value, files))
            except TformerError as e:
                raise input_error(n, str(e)) from None
        return torch.stack(out) if out else torch.zeros(0, IMAGE_SIDE, IMAGE_SIDE)

    def pixel_values(self, pixels: Tensor) -> Tensor:
        """Ink (B, S, S) in 0..16 -> the model's input (B, C, S', S') in [0, 1], as task vision feeds it."""
        x = (pixels / DIGITS_MAX)[:, None].to(self.device)  # (B, S, S) -> (B, 1, S, S)
        return x.repeat_interleave(self.scale, dim=-2).repeat_interleave(self.scale, dim=-1)  # (B, 1, S', S')

    def model_inputs(self, inputs: Sequence[Any]) -> tuple[Tensor]:
        """The model's input for ``inputs`` as one batch, ``(pixel_values,)`` (ONNX parity checks)."""
        return (self.pixel_values(self.pixels(inputs)),)

    # -- answers --
    @torch.no_grad()
    def predict(self, inputs: Sequence[Any], max_tokens: int = 4096, files: bool = True,
                **options: Any) -> list[dict[str, Any]]:
        """``{"label", "probabilities": {label: p}}`` per image, in order; a batch holds ``max_tokens // tokens per
        image`` images. ``files=False`` refuses paths (a server must not open files a request names): then an
        input is ``{"pixels": ...}`` or ``digits:N``."""
        if options:
            raise TformerError(f"vision predictions take no option {', '.join(sorted(options))}")
        pixels = self.pixels(inputs, files)
        out: list[dict[str, Any]] = [{}] * len(pixels)
        for batch in token_batches([self.tokens_per_image] * len(pixels), max_tokens):
            logits = self.model(self.pixel_values(pixels[batch]))  # (B, K)
            for i, answer in zip(batch, answers(self.labels, logits), strict=True):
                out[i] = answer
        return out

    # -- what the page and /info show --
    def validation_inputs(self) -> list[str]:
        """The digits' test images, as ``digits:N`` (the run never trained on them)."""
        return [f"{DIGITS_PREFIX}{n}" for n in range(len(self.test_split))]

    def example(self) -> dict[str, Any]:
        """Test image 0 as ``{"pixels": ...}`` (whole numbers 0..16), an input the HTTP API takes."""
        return {"pixels": self.pixels_of(f"{DIGITS_PREFIX}0").round().int().tolist()}

    def info(self) -> dict[str, Any]:
        return {"labels": self.labels, "architecture": type(self.model).__name__, "model": self.model.cfg.to_dict(),
                "image_side": IMAGE_SIDE, "pixel_range": [0, DIGITS_MAX]}

    # -- what tformer export writes beside the graph --
    def export_files(self) -> list[str]:
        """None: the graph and export.json are all an exported vision model needs."""
        return []

    def export_meta(self) -> dict[str, Any]:
        """What export.json says about the graph's inputs and outputs."""
        return {"labels": self.labels, "image_side": IMAGE_SIDE, "scale": self.scale,
                "inputs": f"pixel_values (B, 1, {self.model.cfg.image_size}, {self.model.cfg.image_size}): "
                          f"{IMAGE_SIDE}x{IMAGE_SIDE} pixels in 0..{DIGITS_MAX:g} divided by {DIGITS_MAX:g}, each "
                          f"repeated {self.scale} times along both axes",
                "outputs": "logits over the digits 0-9; softmax gives the probabilities"}
