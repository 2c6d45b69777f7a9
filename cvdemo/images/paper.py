"""Photos of paper: find the digit on a photographed sheet, whatever the light, lines and table.

A phone photo of a digit is paper of uneven brightness, often ruled or squared, sometimes lying
on a table, with the digit somewhere near the middle. The steps, each kept in :class:`PaperSteps`
so the app can show why a photo was read as it was:

1. **background**: the paper's colour and light, estimated per channel by a grey closing (which
   removes every dark feature narrower than the window and keeps step edges such as the sheet's)
   at about a fifth of the working scale;
2. **flattened**: each pixel divided by its background, so ink is a contrast in [0, 1] under
   bright light and shadow alike, for black, blue or grey (pencil) ink;
3. **sheet**: the paper, that is everything but a table reaching the frame that is much darker
   than the paper or of another colour; the table and a margin inside the sheet's edge are dropped;
4. **lines**: ruled and squared lines, found by long openings along the paper's own direction
   (estimated from the lines, so the digit is deskewed with them) and removed where there are
   at least two parallel ones, with the strokes they cross filled back from either side;
5. **strokes**: ink by hysteresis, grouped into strokes close to one another, and the digit
   chosen as the strongest group near the centre that does not touch the frame.

Only numpy, scipy and Pillow.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .decode import NoInkError

_BG_SIDE = 96            # the background is estimated at this scale
_MARGIN = 0.012          # of the image's longer side: dropped inside the sheet's edge
_LINE_LONG = 0.35        # a line runs at least this fraction of the image
_SEED_CONTRAST = 0.2     # the darkest ink of a digit is at least this much darker than its paper
_ANGLES = np.arange(-10.0, 10.5, 1.0)   # paper tilts searched for ruled lines, degrees
NO_DIGIT = "No digit found in the photo: the sheet looks blank. Write or draw one digit, large and near the centre."


@dataclass
class PaperSteps:
    """What the photo steps saw, at the working scale (H, W); all ink maps are in [0, 1]."""

    picture: np.ndarray     # (H, W, 3) uint8, the input as the steps saw it (deskewed when lines set the angle)
    flattened: np.ndarray   # ink contrast after the background is divided out
    lines: np.ndarray       # what line suppression took away
    ink: np.ndarray         # what is left inside the sheet
    sheet: np.ndarray       # bool: the paper region
    mask: np.ndarray        # bool: the strokes chosen as the digit
    box: tuple[int, int, int, int]   # (top, bottom, left, right) of the digit, bottom/right exclusive
    angle: float            # degrees the picture was turned to make the paper's lines level


# ----------------------------------------------------------------------------- deciding

def is_clean(gray: np.ndarray, paper: float) -> bool:
    """True for a drawing or scan on perfectly flat paper (a canvas, an MNIST digit, a clean scan).

    Those keep the plain ink path pixel for pixel. A photo always has noise, shading or a texture
    in its paper; ruled paper has three or more thin rows (or columns) that are nearly all ink
    (a digit has at most two: a 0's top and bottom, a 2's arc and base).
    """
    a = gray.astype(np.int16)
    near = np.abs(a - int(round(paper))) < 48
    if not near.any():
        return True
    if float(np.median(np.abs(a[near] - paper))) > 1.0:     # measured: 0 on every clean set, >= 2 on photos
        return False
    inked = ~near
    for axis in (0, 1):
        full = np.concatenate([[0], (inked.mean(axis=axis) > 0.8).astype(np.int8), [0]])
        starts, stops = np.flatnonzero(np.diff(full) == 1), np.flatnonzero(np.diff(full) == -1)
        thin = (stops - starts) <= max(2, 0.03 * full.size)      # lines are thin, a digit's strokes are not
        if np.count_nonzero(thin) >= 3:
            return False
    return True


# ----------------------------------------------------------------------------- steps

def _resize(a: np.ndarray, size: tuple[int, int], resample=Image.Resampling.BILINEAR) -> np.ndarray:
    """(H, W) float -> (size[1], size[0]) float through Pillow's float mode."""
    return np.asarray(Image.fromarray(np.ascontiguousarray(a, np.float32), mode="F").resize(size, resample))


def _small(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) float -> the same averaged down to about _BG_SIDE on its longer side."""
    h, w = rgb.shape[:2]
    f = max(h, w) / _BG_SIDE
    size = (max(8, round(w / f)), max(8, round(h / f)))
    return np.stack([_resize(rgb[..., c], size, Image.Resampling.BOX) for c in range(3)], -1)


def background(small: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) float: the paper's colour and light, from the small picture with the ink closed over."""
    from scipy import ndimage

    k = max(3, round(0.08 * min(small.shape[:2]))) | 1
    closed = [ndimage.grey_closing(small[..., c], size=(k, k)) for c in range(3)]
    return np.stack([_resize(c, (shape[1], shape[0])) for c in closed], -1)


