"""Small real image data for the Vision Transformer, with nothing to download.

:func:`load_digits_splits` reads scikit-learn's bundled handwritten digits (``sklearn.datasets.load_digits``:
1,797 grey 8x8 images of the digits 0-9, from the UCI "Optical Recognition of Handwritten Digits" set, pixel
values 0..16), scales them to [0, 1] and splits them into train / validation / test sets, stratified by
class and fixed by a seed. :func:`mixup` (the augmentation the digits recipe trains with) and :func:`random_shift`
make more training images from them.

Shape legend: N images, C channels (1), S image side (8), K classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from tformer.errors import TformerError

DIGITS_MAX = 16.0  # load_digits pixel values are 0..16


@dataclass(frozen=True)
class ImageSplit:
    """One split: ``images`` (N, C, S, S) float32 in [0, 1] and ``labels`` (N,) int64."""

    images: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return self.labels.shape[0]


@dataclass(frozen=True)
class ImageSplits:
    """Train, validation and test splits of one data set, and its number of classes."""

    train: ImageSplit
    valid: ImageSplit
    test: ImageSplit
    num_classes: int


def _sklearn():
    try:
        import sklearn.datasets
        import sklearn.model_selection
    except ModuleNotFoundError:
        raise TformerError("the digits data set needs scikit-learn: pip install scikit-learn") from None
    return sklearn


def load_digits_splits(seed: int = 0, valid_fraction: float = 0.1, test_fraction: float = 0.2) -> ImageSplits:
    """scikit-learn's 8x8 digits as (N, 1, 8, 8) images in [0, 1], split stratified by class.

    The test split is taken first (``test_fraction`` of all images), then the validation split
    (``valid_fraction`` of all images) from the rest; the remainder is the training split. The same seed
    gives the same splits; every image is in exactly one split.

    Raises:
        TformerError: scikit-learn is missing, or the fractions leave no training images.
    """
    if not (0.0 < test_fraction < 1.0 and 0.0 < valid_fraction < 1.0 and valid_fraction + test_fraction < 1.0):
        raise TformerError(
            f"valid_fraction and test_fraction must be in (0, 1) with a sum below 1, got {valid_fraction} and "
            f"{test_fraction}"
        )
    sklearn = _sklearn()
    x, y = sklearn.datasets.load_digits(return_X_y=True)  # (1797, 64) float64 in 0..16, (1797,)
    index = torch.arange(len(y)).numpy()
    split = sklearn.model_selection.train_test_split
    rest, test = split(index, test_size=test_fraction, stratify=y, random_state=seed)
    train, valid = split(rest, test_size=valid_fraction / (1.0 - test_fraction), stratify=y[rest],
                         random_state=seed)
    images = torch.as_tensor(x, dtype=torch.float32).view(-1, 1, 8, 8) / DIGITS_MAX  # (N, 64) -> (N, C, S, S)
    labels = torch.as_tensor(y, dtype=torch.int64)

    def part(ix) -> ImageSplit:
        ix = torch.as_tensor(sorted(ix), dtype=torch.int64)
        return ImageSplit(images[ix].contiguous(), labels[ix].contiguous())

    return ImageSplits(part(train), part(valid), part(test), num_classes=10)


def random_shift(images: Tensor, max_shift: int = 1, generator: torch.Generator | None = None) -> Tensor:
    """Each image moved by its own random whole-pixel offset in [-max_shift, max_shift] along each axis; the
    pixels moved in are 0 (the background of the digits).

    images (N, C, S, S) -> (N, C, S, S).
    """
    if max_shift == 0:
        return images
    n, _, h, w = images.shape
    m = max_shift
    padded = torch.nn.functional.pad(images, (m, m, m, m))  # (N, C, S + 2m, S + 2m)
    dy, dx = torch.randint(0, 2 * m + 1, (2, n), generator=generator, device=images.device)  # (N,) each
    rows = (dy[:, None] + torch.arange(h, device=images.device))  # (N, S): rows of the padded image to read
    cols = (dx[:, None] + torch.arange(w, device=images.device))  # (N, S)
    batch = torch.arange(n, device=images.device)[:, None, None]  # (N, 1, 1)
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (N, S, S, C)
    return out.permute(0, 3, 1, 2).contiguous()  # (N, S, S, C) -> (N, C, S, S)


def mixup(images: Tensor, labels: Tensor, num_classes: int, alpha: float) -> tuple[Tensor, Tensor]:
    """Mixup (Zhang et al., 2018): the batch blended with a shuffled copy of itself, one λ ~ Beta(α, α) per batch.

        x = λ x_i + (1 - λ) x_j,   t = λ onehot(y_i) + (1 - λ) onehot(y_j)

    Train on it with ``torch.nn.functional.cross_entropy(logits, targets)`` (class probabilities as targets;
    label smoothing composes). Draws from torch's default generator.

    Args:
        images: (N, C, S, S); labels: (N,) int64; alpha: Beta's parameter (0 = no mixing).

    Returns:
        mixed images (N, C, S, S) and target probabilities (N, K), rows summing to 1.
    """
    targets = torch.nn.functional.one_hot(labels, num_classes).to(images.dtype)  # (N, K)
    if alpha <= 0:
        return images, targets
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    j = torch.randperm(images.shape[0], device=images.device)  # each image's partner
    return lam * images + (1 - lam) * images[j], lam * targets + (1 - lam) * targets[j]
