"""Image classification: the Vision Transformer (Dosovitskiy et al., 2021) or the Swin Transformer (Liu et al.,
2021) on a built-in data set.

Data: ``data.train_src: digits``, scikit-learn's bundled 8x8 handwritten digits (no download), split once
and for all (seed 0) into 70% train, 10% validation and 20% test, stratified by class. Training images
are shifted by up to ``vision.max_shift`` pixels at random and, with ``vision.mixup`` = alpha > 0, mixed in
pairs with a Beta(alpha, alpha) weight (the loss mixes the two labels alike); the draws come from the
run's seeded generator, so resuming stays exact. Every image is then scaled up to the model's ``image_size``
(a whole multiple of 8) by repeating each pixel (nearest neighbour), so that a hierarchy of stages has room.
An image costs its patches in the token budget (``train.max_tokens``; plus one for ViT's [class] token), so a
batch holds ``max_tokens // tokens per image`` images.

Model: ``model.preset`` picks the family and its preset from :data:`PRESETS` (``digits``: the
:class:`~tformer.models.vit.model.VisionClassifier`; ``digits_swin``: the
:class:`~tformer.models.swin.model.SwinClassifier`); the other ``model`` keys are fields of that family's config,
on top of the preset. Loss: label-smoothed cross-entropy per image. Validation: loss and accuracy; at the end of
the run the best model (by validation loss) is scored once on the test split (``test_accuracy``).

The config: ``task: vision`` and its section ``vision: {max_shift: 1, mixup: 0.0}``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tformer.config import Config, check, from_dict
from tformer.data.batching import TokenBatchSampler
from tformer.data.images import ImageSplit, ImageSplits, load_digits_splits, random_shift
from tformer.models.swin.model import SwinClassifier, SwinConfig
from tformer.models.vit.model import VisionClassifier, VisionConfig
from tformer.tasks.base import Task, TaskSettings
from tformer.tasks.registry import register
from tformer.training.config import RunConfig
from tformer.training.label_smoothing import LossOutput

DATASETS = ("digits",)
IMAGE_SIDE = 8  # the digits' side in pixels; the model's image_size is a whole multiple of it


@dataclass(frozen=True)
class VisionModel:
    """A model family the task trains: its config class and preset, its classifier, and what an image of a config
    costs in the token budget."""

    config_class: type[Config]
    preset: Callable[..., Config]
    classifier: type[nn.Module]
    tokens_per_image: Callable[[Any], int]


PRESETS: dict[str, VisionModel] = {
    "digits": VisionModel(VisionConfig, VisionConfig.digits, VisionClassifier,
                          tokens_per_image=lambda c: c.num_patches + 1),  # the patches + [class]
    "digits_swin": VisionModel(SwinConfig, SwinConfig.digits, SwinClassifier,
                               tokens_per_image=lambda c: c.num_patches),  # stage 1's patches
}
"""``model.preset`` -> the family and preset it names."""


def model_choice(cfg: RunConfig) -> tuple[VisionModel, dict[str, Any]]:
    """The family that ``model.preset`` names (``digits`` when unset), and the other ``model`` keys."""
    spec = dict(cfg.model)
    name = spec.pop("preset", "digits")
    check(name in PRESETS, f"model.preset must be one of {tuple(PRESETS)} for task vision, got {name!r}")
    return PRESETS[name], spec


def model_config(cfg: RunConfig, num_classes: int = 10) -> Any:
    """The model config of ``cfg``: the preset's, with the ``model`` keys and ``num_classes`` put on top."""
    kind, spec = model_choice(cfg)
    m = from_dict(kind.config_class, {**kind.preset().to_dict(), **spec, "num_classes": num_classes}, where="model")
    check(m.image_size % IMAGE_SIDE == 0, f"model.image_size must be a whole multiple of the digits' side "
                                          f"{IMAGE_SIDE} (they are scaled up to it), got {m.image_size}")
    return m


@dataclass(frozen=True)
class VisionSettings(TaskSettings):
    """The ``vision`` section: the augmentation of training images.

    Attributes:
        max_shift: training images move by up to this many pixels at random (0 = off).
        mixup: alpha of mixup's Beta(alpha, alpha) weight for blending pairs of training images and their
            labels (0 = off).
    """

    max_shift: int = 1
    mixup: float = 0.0

    def __post_init__(self) -> None:
        check(self.max_shift >= 0, "max_shift must be >= 0")
        check(self.mixup >= 0, "mixup must be >= 0")


@dataclass(frozen=True)
class ImageBatch:
    images: Tensor  # (B, C, H, W)
    labels: Tensor  # (B,)
    num_src_tokens: int  # tokens read: the patches (and ViT's [class] token) of every image
    num_tgt_tokens: int  # images: the loss is averaged over them
    mixed_labels: Tensor | None = None  # (B,) mixup: each image is lam * its own + (1 - lam) * another's
    lam: float = 1.0

    def to(self, device, non_blocking: bool = False) -> ImageBatch:
        mixed = None if self.mixed_labels is None else self.mixed_labels.to(device, non_blocking=non_blocking)
        return ImageBatch(self.images.to(device, non_blocking=non_blocking),
                          self.labels.to(device, non_blocking=non_blocking), self.num_src_tokens, self.num_tgt_tokens,
                          mixed, self.lam)


