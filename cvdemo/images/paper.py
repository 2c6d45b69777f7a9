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

from .decode import BLANK, NoInkError

_BG_SIDE = 96            # the background is estimated at this scale
_MARGIN = 0.012          # of the image's longer side: dropped inside the sheet's edge
_LINE_LONG = 0.35        # a line runs at least this fraction of the image
_SEED_CONTRAST = 0.2     # the darkest ink of a digit is at least this much darker than its paper
_ANGLES = np.arange(-10.0, 10.5, 1.0)   # paper tilts searched for ruled lines, degrees


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

def _median_above(values: np.ndarray, limit: float) -> bool:
    """``np.median(values) > limit``, by counting when the count settles it (a clean canvas's
    paper is exactly flat: no value above the limit), by the median itself otherwise."""
    above, n = int(np.count_nonzero(values > limit)), values.size
    if above < n / 2 - 1:          # both middle values are at most the limit
        return False
    if above > n / 2 + 1:          # both middle values are above it
        return True
    return float(np.median(values)) > limit


def is_clean(gray: np.ndarray, paper: float) -> bool:
    """True for a drawing or scan on perfectly flat paper (a canvas, an MNIST digit, a clean scan).

    Those keep the plain ink path pixel for pixel. A photo always has noise, shading or a texture
    in its paper; ruled paper has four or more thin rows (or columns) that are nearly all ink
    (a digit has at most three: a 5's or a 3's bars, a 0's top and bottom).
    """
    from scipy import ndimage

    a = gray.astype(np.int16)
    near = np.abs(a - int(round(paper))) < 48
    inked = ~near
    # the paper a few pixels away from any ink: an upscaled scan's soft halo is not noise
    far = near & ~ndimage.maximum_filter(inked.view(np.uint8), 7).view(bool)
    if not far.any():
        return True
    if _median_above(np.abs(a[far] - paper), 1.0):     # measured: 0 on every clean set, >= 2 on photos
        return False
    for axis in (0, 1):
        full = np.concatenate([[0], (inked.mean(axis=axis) > 0.8).astype(np.int8), [0]])
        starts, stops = np.flatnonzero(np.diff(full) == 1), np.flatnonzero(np.diff(full) == -1)
        thin = (stops - starts) <= max(2, 0.03 * full.size)      # lines are thin, a digit's strokes are not
        if np.count_nonzero(thin) >= 4:
            return False
    return True


# ----------------------------------------------------------------------------- steps

def _resize(a: np.ndarray, size: tuple[int, int], resample=Image.Resampling.BILINEAR) -> np.ndarray:
    """(H, W) float -> (size[1], size[0]) float through Pillow's float mode."""
    return np.asarray(Image.fromarray(np.ascontiguousarray(a, np.float32), mode="F").resize(size, resample))


