"""Digits written on paper and photographed by a phone: the ``paper`` and ``paper_table`` sets.

Each digit comes from a source that never trains a model (held-out MNIST queries, canvas strokes,
the handwriting styles), is written as ink (black, blue or pencil grey) on a
sheet (plain, ruled or squared) and photographed: uneven light, sometimes a shadow across the
sheet, a slight perspective, blur, sensor noise and JPEG artefacts, sometimes stored sideways
with an EXIF orientation tag as phones do. ``paper`` frames only the sheet; ``paper_table`` shows
the whole sheet lying on a table (wood, dark or light), turned a little.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image, ImageFilter

from .. import config

SOURCES = ("mnist", "canvas", "styles")
RULINGS = ("plain", "ruled", "squared")
INKS = {"black": ((20, 45), (20, 45), (25, 55)), "blue": ((15, 50), (35, 80), (110, 180)),
        "pencil": ((85, 120), (85, 120), (90, 125))}


def digit_ink(digit: int, source: str, index: int, rng: np.random.Generator) -> np.ndarray:
    """One digit's ink (H, W) float in [0, 1] from a source none of the models trains on."""
    if source == "mnist":
        from ..data import mnist_digits, mnist_partition

        pixels, labels = mnist_digits()
        held_out = [i for i in mnist_partition()["query"] if labels[i] == digit]
        small = pixels[held_out[index % len(held_out)]].astype(np.float32) / 255
    elif source == "canvas":
        from .classic import draw_canvas

        alpha = np.asarray(draw_canvas(digit, rng, canvas=280, brush=float(rng.uniform(8, 22)),
                                       scale=200).getchannel("A"), np.float32) / 255
        return alpha
    else:
        from .styles import STYLES, draw_style

        style = STYLES[digit][index % len(STYLES[digit])]
        page = draw_style(digit, style, rng, pen=("pen", "marker")[index % 2])
        return 1 - np.asarray(page, np.float32) / 255
    big = Image.fromarray(small, "F").resize((160, 160), Image.Resampling.BICUBIC)
    ink = np.clip(np.asarray(big), 0, 1)
    # a pen draws a line of one darkness: sharpen the soft scan into a stroke of random weight
    level = rng.uniform(0.4, 0.65)
    return np.clip((ink - level) / 0.15 + 0.5, 0, 1)


