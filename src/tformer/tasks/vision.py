"""Image classification: the Vision Transformer (Dosovitskiy et al., 2021) on a built-in data set.

Data: ``data.train_src: digits``, scikit-learn's bundled 8x8 handwritten digits (no download), split once
and for all (seed 0) into 70% train, 10% validation and 20% test, stratified by class. Training images
are shifted by up to ``vision.max_shift`` pixels at random and, with ``vision.mixup`` = alpha > 0, mixed in
pairs with a Beta(alpha, alpha) weight (the loss mixes the two labels alike); the draws come from the
run's seeded generator, so resuming stays exact. An image of P patches costs P + 1 tokens in the token
budget (``train.max_tokens``), so a batch holds ``max_tokens // (P + 1)`` images.

Model: :class:`tformer.models.vit.model.VisionClassifier`, :class:`VisionConfig` fields on the ``digits``
preset. Loss: label-smoothed cross-entropy per image. Validation: loss and accuracy; at the end of the
run the best model (by validation loss) is scored once on the test split (``test_accuracy``).

The config: ``task: vision`` and its section ``vision: {max_shift: 1, mixup: 0.0}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from tformer.config import check, from_dict
from tformer.data.batching import TokenBatchSampler
from tformer.data.images import ImageSplit, ImageSplits, load_digits_splits, random_shift
from tformer.models.vit.model import VisionClassifier, VisionConfig
from tformer.tasks.base import Task, TaskSettings
from tformer.tasks.registry import register
from tformer.training.config import RunConfig
from tformer.training.label_smoothing import LossOutput

DATASETS = ("digits",)


def model_config(cfg: RunConfig, num_classes: int = 10) -> VisionConfig:
    spec = dict(cfg.model)
    check(spec.pop("preset", "digits") == "digits", "model.preset must be digits for task vision")
    return from_dict(VisionConfig, {**VisionConfig.digits().to_dict(), **spec, "num_classes": num_classes},
                     where="model")


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
    num_src_tokens: int  # patches + [class] tokens read
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
    """Images -> :class:`VisionClassifier` (see the module docstring)."""

    name = "vision"
    unit = "images"
    Settings = VisionSettings

    def __init__(self, splits: ImageSplits, tokens_per_image: int, max_shift: int, mixup: float = 0.0) -> None:
        self.splits, self.tokens, self.max_shift, self.mixup = splits, tokens_per_image, max_shift, mixup

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
    def build(cls, cfg: RunConfig, run_dir: Path, resume: bool) -> tuple[VisionTask, VisionClassifier]:
        splits = load_digits_splits(seed=0, valid_fraction=0.1, test_fraction=0.2)
        m = model_config(cfg, splits.num_classes)
        run_dir.mkdir(parents=True, exist_ok=True)
        settings = cls.settings_from(cfg)
        return cls(splits, m.num_patches + 1, settings.max_shift, settings.mixup), VisionClassifier(m)

    # -- training --

    def _split(self, split: str) -> ImageSplit:
        return getattr(self.splits, split)

    def lengths(self, split: str) -> tuple[list[int], list[int]]:
        n = len(self._split(split))
        return [self.tokens - 1] * n, [0] * n  # the sampler adds 1: P patches + [class]

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
        return ImageBatch(images, labels, len(indices) * self.tokens, len(indices), mixed, lam)

    def loss(self, model: VisionClassifier, batch: ImageBatch, label_smoothing: float) -> LossOutput:
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
    def accuracy(self, model: VisionClassifier, split: str, device: torch.device, max_tokens: int) -> float:
        correct = 0
        for idx in TokenBatchSampler(*self.lengths(split), max_tokens, shuffle=False).batches_for_epoch(0):
            b = self.collate(split, idx, model).to(device)
            correct += int((model(b.images).argmax(-1) == b.labels).sum())
        return correct / len(self._split(split))

    def extra_validation(self, model: VisionClassifier, device: torch.device, max_tokens: int) -> dict[str, Any]:
        return {"accuracy": self.accuracy(model, "valid", device, max_tokens)}

    def final_report(self, run_dir: Path, device: torch.device, max_tokens: int) -> dict[str, Any]:
        """The best model's accuracy on the test split, once, at the end of the run."""
        best = VisionClassifier.from_pretrained(run_dir / "model", map_location=device).eval()
        return {"test_accuracy": self.accuracy(best, "test", device, max_tokens), "test_images": len(self.splits.test)}
