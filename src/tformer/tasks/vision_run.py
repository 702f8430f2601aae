"""A trained ``task: vision`` run (:mod:`tformer.tasks.vision`, ViT or Swin on the 8x8 digits): images in, digits
and probabilities out.

An input is one of

* ``{"pixels": [[...8 numbers...] x 8]}``: the image itself, 8 rows of 8 values in 0..16 (0 = background,
  16 = full ink), the scale of scikit-learn's digits; what the HTTP API takes. Rows of another size are a drawing,
  brought to the digits' frame as a file is;
* ``"digits:N"``: image N of the digits' test split (the split the run never trained on);
* any other string: the path of an image file, read with Pillow (``tformer predict`` and Python; the HTTP API
  reads no files, see :meth:`VisionPredictor.predict`'s ``files``).

How files and drawings become the digits' 8 x 8 ink: :mod:`tformer.tasks.digit_images`. Then, as in training,
the pixels are divided by 16 (:data:`tformer.data.images.DIGITS_MAX`) and each is repeated to the model's
``image_size`` (:class:`~tformer.tasks.vision.VisionTask`).

Labels are the digits as strings, ``"0"`` to ``"9"``.

Shape legend: B images, C channels (1), S = 8 pixels a side, S' the model's image_size.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import cached_property
from typing import Any

import torch
from torch import Tensor, nn

from tformer.data.images import DIGITS_MAX, ImageSplit, load_digits_splits
from tformer.errors import TformerError
from tformer.tasks.classifier_runs import answers, check_device, input_error, run_model, token_batches
from tformer.tasks.digit_images import pixels_from_json, read_image
from tformer.tasks.predictor import Predictor, register_predictor, text_or_json_input
from tformer.tasks.vision import IMAGE_SIDE, PRESETS, VisionTask

DIGITS_PREFIX = "digits:"


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
        return text_or_json_input(line, 'an image line must be a path, digits:N or {"pixels": ...}')

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
