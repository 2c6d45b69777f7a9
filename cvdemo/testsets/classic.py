"""The first robustness sets: other writers, typed fonts, browser-canvas strokes.

- ``writers``: scikit-learn's bundled UCI digits (other writers, 8x8 scans), upscaled onto paper.
- ``fonts``: the digits typed in every TrueType font matplotlib ships, at several sizes, offsets
  and weights.
- ``canvas``: strokes drawn like a user on a 280-800 px transparent canvas, at any size,
  position and brush width (2-60 px), with hand-like wobble.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .. import config


def _folder(out: Path, digit: int) -> Path:
    folder = Path(out) / f"{digit}_digits"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_writers(out: Path, digits: Iterable[int] = config.SAMPLE_CLASSES) -> int:
    """UCI handwritten digits (sklearn.datasets.load_digits): 8x8, 16 grey levels, 43 writers."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    n = 0
    for i, (image, label) in enumerate(zip(bunch.images, bunch.target)):
        if label not in tuple(digits):
            continue
        pixels = np.rint(255 - image * (255 / 16)).astype(np.uint8)   # dark ink on light paper
        Image.fromarray(pixels, "L").resize((100, 100), Image.Resampling.BICUBIC).save(
            _folder(out, label) / f"uci_{i:04d}.png")
        n += 1
    return n


def _fonts() -> list[Path]:
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    # symbol-only and display fonts have no digit glyphs
    skip = ("Sym", "cmex", "cmsy", "LastResort", "cmmi", "Display", "NonUni")
    return sorted(p for p in folder.glob("*.ttf") if not any(s in p.name for s in skip))


def write_fonts(out: Path, digits: Iterable[int] = config.SAMPLE_CLASSES, seed: int = config.SEED) -> int:
    """Each digit typed in every bundled font at 4 sizes, random offsets, on 120x120 paper."""
    rng = np.random.default_rng(seed)
    n = 0
    for font_path in _fonts():
        for size in (28, 48, 72, 96):
            font = ImageFont.truetype(str(font_path), size)
            for digit in digits:
                canvas = Image.new("L", (120, 120), 255)
                draw = ImageDraw.Draw(canvas)
                left, top, right, bottom = draw.textbbox((0, 0), str(digit), font=font)
                w, h = right - left, bottom - top
                x = rng.integers(0, max(1, 120 - w)) - left
                y = rng.integers(0, max(1, 120 - h)) - top
                draw.text((x, y), str(digit), fill=int(rng.integers(0, 60)), font=font)
                canvas.save(_folder(out, digit) / f"{font_path.stem}_{size}.png")
                n += 1
    return n


def _stroke_points(digit: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Polylines of a digit in a unit box (x right, y down), with hand-like variation."""
    t = np.linspace(0, 1, 40)
    if digit == 0:
        a, b = rng.uniform(0.28, 0.45), rng.uniform(0.42, 0.5)
        start = rng.uniform(-0.6, 0.6)
        theta = start + t * 2 * math.pi * rng.uniform(1.0, 1.08)
        return [np.stack([0.5 + a * np.sin(theta), 0.5 - b * np.cos(theta)], 1)]
    if digit == 1:
        lean = rng.uniform(-0.12, 0.12)
        stem = np.stack([0.5 + lean * (0.5 - t), 0.05 + 0.9 * t], 1)
        strokes = [stem]
        if rng.random() < 0.5:   # the flag at the top
            flag = rng.uniform(0.12, 0.25)
            strokes[0] = np.concatenate([np.array([[stem[0, 0] - flag, 0.05 + flag * 0.8]]), stem])
        if rng.random() < 0.3:   # a base
            strokes.append(np.array([[stem[-1, 0] - 0.18, 0.95], [stem[-1, 0] + 0.18, 0.95]]))
        return strokes
    if digit == 2:
        r = rng.uniform(0.25, 0.32)
        theta = np.linspace(-math.pi * rng.uniform(0.85, 1.0), math.pi * 0.25, 24)
        arc = np.stack([0.5 + r * np.cos(theta), 0.05 + r + r * np.sin(theta)], 1)
        foot = 0.95
        diagonal = np.linspace(arc[-1], [rng.uniform(0.12, 0.25), foot], 12)
        base = np.linspace([diagonal[-1][0], foot], [rng.uniform(0.75, 0.92), foot + rng.uniform(-0.03, 0.03)], 8)
        return [np.concatenate([arc, diagonal, base])]
    raise ValueError(f"no canvas strokes for digit {digit}")


def draw_canvas(digit: int, rng: np.random.Generator, canvas: int = 280, brush: float | None = None,
                scale: float | None = None) -> Image.Image:
    """One digit drawn like a sketchpad user: dark strokes on a transparent RGBA canvas."""
    brush = brush if brush is not None else float(rng.uniform(2, min(60, canvas / 8)))
    scale = scale if scale is not None else float(rng.uniform(0.25, 0.9)) * canvas
    aspect = rng.uniform(0.8, 1.2)
    x0 = rng.uniform(0, canvas - scale * 0.7)
    y0 = rng.uniform(0, canvas - scale)
    shear = rng.uniform(-0.2, 0.2)
    image = Image.new("RGBA", (canvas, canvas), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    for points in _stroke_points(digit, rng):
        wobble = rng.normal(0, 0.012, points.shape)
        p = points + wobble
        xs = x0 + (p[:, 0] * 0.7 * aspect + shear * (p[:, 1] - 0.5)) * scale
        ys = y0 + p[:, 1] * scale
        coords = list(zip(xs.tolist(), ys.tolist()))
        draw.line(coords, fill=(0, 0, 0, 255), width=max(1, int(round(brush))), joint="curve")
        r = brush / 2
        for x, y in (coords[0], coords[-1]):   # round caps like a canvas brush
            draw.ellipse((x - r, y - r, x + r, y + r), fill=(0, 0, 0, 255))
    return image


def write_canvas(out: Path, digits: Iterable[int] = config.SAMPLE_CLASSES, per_class: int = 100,
                 seed: int = config.SEED) -> int:
    rng = np.random.default_rng(seed)
    n = 0
    for digit in digits:
        for i in range(per_class):
            size = int(rng.choice([280, 400, 600, 800]))
            draw_canvas(digit, rng, canvas=size).save(_folder(out, digit) / f"canvas_{i:03d}.png")
            n += 1
    return n
