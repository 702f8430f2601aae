"""Images of handwritten digits brought to the frame of scikit-learn's 8x8 digits, for the vision predictor.

The digits (UCI "Optical Recognition of Handwritten Digits") were made from NIST's 32 x 32 bitmaps, in which each
digit is size-normalised to fill the frame, by counting the ink pixels of each 4 x 4 block: 8 x 8 values in 0..16.
An image is brought to that frame in the same steps (:func:`digit_frame`):

1. ink in [0, 1]: a file is made grey (Pillow's ``L``: 0.299 R + 0.587 G + 0.114 B; transparent pixels put on
   white first); ink is the minority of a digit's pixels, so an image whose mean grey level is above the middle
   (dark strokes on light paper) is read as ink = (255 - g) / 255, a darker one (light strokes on black, as the
   digits are drawn) as g / 255. ``{"pixels"}`` are ink in 0..16 already (divided by 16).
2. An 8 x 8 image is already in the digits' frame: it is taken as it is (so a digit written to a PNG reads back as
   its own pixels, to the nearest of 256 grey levels).
3. Any other size is a drawing or a photo: the bounding box of its ink (pixels above a quarter of the strongest
   ink) is cut out and scaled, aspect kept, so that its longer side fills a 32 x 32 frame, centred
   (:func:`torch.nn.functional.interpolate`: the mean of the area each pixel covers when shrinking, bilinear when
   enlarging); each 4 x 4 block's mean ink times 16 is then a pixel. A digit drawn k times as large anywhere on a
   page reads as the same 8 x 8 pixels for k = 4, 6, 8. Typed digits (Pillow's default font, 30 px, in 32 x 32
   images) go from 1/10 (ViT) and 2/10 (Swin) recognised without this fitting to 7/10 and 8/10 with it, for runs
   of ``configs/digits_vit.yaml`` and ``digits_swin.yaml`` (97.5% and 98.9% on the test images).

Shape legend: H, W an image's height and width; S = 8, the digits' side.
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from tformer.data.images import DIGITS_MAX
from tformer.errors import TformerError, first_line

SIDE = 8  # the digits' side in pixels
FRAME = 32  # the side of NIST's bitmaps the digits were counted from
GREY_MAX = 255.0
INK_THRESHOLD = 0.25  # of the strongest ink: what counts as the digit for its bounding box


def digit_frame(ink: Tensor) -> Tensor:
    """Ink (H, W) in [0, 1] -> the digits' (S, S) float32 ink in 0..16 (steps 2 and 3 of the module docstring)."""
    if tuple(ink.shape) == (SIDE, SIDE):
        return (ink * DIGITS_MAX).float()
    strong = ink > INK_THRESHOLD * float(ink.max())
    if not bool(strong.any()):  # no ink at all: a blank image
        return torch.zeros(SIDE, SIDE)
    rows, cols = strong.any(dim=1).nonzero().flatten(), strong.any(dim=0).nonzero().flatten()
    box = ink[int(rows[0]) : int(rows[-1]) + 1, int(cols[0]) : int(cols[-1]) + 1]  # (h, w): the digit
    h, w = box.shape
    scale = FRAME / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    mode = "area" if scale <= 1 else "bilinear"  # shrinking: each pixel the mean of the area it covers
    fitted = F.interpolate(box[None, None].double(), size=size, mode=mode)[0, 0]  # (h', w'), the longer side FRAME
    frame = torch.zeros(FRAME, FRAME, dtype=torch.float64)
    top, left = (FRAME - size[0]) // 2, (FRAME - size[1]) // 2
    frame[top : top + size[0], left : left + size[1]] = fitted.clamp(0.0, 1.0)
    block = FRAME // SIDE
    return (F.avg_pool2d(frame[None], block)[0] * DIGITS_MAX).float()  # (FRAME, FRAME) -> (S, S): block means


def read_image(path: str | os.PathLike) -> Tensor:
    """The image file at ``path`` as the digits' (S, S) float32 ink in 0..16 (see the module docstring).

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
            grey = img.convert("L")
            g = torch.frombuffer(bytearray(grey.tobytes()), dtype=torch.uint8).view(grey.height, grey.width)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as e:
        raise TformerError(f"cannot read the image {path}: {first_line(e)}") from None
    g = g.double() / GREY_MAX  # (H, W) in [0, 1]
    return digit_frame(1.0 - g if float(g.mean()) > 0.5 else g)  # dark ink on light paper, or light on dark


def pixels_from_json(value: Any) -> Tensor:
    """``{"pixels": rows of numbers in 0..16}`` -> the digits' (S, S) float32 ink (TformerError in one line
    otherwise); rows of another size than 8 x 8 are a drawing (:func:`digit_frame`)."""
    rows = value.get("pixels") if isinstance(value, dict) else None
    shape_ok = (isinstance(rows, list) and len(rows) > 0 and isinstance(rows[0], list) and len(rows[0]) > 0
                and all(isinstance(r, list) and len(r) == len(rows[0]) for r in rows))
    if not shape_ok or set(value) != {"pixels"}:
        raise TformerError(f'an image must be {{"pixels": {SIDE} rows of {SIDE} numbers}} (or rows of another, '
                           f'equal length: a drawing)')
    flat = [v for r in rows for v in r]
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in flat):
        raise TformerError("the pixels must be finite numbers")
    if any(not 0 <= v <= DIGITS_MAX for v in flat):
        raise TformerError(f"the pixels must lie in 0..{DIGITS_MAX:g}")
    ink = torch.tensor(flat, dtype=torch.float64).view(len(rows), len(rows[0])) / DIGITS_MAX  # (H, W) in [0, 1]
    return digit_frame(ink)