def flatten_light(rgb: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """Ink contrast: how much darker than its own paper each pixel is, in the darkest channel."""
    darkest = rgb[..., 0] / np.maximum(bg[..., 0], 8.0)
    for c in (1, 2):
        np.minimum(darkest, rgb[..., c] / np.maximum(bg[..., c], 8.0), out=darkest)
    return np.clip(1.0 - darkest, 0.0, 1.0).astype(np.float32)


def sheet_region(small: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The paper: everything but a table around it. A table is what reaches the frame and is
    much darker than the paper at the centre (a dark desk) or of another colour (wood); a light,
    grey table is left in, and its straight edges go with the lines."""
    from scipy import ndimage

    light = np.stack([ndimage.grey_closing(small[..., c], size=(3, 3)) for c in range(3)], -1)   # thin ink gone
    lum = light.mean(axis=-1)
    sh, sw = lum.shape
    centre = (slice(sh * 3 // 10, sh * 7 // 10 + 1), slice(sw * 3 // 10, sw * 7 // 10 + 1))
    bright = lum[centre] >= np.median(lum[centre])            # the centre's paper, not its ink
    ref = np.median(light[centre][bright], axis=0)
    ref_lum = max(float(ref.mean()), 1.0)
    chroma = np.abs(light / np.maximum(lum, 1.0)[..., None] - ref / ref_lum).max(axis=-1)
    off = (lum < 0.45 * ref_lum) | (chroma > 0.1)
    labels, n = ndimage.label(off)
    if n == 0:
        return np.ones(shape, bool)
    frame = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    table_ids = [i for i in frame if i and sizes[i] >= 0.01 * lum.size]
    if not table_ids:
        return np.ones(shape, bool)
    table = ndimage.binary_dilation(np.isin(labels, table_ids), iterations=1)
    if table.mean() > 0.85:                                  # no paper stands out: keep everything
        return np.ones(shape, bool)
    full = _resize((~table).astype(np.float32), (shape[1], shape[0]), Image.Resampling.NEAREST) > 0.5
    margin = max(2, round(_MARGIN * max(shape)))
    return ndimage.minimum_filter(full.view(np.uint8), 2 * margin + 1, mode="nearest").view(bool)


def paper_angle(ink: np.ndarray) -> float:
    """The tilt (degrees, for ``Image.rotate``) that makes the paper's lines and edges level, or 0.

    Turned level, a straight line adds up along one row (or column) into a sharp peak of the
    projection profile; a digit's curved strokes do not. The score is the profiles' roughness
    (squared differences of neighbouring rows and columns): searched over ``_ANGLES`` on a
    128-px copy, then refined by half a degree at 256 px.
    """
    def copy(side: int) -> Image.Image:
        h, w = ink.shape
        f = max(1.0, max(h, w) / side)
        small = _resize(ink, (max(8, round(w / f)), max(8, round(h / f))), Image.Resampling.BOX)
        return Image.fromarray(np.rint(np.clip(small, 0, 1) * 255).astype(np.uint8), "L")

    def roughness(picture: Image.Image, angle: float) -> float:
        turned = np.asarray(picture.rotate(angle, Image.Resampling.BILINEAR), np.float32)
        return float((np.diff(turned.sum(axis=1)) ** 2).sum() + (np.diff(turned.sum(axis=0)) ** 2).sum())

    coarse = copy(128)
    scores = np.array([roughness(coarse, float(a)) for a in _ANGLES])
    best = int(scores.argmax())
    if scores[best] < 1.3 * float(np.median(scores)):
        return 0.0                     # nothing straight stands out: plain paper, a digit alone
    fine = copy(256)
    around = [float(_ANGLES[best]) + d for d in (-0.5, 0.0, 0.5)]
    return max(around, key=lambda a: roughness(fine, a))


def _lines_along(ink: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Lines running along ``axis`` (1: rows, horizontal lines; 0: columns): their map and the ink
    with them removed, keeping what crosses them."""
    from scipy import ndimage

    length = max(12, round(ink.shape[axis] / 6))
    across = 1 - axis
    thick = ndimage.maximum_filter1d(ink, 5, axis=across)       # tolerates a little slope and perspective
    size = (1, length) if axis == 1 else (length, 1)
    opened = np.minimum(ndimage.grey_opening(thick, size=size), ink)
    labels, n = ndimage.label(opened > 0.05)
    if n == 0:
        return np.zeros_like(ink), ink
    boxes = ndimage.find_objects(labels)
    long_ones = [i + 1 for i, b in enumerate(boxes)
                 if b[axis].stop - b[axis].start >= _LINE_LONG * ink.shape[axis]]
    if len(long_ones) < 2:          # one long stroke is a digit's (a 1, a 2's base), not ruling
        return np.zeros_like(ink), ink
    on_line = np.isin(labels, long_ones)
    widths = [(labels == i).sum() / max(1, boxes[i - 1][axis].stop - boxes[i - 1][axis].start) for i in long_ones]
    d = int(np.ceil(np.median(widths))) + 2
    fill = np.minimum(np.roll(ink, d, axis=across), np.roll(ink, -d, axis=across))
    lines = np.where(on_line, opened, 0).astype(np.float32)
    cleaned = np.where(on_line, np.maximum(ink - opened, fill), ink)
    return lines, cleaned.astype(np.float32)


def suppress_lines(ink: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Remove ruled (horizontal) and squared (both) lines; returns (lines removed, ink left)."""
    lines_h, ink = _lines_along(ink, 1)
    lines_v, ink = _lines_along(ink, 0)
    return np.maximum(lines_h, lines_v), ink


def choose_digit(ink: np.ndarray) -> np.ndarray:
    """The strokes of the digit: hysteresis-thresholded ink, grouped by proximity, scored by
    strength, nearness to the centre and not touching the frame. Raises NoInkError."""
    from scipy import ndimage

    h, w = ink.shape
    strong = float(ink.max())
    if strong < _SEED_CONTRAST:
        raise NoInkError(NO_DIGIT)
    high = max(_SEED_CONTRAST, 0.45 * float(np.percentile(ink[ink > 0.05], 99.5)) if (ink > 0.05).any() else 1)
    low = 0.5 * high
    labels, n = ndimage.label(ink > low, structure=np.ones((3, 3)))
    seeded = np.unique(labels[ink > high])
    mask = np.isin(labels, seeded[seeded > 0])
    reach = max(3, round(0.025 * max(h, w)))
    groups, n = ndimage.label(ndimage.maximum_filter(mask.astype(np.uint8), 2 * reach + 1) > 0)
    if n == 0:
        raise NoInkError(NO_DIGIT)
    masses = ndimage.sum_labels(np.where(mask, ink, 0), groups, index=np.arange(1, n + 1))
    scores = []
    for i, box in enumerate(ndimage.find_objects(groups)):
        ys, xs = box
        cy, cx = (ys.start + ys.stop) / 2 / h - 0.5, (xs.start + xs.stop) / 2 / w - 0.5
        score = masses[i] * np.exp(-(cy * cy + cx * cx) / (2 * 0.3 ** 2))
        if ys.start <= 1 or xs.start <= 1 or ys.stop >= h - 1 or xs.stop >= w - 1:
            score *= 0.15
        tall, wide = ys.stop - ys.start, xs.stop - xs.start
        extent = tall * wide
        if max(tall, wide) > 0.7 * max(h, w) or (tall > 0.65 * h and wide * 6 < tall):
            score *= 0.2            # longer than a digit gets in a photo: an edge or a margin
        if wide > 0.25 * w and tall * 6 < wide:
            score *= 0.1            # a long flat line on its own: a sheet's edge or its shadow
        if extent > 0.4 * h * w and np.count_nonzero(mask[box] & (groups[box] == i + 1)) < 0.04 * extent:
            score *= 0.05           # a hollow frame round everything: the sheet's outline, not a digit
        scores.append(score)
    best = int(np.argmax(scores)) + 1
    chosen = mask & (groups == best)
    ys, xs = np.nonzero(chosen)
    if max(np.ptp(ys), np.ptp(xs)) + 1 < max(8, 0.03 * max(h, w)):
        raise NoInkError(NO_DIGIT)
    return chosen


def read_paper(rgb: np.ndarray) -> PaperSteps:
    """A photo (H, W, 3) uint8 of dark ink on light paper -> the steps, the digit's strokes last."""
    from scipy import ndimage

    a = rgb.astype(np.float32)
    small = _small(a)
    flattened = flatten_light(a, background(small, a.shape[:2]))
    sheet = sheet_region(small, flattened.shape)
    ink = np.where(sheet, flattened, 0).astype(np.float32)
    angle = paper_angle(ink)
    picture = rgb
    if angle:
        turn = lambda m: np.asarray(Image.fromarray(m.astype(np.float32), "F").rotate(angle, Image.Resampling.BILINEAR))
        ink, flattened = turn(ink), turn(flattened)
        sheet = turn(sheet) > 0.5
        picture = np.asarray(Image.fromarray(rgb).rotate(angle, Image.Resampling.BILINEAR, fillcolor=(255, 255, 255)))
    lines, ink = suppress_lines(ink)
    mask = choose_digit(ink)
    # the chosen strokes plus their faint edges, for the crop's anti-aliasing
    mask = ndimage.binary_dilation(mask, iterations=1) & (ink > 0.05)
    ys, xs = np.nonzero(mask)
    box = (int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1)
    return PaperSteps(picture, flattened, lines, ink, sheet, mask, box, angle)
