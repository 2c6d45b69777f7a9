"""Inputs that are no digit at all, for measuring "not one of the digits I know": typed letters,
scribbles and shapes, dark ink on light paper. Offline and deterministic.

Left out on purpose, because a person would read them as a known digit too: the letters O, o,
D, Q, I, l, i, j, Z and z (a 0, a 1 or a 2 in many fonts), circles and ellipses (a drawn 0) and
single straight strokes (a drawn 1).
"""
from __future__ import annotations

import math
import string
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .. import config
from .classic import _fonts

LOOK_ALIKES = set("OoDQIlijZz")
LETTERS = [c for c in string.ascii_letters if c not in LOOK_ALIKES]
SHAPES = ("square", "triangle", "star", "cross", "heart", "arrow", "zigzag", "spiral_square")


def _paper(side: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("L", (side, side), 255)
    return image, ImageDraw.Draw(image)


def write_letters(out: Path, per_font: int = 6, seed: int = config.SEED) -> int:
    """Letters typed in every bundled font, ``per_font`` letters each, random size and place."""
    rng = np.random.default_rng(seed)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    n = 0
    for font_path in _fonts():
        for letter in rng.choice(LETTERS, per_font, replace=False):
            font = ImageFont.truetype(str(font_path), int(rng.choice([48, 72, 96])))
            image, draw = _paper(120)
            left, top, right, bottom = draw.textbbox((0, 0), letter, font=font)
            x = rng.integers(0, max(1, 120 - (right - left))) - left
            y = rng.integers(0, max(1, 120 - (bottom - top))) - top
            draw.text((x, y), letter, fill=int(rng.integers(0, 60)), font=font)
            image.save(folder / f"{font_path.stem}_{'upper' if letter.isupper() else 'lower'}_{letter}.png")
            n += 1
    return n


def _scribble(rng: np.random.Generator) -> np.ndarray:
    """A random smooth pen path in the unit box: a few random control points, splined."""
    anchors = rng.uniform(0.1, 0.9, (int(rng.integers(4, 9)), 2))
    t = np.linspace(0, 1, len(anchors))
    fine = np.linspace(0, 1, 120)
    return np.stack([np.interp(fine, t, anchors[:, 0]), np.interp(fine, t, anchors[:, 1])], 1)


def write_scribbles(out: Path, count: int = 100, seed: int = config.SEED) -> int:
    """Random pen scribbles of random weight on 280 px canvases."""
    rng = np.random.default_rng(seed)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        image, draw = _paper(280)
        for _ in range(int(rng.integers(1, 3))):
            points = _scribble(rng) * 280
            draw.line([tuple(p) for p in points.tolist()], fill=0, width=int(rng.integers(6, 24)), joint="curve")
        image.save(folder / f"scribble_{i:03d}.png")
    return count


def _shape(kind: str, rng: np.random.Generator) -> list[list[tuple[float, float]]]:
    """Polylines of one shape in the unit box."""
    def ring(n, radius, phase=0.0, inner=None):
        points = []
        for k in range(n * (2 if inner else 1) + 1):
            r = inner if inner and k % 2 else radius
            a = phase + 2 * math.pi * k / (n * (2 if inner else 1))
            points.append((0.5 + r * math.cos(a), 0.5 + r * math.sin(a)))
        return points
    if kind == "square":
        return [ring(4, 0.38, math.pi / 4 + rng.uniform(-0.3, 0.3))]
    if kind == "triangle":
        return [ring(3, 0.4, -math.pi / 2 + rng.uniform(-0.4, 0.4))]
    if kind == "star":
        return [ring(5, 0.42, -math.pi / 2, inner=0.18)]
    if kind == "cross":
        return [[(0.15, 0.15), (0.85, 0.85)], [(0.85, 0.15), (0.15, 0.85)]]
    if kind == "heart":
        t = np.linspace(0, 2 * math.pi, 80)
        x, y = 16 * np.sin(t) ** 3, 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
        return [list(zip((0.5 + x / 40).tolist(), (0.45 - y / 40).tolist()))]
    if kind == "arrow":
        return [[(0.1, 0.5), (0.9, 0.5)], [(0.65, 0.25), (0.9, 0.5), (0.65, 0.75)]]
    if kind == "zigzag":
        return [[(0.1 + 0.8 * k / 6, 0.3 if k % 2 else 0.7) for k in range(7)]]
    if kind == "spiral_square":
        points, r = [], 0.42
        for k in range(10):
            corner = [(0.5 - r, 0.5 - r), (0.5 + r, 0.5 - r), (0.5 + r, 0.5 + r), (0.5 - r, 0.5 + r)][k % 4]
            points.append(corner)
            r *= 0.86
        return [points]
    raise KeyError(kind)


def write_shapes(out: Path, per_shape: int = 12, seed: int = config.SEED) -> int:
    """Each shape drawn ``per_shape`` times: random size, place, slant and pen weight."""
    rng = np.random.default_rng(seed)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    n = 0
    for kind in SHAPES:
        for i in range(per_shape):
            image, draw = _paper(280)
            scale, shear = rng.uniform(120, 240), rng.uniform(-0.2, 0.2)
            x0, y0 = rng.uniform(10, 270 - scale), rng.uniform(10, 270 - scale)
            for line in _shape(kind, rng):
                coords = [(x0 + (x + shear * (y - 0.5)) * scale, y0 + y * scale) for x, y in line]
                draw.line(coords, fill=0, width=int(rng.integers(6, 22)), joint="curve")
            image.save(folder / f"{kind}_{i:02d}.png")
            n += 1
    return n


UNKNOWNS = {"letters": write_letters, "scribbles": write_scribbles, "shapes": write_shapes}


def write_unknowns(out: Path) -> dict[str, Path]:
    """Write every unknown set under ``out/<name>/``; returns their folders."""
    folders = {}
    for name, write in UNKNOWNS.items():
        folders[name] = Path(out) / name
        write(folders[name])
    return folders
