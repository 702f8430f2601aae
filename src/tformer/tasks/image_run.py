"""An image classifier trained elsewhere (``task: image_classify``; ``tformer import`` of a Hugging Face
``ViTForImageClassification`` folder writes it): RGB images of any size in, labels and probabilities out.

The run holds ``model/`` (a :class:`~tformer.models.vit.model.VisionClassifier`), ``labels.json`` (the labels in
id order) and ``image_processor.json`` (:class:`~tformer.models.vit.image_processor.ImageProcessor`: how an image is
resized, rescaled and normalized, as the model's own processor did in training). An input is

* ``{"pixels": H rows of W [r, g, b]}``, whole numbers 0..255: the image itself (what the HTTP API takes);
* any other string: the path of an image file, read with Pillow in RGB (``tformer predict`` and Python; the HTTP API
  reads no files, see :meth:`ImageClassifierPredictor.predict`'s ``files``).

Unlike a ``vision`` run (the 8x8 digits it trained on: :mod:`tformer.tasks.vision_run`), such a run has no data of
its own: the inputs it checks an ONNX export on are seeded random images (:meth:`validation_inputs`).

Shape legend: B images, C = 3 channels, S the model's image_size, K labels.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from tformer.config import ConfigError
from tformer.errors import TformerError
from tformer.io.files import read_json
from tformer.models.vit.image_processor import PROCESSOR_FILE, ImageProcessor, image_from_pixels, read_rgb_image
from tformer.models.vit.model import VisionClassifier
from tformer.tasks.classifier_runs import answers, check_device, input_error, run_model, token_batches
from tformer.tasks.predictor import Predictor, register_predictor, text_or_json_input

TASK = "image_classify"
LABELS_FILE = "labels.json"
CHECK_IMAGES = 8  # seeded random images an export is checked on (the run has no data)


@register_predictor
class ImageClassifierPredictor(Predictor):
    """The ViT of an ``image_classify`` run, its image processor and labels."""

    task = TASK
    input_kind = "rgb_image"

    def __init__(self, model: VisionClassifier, processor: ImageProcessor, labels: list[str],
                 run_dir: str | os.PathLike | None = None, device: torch.device | str = "cpu") -> None:
        c = model.cfg
        if (processor.height, processor.width) != (c.image_size, c.image_size) or c.num_channels != 3:
            raise TformerError(f"the image processor makes {processor.height}x{processor.width} RGB images; the model "
                               f"reads {c.image_size}x{c.image_size} with {c.num_channels} channel(s)")
        if len(labels) != c.num_classes:
            raise TformerError(f"{len(labels)} labels for a model of {c.num_classes} classes")
        self.model, self.processor, self.labels = model.eval(), processor, labels
        self.run_dir, self.device = run_dir, torch.device(device)
        self.tokens_per_image = c.num_patches + 1  # the patches + [class]: an image's cost in the token budget

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike, device: str | torch.device = "cpu") -> ImageClassifierPredictor:
        d = check_device(device)
        model = run_model(run_dir, d, (VisionClassifier,), TASK)
        run = Path(run_dir)
        for name in (PROCESSOR_FILE, LABELS_FILE):
            if not (run / name).is_file():
                raise TformerError(f"{run} has no {name}: it is not a complete {TASK} run")
        try:
            processor = ImageProcessor.load_json(run / PROCESSOR_FILE)
        except ConfigError as e:
            raise TformerError(str(e)) from None
        labels = read_json(run / LABELS_FILE).get("labels")
        if not isinstance(labels, list):
            raise TformerError(f"{run / LABELS_FILE} must hold the labels, in id order")
        return cls(model, processor, [str(y) for y in labels], run, d)

    # -- inputs --
    def parse_input(self, line: str) -> str | dict[str, Any]:
        """A JSON object (``{"pixels": ...}``) when the line starts with ``{``, else the string (a path)."""
        return text_or_json_input(line, 'an image line must be a path or {"pixels": ...}')

    def image_of(self, value: Any, files: bool = True) -> np.ndarray:
        """One input as an RGB image, (H, W, C) uint8 (see the module docstring)."""
        if isinstance(value, dict):
            return image_from_pixels(value)
        if not isinstance(value, str) or not value.strip():
            raise TformerError(f'expected an image path or {{"pixels": ...}}, got {value!r:.40}')
        if not files:
            raise TformerError('image files are not read here: send {"pixels": H rows of W [r, g, b] in 0..255}')
        return read_rgb_image(value)

    def images(self, inputs: Sequence[Any], files: bool = True) -> list[np.ndarray]:
        """Every input as an RGB image; a bad one is a one-line error naming it."""
        if isinstance(inputs, (str, dict)):
            raise TformerError("predict() takes a list of images, not one")
        out = []
        for n, value in enumerate(inputs, start=1):
            try:
                out.append(self.image_of(value, files))
            except TformerError as e:
                raise input_error(n, str(e)) from None
        return out

    def model_inputs(self, inputs: Sequence[Any]) -> tuple[Tensor]:
        """The model's input for ``inputs`` as one batch, ``(pixel_values,)`` (ONNX parity checks)."""
        return (self.processor.pixel_values(self.images(inputs)).to(self.device),)

    # -- answers --
    @torch.no_grad()
    def predict(self, inputs: Sequence[Any], max_tokens: int = 4096, files: bool = True,
                **options: Any) -> list[dict[str, Any]]:
        """``{"label", "probabilities": {label: p}}`` per image, in order; a batch holds ``max_tokens // tokens per
        image`` images. ``files=False`` refuses paths (a server must not open files a request names)."""
        if options:
            raise TformerError(f"image predictions take no option {', '.join(sorted(options))}")
        images = self.images(inputs, files)
        out: list[dict[str, Any]] = [{}] * len(images)
        for batch in token_batches([self.tokens_per_image] * len(images), max_tokens):
            pixel_values = self.processor.pixel_values([images[i] for i in batch]).to(self.device)  # (B, C, S, S)
            for i, answer in zip(batch, answers(self.labels, self.model(pixel_values)), strict=True):
                out[i] = answer
        return out

    # -- what the page, /info and tformer export read --
    def validation_inputs(self) -> list[dict[str, Any]]:
        """:data:`CHECK_IMAGES` seeded random images of the processor's size, as ``{"pixels": ...}`` (the run has
        no held-out data; noise is enough to check an exported graph's arithmetic)."""
        rng = np.random.default_rng(0)
        shape = (self.processor.height, self.processor.width, 3)
        return [{"pixels": rng.integers(0, 256, shape).tolist()} for _ in range(CHECK_IMAGES)]

    def info(self) -> dict[str, Any]:
        return {"labels": self.labels, "architecture": type(self.model).__name__, "model": self.model.cfg.to_dict(),
                "image_processor": self.processor.to_dict()}

    def export_files(self) -> list[str]:
        """The run's ``image_processor.json`` and ``labels.json``, beside the graph."""
        return [str(Path(self.run_dir) / name) for name in (PROCESSOR_FILE, LABELS_FILE)] if self.run_dir else []

    def export_meta(self) -> dict[str, Any]:
        """What export.json says about the graph's inputs and outputs."""
        p, side = self.processor, self.model.cfg.image_size
        steps = [f"resized to {p.width}x{p.height} ({p.resample})" if p.do_resize else "",
                 f"times {p.rescale_factor:.6g}" if p.do_rescale else "",
                 f"minus image_mean {list(p.image_mean)}, over image_std {list(p.image_std)}" if p.do_normalize else ""]
        return {"labels": self.labels, "image_processor": p.to_dict(),
                "inputs": f"pixel_values (B, 3, {side}, {side}) float32: an RGB image (0..255) "
                          + ", ".join(s for s in steps if s) + f" ({PROCESSOR_FILE})",
                "outputs": "logits over the labels; softmax gives the probabilities"}