def _paper(h: int, w: int, ruling: str, rng: np.random.Generator) -> np.ndarray:
    """A sheet (H, W, 3) float in 0..255: off-white with a fibre texture, ruled or squared."""
    from scipy import ndimage

    base = np.array([rng.uniform(228, 252), rng.uniform(225, 250), rng.uniform(212, 246)])
    fibre = np.asarray(Image.fromarray(rng.normal(0, 1, (h // 4 + 1, w // 4 + 1)).astype(np.float32), "F")
                       .resize((w, h), Image.Resampling.BICUBIC))
    sheet = base + 3.0 * fibre[..., None]
    if ruling == "plain":
        return sheet
    colour = np.array([rng.uniform(130, 185), rng.uniform(160, 200), rng.uniform(200, 235)])
    strength = rng.uniform(0.5, 0.9)
    gap = rng.uniform(0.05, 0.085) * h if ruling == "ruled" else rng.uniform(0.03, 0.055) * h
    width = int(rng.integers(1, 3))
    offset = rng.uniform(0, gap)
    mask = np.zeros((h, w), np.float32)
    for y in np.arange(offset, h, gap):
        mask[int(y):int(y) + width] = 1
    if ruling == "squared":
        for x in np.arange(rng.uniform(0, gap), w, gap):
            mask[:, int(x):int(x) + width] = 1
    elif rng.random() < 0.5:                      # the red margin of an exercise book
        x = int(rng.uniform(0.08, 0.15) * w)
        mask[:, x:x + width + 1] = 1
        sheet[:, x:x + width + 1] = sheet[:, x:x + width + 1] * 0.6 + np.array([220, 90, 90]) * 0.4
    mask = ndimage.gaussian_filter(mask, 0.6)[..., None] * strength
    return sheet * (1 - mask) + colour * mask


def _write(sheet: np.ndarray, ink: np.ndarray, box: tuple[int, int, int, int], rng) -> np.ndarray:
    """Ink composited onto the sheet inside ``box`` (left, top, width, height)."""
    left, top, width, height = box
    kind = str(rng.choice(tuple(INKS)))
    colour = np.array([rng.uniform(*channel) for channel in INKS[kind]])
    placed = Image.fromarray((ink * 255).astype(np.uint8), "L").rotate(float(rng.uniform(-8, 8)), expand=True,
                                                                          resample=Image.Resampling.BICUBIC)
    placed = np.asarray(placed.resize((width, height), Image.Resampling.BILINEAR), np.float32) / 255
    alpha = placed * (rng.uniform(0.55, 0.85) if kind == "pencil" else rng.uniform(0.85, 1.0))
    if kind == "pencil":                           # graphite leaves grain, not a solid line
        alpha = alpha * (1 - 0.35 * rng.random(alpha.shape))
    region = sheet[top:top + height, left:left + width]
    sheet[top:top + height, left:left + width] = region * (1 - alpha[..., None]) + colour * alpha[..., None]
    return sheet


def _table(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A table top (H, W, 3) float: wood with grain, or a dark or light plain surface."""
    kind = rng.choice(["wood", "dark", "light"], p=[0.5, 0.3, 0.2])
    if kind == "wood":
        base = np.array([rng.uniform(110, 180), rng.uniform(70, 125), rng.uniform(35, 80)])
        y = np.arange(h)[:, None] + 6 * np.sin(np.arange(w)[None, :] / rng.uniform(30, 90))
        grain = np.sin(y / rng.uniform(3, 9)) + 0.5 * np.sin(y / rng.uniform(11, 25))
        return base * (1 + 0.07 * grain[..., None])
    level = rng.uniform(35, 80) if kind == "dark" else rng.uniform(150, 195)
    tint = np.array([1.0, rng.uniform(0.95, 1.05), rng.uniform(0.9, 1.1)])
    return level * tint + rng.normal(0, 2, (h, w, 1))


def _light(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Uneven light (a gradient and a vignette) and, half the time, a soft shadow across the frame."""
    h, w = photo.shape[:2]
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    y, x = y / h - 0.5, x / w - 0.5
    gain = 1 + rng.uniform(-0.25, 0.25) * x + rng.uniform(-0.25, 0.25) * y - rng.uniform(0, 0.35) * (x * x + y * y)
    if rng.random() < 0.5:
        angle = rng.uniform(0, np.pi)
        across = np.cos(angle) * x + np.sin(angle) * y - rng.uniform(-0.3, 0.3)
        softness = rng.uniform(0.01, 0.08)
        gain = gain * (1 - rng.uniform(0.2, 0.45) / (1 + np.exp(-across / softness)))
    return photo * gain[..., None]


def _camera(photo: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """Perspective, focus blur and sensor noise, as a phone camera adds them."""
    h, w = photo.shape[:2]
    image = Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8), "RGB")
    jitter = rng.uniform(-0.04, 0.04, 8) * np.array([w, h] * 4)
    corners = np.array([0, 0, w, 0, w, h, 0, h], float) + jitter
    # PIL's PERSPECTIVE wants the coefficients mapping output pixels to input ones
    target = np.array([0, 0, w, 0, w, h, 0, h], float)
    rows = []
    for (u, v), (xo, yo) in zip(corners.reshape(4, 2), target.reshape(4, 2)):
        rows.append([xo, yo, 1, 0, 0, 0, -u * xo, -u * yo])
        rows.append([0, 0, 0, xo, yo, 1, -v * xo, -v * yo])
    coeffs = np.linalg.solve(np.array(rows), corners)
    image = image.transform((w, h), Image.Transform.PERSPECTIVE, tuple(coeffs), Image.Resampling.BILINEAR,
                            fillcolor=tuple(int(c) for c in photo[h // 2, 2]))
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.4)))
    noisy = np.asarray(image, np.float32) + rng.normal(0, rng.uniform(2, 7), (h, w, 1)) + rng.normal(0, 1.5, (h, w, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


def photograph(ink: np.ndarray, rng: np.random.Generator, table: bool, side: int = 720) -> Image.Image:
    """One photo (``side`` px on its longer edge) of ``ink`` written on a sheet, with or without the table."""
    portrait = rng.random() < 0.5
    h, w = (side, round(side * 0.75)) if portrait else (round(side * 0.75), side)
    ruling = str(rng.choice(RULINGS))
    if table:
        sw = int(min(w, h) * rng.uniform(0.5, 0.72))
        sh = int(sw * 1.414)                                       # an A-series sheet
        if sh > 0.92 * h:
            sh = int(0.92 * h)
            sw = int(sh / 1.414)
        sheet = _paper(sh, sw, ruling, rng)
        digit_h = int(sh * rng.uniform(0.12, 0.3))
    else:
        sh, sw = h, w
        sheet = _paper(h, w, ruling, rng)
        digit_h = int(h * rng.uniform(0.2, 0.55))
    digit_w = max(8, int(digit_h * ink.shape[1] / ink.shape[0] * rng.uniform(0.85, 1.15)))
    left = int(np.clip(sw / 2 - digit_w / 2 + rng.uniform(-0.15, 0.15) * sw, 2, sw - digit_w - 2))
    top = int(np.clip(sh / 2 - digit_h / 2 + rng.uniform(-0.15, 0.15) * sh, 2, sh - digit_h - 2))
    sheet = _write(sheet, ink, (left, top, digit_w, digit_h), rng)
    if not table:
        return _camera(_light(sheet, rng), rng)
    scene = Image.fromarray(np.clip(_table(h, w, rng), 0, 255).astype(np.uint8), "RGB")
    paper = Image.fromarray(np.clip(sheet, 0, 255).astype(np.uint8), "RGB")
    angle = float(rng.uniform(-10, 10))
    mask = Image.new("L", paper.size, 255).rotate(angle, expand=True)
    paper = paper.rotate(angle, expand=True, resample=Image.Resampling.BICUBIC)
    x = int((w - paper.width) / 2 + rng.uniform(-0.06, 0.06) * w)
    y = int((h - paper.height) / 2 + rng.uniform(-0.04, 0.04) * h)
    shadow = Image.new("L", (w, h), 0)
    shadow.paste(mask, (x + 4, y + 6))
    shade = 1 - 0.35 * np.asarray(shadow.filter(ImageFilter.GaussianBlur(6)), np.float32)[..., None] / 255
    scene = Image.fromarray(np.clip(np.asarray(scene, np.float32) * shade, 0, 255).astype(np.uint8), "RGB")
    scene.paste(paper, (x, y), mask)
    return _camera(_light(np.asarray(scene, np.float32), rng), rng)


def save_phone_jpeg(photo: Image.Image, path: Path, rng: np.random.Generator, sideways: bool) -> None:
    """As a phone saves it: JPEG at a random quality; sideways pixels with an EXIF tag that turns them upright."""
    quality = int(rng.integers(55, 93))
    if not sideways:
        photo.save(path, "JPEG", quality=quality)
        return
    orientation = int(rng.choice([3, 6, 8]))
    # the stored pixels are the upright photo turned the opposite way to the tag's correction
    stored = photo.transpose({3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90,
                              8: Image.Transpose.ROTATE_270}[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(path, "JPEG", quality=quality, exif=exif)


def write_paper(out: Path, digits: Iterable[int] = config.SAMPLE_CLASSES, per_class: int = 60,
                seed: int = config.SEED, table: bool = False) -> int:
    """``per_class`` photos of each digit, sources cycling: ``<d>_digits/paper_<source>_<i>.jpg``."""
    rng = np.random.default_rng(seed + (29 if table else 23))
    n = 0
    for digit in digits:
        folder = Path(out) / f"{digit}_digits"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            # canvas strokes and the handwriting styles draw 0, 1 and 2; other digits are MNIST's
            source = SOURCES[i % len(SOURCES)] if digit in config.SAMPLE_CLASSES else "mnist"
            index = i // len(SOURCES) if digit in config.SAMPLE_CLASSES else i
            photo = photograph(digit_ink(digit, source, index, rng), rng, table)
            save_phone_jpeg(photo, folder / f"paper_{source}_{i:03d}.jpg", rng, sideways=rng.random() < 0.2)
            n += 1
    return n


def write_paper_table(out: Path, digits: Iterable[int] = config.SAMPLE_CLASSES, per_class: int = 60,
                      seed: int = config.SEED) -> int:
    return write_paper(out, digits, per_class, seed, table=True)