@register
class VisionTask(Task):
    """Images -> the classifier of the preset's family (see the module docstring)."""

    name = "vision"
    unit = "images"
    Settings = VisionSettings

    def __init__(self, splits: ImageSplits, tokens_per_image: int, max_shift: int, mixup: float = 0.0, *,
                 scale: int = 1, classifier: type[nn.Module] = VisionClassifier) -> None:
        self.splits, self.tokens, self.max_shift, self.mixup = splits, tokens_per_image, max_shift, mixup
        self.scale, self.classifier = scale, classifier  # images are scaled up scale x; the best model's class

    # -- the config --
    @classmethod
    def check_config(cls, cfg: RunConfig) -> None:
        check(cfg.data.train_src in DATASETS, f"task vision: data.train_src must be one of {DATASETS}, "
                                              f"got {cfg.data.train_src!r}")
        model_config(cfg)

    @classmethod
    def model_width(cls, cfg: RunConfig) -> int:
        return model_config(cfg).d_model

    @classmethod
    def build(cls, cfg: RunConfig, run_dir: Path, resume: bool) -> tuple[VisionTask, nn.Module]:
        splits = load_digits_splits(seed=0, valid_fraction=0.1, test_fraction=0.2)
        kind = model_choice(cfg)[0]
        m = model_config(cfg, splits.num_classes)
        run_dir.mkdir(parents=True, exist_ok=True)
        settings = cls.settings_from(cfg)
        task = cls(splits, kind.tokens_per_image(m), settings.max_shift, settings.mixup,
                   scale=m.image_size // IMAGE_SIDE, classifier=kind.classifier)
        return task, kind.classifier(m)

    # -- training --

    def _split(self, split: str) -> ImageSplit:
        return getattr(self.splits, split)

    def lengths(self, split: str) -> tuple[list[int], list[int]]:
        n = len(self._split(split))
        return [self.tokens - 1] * n, [0] * n  # the sampler adds 1: an image costs self.tokens

    def collate(self, split: str, indices: list[int], model) -> ImageBatch:
        part, ix = self._split(split), torch.tensor(indices)
        images = part.images[ix]
        labels, mixed, lam = part.labels[ix], None, 1.0
        if split == "train" and self.max_shift:
            images = random_shift(images, self.max_shift)
        if split == "train" and self.mixup > 0:  # mixup (Zhang et al., 2018), drawn from the run's RNG
            lam = float(torch.distributions.Beta(self.mixup, self.mixup).sample())
            perm = torch.randperm(len(indices))
            images, mixed = lam * images + (1.0 - lam) * images[perm], labels[perm]
        if self.scale > 1:  # each pixel repeated scale x scale times: (B, C, 8, 8) -> (B, C, 8 scale, 8 scale)
            images = images.repeat_interleave(self.scale, dim=-2).repeat_interleave(self.scale, dim=-1)
        return ImageBatch(images, labels, len(indices) * self.tokens, len(indices), mixed, lam)

    def loss(self, model: nn.Module, batch: ImageBatch, label_smoothing: float) -> LossOutput:
        logits = model(batch.images).float()  # (B, K)

        def ce(labels: Tensor, eps: float, x: Tensor = logits) -> Tensor:
            out = F.cross_entropy(x, labels, label_smoothing=eps, reduction="sum")
            if batch.mixed_labels is None:
                return out
            mixed = F.cross_entropy(x, batch.mixed_labels, label_smoothing=eps, reduction="sum")
            return batch.lam * out + (1.0 - batch.lam) * mixed

        return LossOutput(ce(batch.labels, label_smoothing), ce(batch.labels, 0.0, logits.detach()),
                          batch.num_tgt_tokens)

    @torch.no_grad()
    def accuracy(self, model: nn.Module, split: str, device: torch.device, max_tokens: int) -> float:
        correct = 0
        for idx in TokenBatchSampler(*self.lengths(split), max_tokens, shuffle=False).batches_for_epoch(0):
            b = self.collate(split, idx, model).to(device)
            correct += int((model(b.images).argmax(-1) == b.labels).sum())
        return correct / len(self._split(split))

    def extra_validation(self, model: nn.Module, device: torch.device, max_tokens: int) -> dict[str, Any]:
        return {"accuracy": self.accuracy(model, "valid", device, max_tokens)}

    def final_report(self, run_dir: Path, device: torch.device, max_tokens: int) -> dict[str, Any]:
        """The best model's accuracy on the test split, once, at the end of the run."""
        best = self.classifier.from_pretrained(run_dir / "model", map_location=device).eval()
        return {"test_accuracy": self.accuracy(best, "test", device, max_tokens), "test_images": len(self.splits.test)}