def _small(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> the same averaged down to about _BG_SIDE on its longer side."""
    h, w = rgb.shape[:2]
    f = max(h, w) / _BG_SIDE
    size = (max(8, round(w / f)), max(8, round(h / f)))
    return np.asarray(Image.fromarray(rgb, "RGB").resize(size, Image.Resampling.BOX))


def background(small: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) float: the paper's colour and light, from the small picture with the ink closed over."""
    from scipy import ndimage

    k = max(3, round(0.12 * min(small.shape[:2]))) | 1     # wider than a marker stroke filling the frame
    closed = np.stack([ndimage.grey_closing(small[..., c], size=(k, k)) for c in range(3)], -1)
    return np.asarray(Image.fromarray(closed, "RGB").resize((shape[1], shape[0]), Image.Resampling.BILINEAR),
                      np.float32)


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

    light = np.stack([ndimage.grey_closing(small[..., c], size=(3, 3)) for c in range(3)], -1).astype(np.float32)
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


@dataclass(frozen=True)
class Ruling:
    """Which way the paper's straight lines run, and the turn that levels them."""

    angle: float = 0.0       # degrees, for ``Image.rotate``
    rows: bool = False       # horizontal lines (ruled paper, a sheet's top and bottom edges)
    columns: bool = False    # vertical lines (squared paper, a margin, a sheet's sides)


def paper_angle(ink: np.ndarray) -> Ruling:
    """The turn that makes the paper's lines and edges level, and which directions have lines.

    Turned level, a straight line adds up along one row (or column) into a sharp peak of the
    projection profile; a digit's curved strokes do not. The score is the profiles' roughness
    (squared differences of neighbouring rows and columns), a Radon transform of the inked
    pixels searched over ``_ANGLES``, then refined by a quarter of the step.
    """
    h, w = ink.shape
    ys, xs = np.nonzero(ink > 0.08)
    if ys.size < 50:
        return Ruling()
    weight = ink[ys, xs]
    y, x = ys - h / 2, xs - w / 2
    span = int(np.hypot(h, w)) + 4

    def profiles(angle: float) -> tuple[float, float]:
        t = np.radians(angle)
        rows = np.bincount(np.rint(y * np.cos(t) - x * np.sin(t) + span / 2).astype(int), weight, span)
        cols = np.bincount(np.rint(x * np.cos(t) + y * np.sin(t) + span / 2).astype(int), weight, span)
        return float((np.diff(rows) ** 2).sum()), float((np.diff(cols) ** 2).sum())

    scores = np.array([profiles(float(a)) for a in _ANGLES])
    total = scores.sum(axis=1)
    best = int(total.argmax())
    if total[best] < 1.3 * float(np.median(total)):
        return Ruling()                 # nothing straight stands out: plain paper, a digit alone
    step = float(_ANGLES[1] - _ANGLES[0])
    around = [float(_ANGLES[best]) + d * step for d in (-0.5, -0.25, 0.0, 0.25, 0.5)]
    angle = max(around, key=lambda a: sum(profiles(a)))
    rows, cols = _thin_lines(y, x, angle, h, w, span), _thin_lines(x, -y, angle, w, h, span)
    if rows < 2 and cols < 2:
        return Ruling()                 # straight strokes of a digit, not lines of the paper
    return Ruling(angle if abs(angle) >= 0.5 else 0.0, rows >= 2, cols >= 2)


def _thin_lines(along: np.ndarray, other: np.ndarray, angle: float, n: int, length: int, span: int) -> int:
    """How many thin lines (a few pixels thick, a third of the picture long) the inked pixels
    at (along, other) form once turned by ``angle``: ruling and a sheet's edges, not a digit's bars."""
    t = np.radians(angle)
    counts = np.bincount(np.rint(along * np.cos(t) - other * np.sin(t) + span / 2).astype(int), minlength=span)
    full = np.concatenate([[0], (counts >= _LINE_LONG * length).astype(np.int8), [0]])
    starts, stops = np.flatnonzero(np.diff(full) == 1), np.flatnonzero(np.diff(full) == -1)
    return int(np.count_nonzero((stops - starts) <= max(3, 0.03 * n)))


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
    span = {i + 1: (b[axis].stop - b[axis].start) / ink.shape[axis] for i, b in enumerate(boxes)}
    long_ones = [i for i, f in span.items() if f >= _LINE_LONG]
    # ruling is three or more lines, or two far apart (a sheet's opposite edges); a Z's bars or
    # a 2's arc and base are two lines a digit's height apart
    if len(long_ones) < 3:
        centres = [(boxes[i - 1][across].start + boxes[i - 1][across].stop) / 2 for i in long_ones]
        if len(long_ones) < 2 or max(centres) - min(centres) < 0.5 * ink.shape[across]:
            return np.zeros_like(ink), ink
    level = np.zeros(n + 1, np.float32)
    widths = {}
    for i in long_ones:
        box = boxes[i - 1]
        mine = np.where(labels[box] == i, opened[box], 0)
        # the line's darkness along its length: a stroke lying on part of it does not set it
        profile = mine.max(axis=across)
        level[i] = 1.5 * float(np.median(profile[profile > 0]))
        widths[i] = np.count_nonzero(mine) / max(1, np.count_nonzero(profile))
    typical = float(np.median(list(widths.values())))
    on_line = np.isin(labels, long_ones)
    d = int(np.ceil(typical)) + 2
    fill = np.minimum(np.roll(ink, d, axis=across), np.roll(ink, -d, axis=across))
    # a line is as dark as its typical pixel: a stroke lying along it keeps what is darker than that
    lines = np.where(on_line, np.minimum(opened, level[labels]), 0).astype(np.float32)
    cleaned = np.where(on_line, np.maximum(ink - lines, fill), ink)
    return lines, cleaned.astype(np.float32)


def suppress_lines(ink: np.ndarray, ruling: Ruling = Ruling(0.0, True, True)) -> tuple[np.ndarray, np.ndarray]:
    """Remove ruled (horizontal) and squared (both) lines; returns (lines removed, ink left).
    A direction the ruling shows no lines in is skipped."""
    lines = np.zeros_like(ink)
    if ruling.rows:
        lines, ink = _lines_along(ink, 1)
    if ruling.columns:
        lines_v, ink = _lines_along(ink, 0)
        lines = np.maximum(lines, lines_v)
    return lines, ink


def _line_like(group: np.ndarray, shape: tuple[int, int]) -> bool:
    """A long thin straight stroke at any angle (a margin line, a sheet's edge seen at a slant):
    its principal axes give length and thickness (a uniform bar of length L has a spread of
    L / 3.46 along it)."""
    ys, xs = np.nonzero(group)
    if len(ys) < 10:
        return False
    cov = np.cov(np.stack([ys, xs]).astype(np.float64))
    small, large = np.sqrt(np.maximum(np.linalg.eigvalsh(cov), 0.0)) * 3.46
    return large > 0.6 * min(shape) and large > 12 * max(small, 1.0)


def _score(box, group: np.ndarray, mass: float, masses, boxes, shape: tuple[int, int]) -> float:
    """How much a group of strokes (``group``: its pixels within ``box``) looks like the digit:
    its ink, weighed by nearness to the centre, and nearly nothing for what a sheet, a table or a
    margin draws."""
    h, w = shape
    ys, xs = box
    filled = np.count_nonzero(group)
    cy, cx = (ys.start + ys.stop) / 2 / h - 0.5, (xs.start + xs.stop) / 2 / w - 0.5
    score = mass * np.exp(-(cy * cy + cx * cx) / (2 * 0.3 ** 2))
    if ys.start <= 1 or xs.start <= 1 or ys.stop >= h - 1 or xs.stop >= w - 1:
        score *= 0.15
    tall, wide = ys.stop - ys.start, xs.stop - xs.start
    extent = tall * wide
    if max(tall, wide) > 0.7 * max(h, w) or (tall > 0.65 * h and wide * 6 < tall):
        score *= 0.05           # longer than a digit gets in a photo: an edge or a margin
    if wide > 0.25 * w and tall * 6 < wide:
        score *= 0.02           # a long flat line on its own: a sheet's edge or its shadow
    if _line_like(group, shape):
        score *= 0.05           # longer than a digit gets, straight and thin, at any angle
    if extent > 0.4 * h * w and filled < 0.04 * extent:
        score *= 0.05           # a hollow frame round everything: the sheet's outline, not a digit
    inside = [m for m, b in zip(masses, boxes) if b is not box and b[0].start > ys.start and b[0].stop < ys.stop
              and b[1].start > xs.start and b[1].stop < xs.stop]
    if inside and max(inside) > 0.15 * mass and filled < 0.1 * extent:
        score *= 0.05           # a thin outline round other strokes: the sheet's edges round the digit
    return float(score)


def choose_digit(ink: np.ndarray) -> np.ndarray:
    """The strokes of the digit: hysteresis-thresholded ink, grouped by proximity, scored by
    strength, nearness to the centre and not touching the frame. Raises NoInkError."""
    from scipy import ndimage

    h, w = ink.shape
    strong = float(ink.max())
    if strong < _SEED_CONTRAST:
        raise NoInkError(BLANK)
    # absolute thresholds: a strong edge elsewhere in the photo must not raise the bar for a faint digit
    labels, n = ndimage.label(ink > 0.5 * _SEED_CONTRAST, structure=np.ones((3, 3)))
    seeded = np.unique(labels[ink > _SEED_CONTRAST])
    mask = np.isin(labels, seeded[seeded > 0])
    reach = max(3, round(0.025 * max(h, w)))
    groups, n = ndimage.label(ndimage.maximum_filter(mask.astype(np.uint8), 2 * reach + 1) > 0)
    if n == 0:
        raise NoInkError(BLANK)
    masses = ndimage.sum_labels(np.where(mask, ink, 0), groups, index=np.arange(1, n + 1))
    boxes = ndimage.find_objects(groups)
    scores = [_score(box, mask[box] & (groups[box] == i + 1), masses[i], masses, boxes, (h, w))
              for i, box in enumerate(boxes)]
    best = int(np.argmax(scores)) + 1
    chosen = mask & (groups == best)
    # within the digit, what is much fainter than its own strokes is shading or a line's remnant
    chosen &= ink > 0.35 * float(np.percentile(ink[chosen], 95))
    ys, xs = np.nonzero(chosen)
    if max(np.ptp(ys), np.ptp(xs)) + 1 < max(8, 0.03 * max(h, w)):
        raise NoInkError(BLANK)
    return chosen


def read_paper(rgb: np.ndarray) -> PaperSteps:
    """A photo (H, W, 3) uint8 of dark ink on light paper -> the steps, the digit's strokes last."""
    from scipy import ndimage

    small = _small(rgb)
    flattened = flatten_light(rgb.astype(np.float32), background(small, rgb.shape[:2]))
    sheet = sheet_region(small, flattened.shape)
    ink = np.where(sheet, flattened, 0).astype(np.float32)
    ruling = paper_angle(ink)
    angle = ruling.angle
    picture = rgb
    if angle:
        turn = lambda m: np.asarray(Image.fromarray(m.astype(np.float32), "F").rotate(angle, Image.Resampling.BILINEAR))
        ink, flattened = turn(ink), turn(flattened)
        sheet = np.asarray(Image.fromarray(sheet).rotate(angle))
        picture = np.asarray(Image.fromarray(rgb).rotate(angle, Image.Resampling.BILINEAR, fillcolor=(255, 255, 255)))
    lines, ink = suppress_lines(ink, ruling)
    mask = choose_digit(ink)
    # the chosen strokes plus their faint edges, for the crop's anti-aliasing
    mask = ndimage.binary_dilation(mask, iterations=1) & (ink > 0.05)
    ys, xs = np.nonzero(mask)
    box = (int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1)
    return PaperSteps(picture, flattened, lines, ink, sheet, mask, box, angle)
