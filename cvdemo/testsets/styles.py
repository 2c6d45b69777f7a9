"""Handwriting styles far from MNIST's, drawn as pen strokes: the ``styles`` robustness set.

MNIST's writers are mostly American students and census staff: upright, medium pens, plain 1s
and 2s. People elsewhere write slanted and cursive-like, with thin pens and thick markers, open
and closed loops, serifed and flagged 1s, curly and Z-shaped 2s. Each style below is a stroke
model in a unit box (x right, y down), jittered like a hand, slanted, and drawn with a pen
width from a hairline to a marker on a clean page. Nothing here trains a model.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from PIL import Image, ImageDraw

from .. import config

Strokes = list[np.ndarray]


def _arc(cx, cy, rx, ry, start, sweep, n=48) -> np.ndarray:
    """Points of an elliptic arc; angles in turns, 0 at the top, clockwise on screen."""
    t = (start + np.linspace(0, sweep, n)) * 2 * math.pi
    return np.stack([cx + rx * np.sin(t), cy - ry * np.cos(t)], 1)


def _line(a, b, n=12) -> np.ndarray:
    return np.linspace(np.asarray(a, float), np.asarray(b, float), n)


def _zero(style: str, rng) -> Strokes:
    rx, ry = rng.uniform(0.26, 0.42), rng.uniform(0.4, 0.47)
    if style == "narrow":
        rx = rng.uniform(0.13, 0.2)
    if style == "open":
        return [_arc(0.5, 0.5, rx, ry, rng.uniform(0.02, 0.08), rng.uniform(0.82, 0.92))]
    if style == "cursive":   # starts at the top, loops round and crosses itself into a small tail
        loop = _arc(0.5, 0.5, rx, ry, 0.05, 1.0)
        tail = _arc(0.5 + rx * 0.1, 0.5 - ry * 0.55, rx * 0.45, ry * 0.35, 0.6, rng.uniform(0.5, 0.8), 20)
        return [np.concatenate([loop, tail])]
    if style == "squarish":  # a superellipse: flat sides, rounded corners
        t = np.linspace(0, 2 * math.pi, 64)
        c, s = np.cos(t), np.sin(t)
        x = 0.5 + rx * np.sign(s) * np.abs(s) ** 0.5
        y = 0.5 - ry * np.sign(c) * np.abs(c) ** 0.5
        return [np.stack([x, y], 1)]
    return [_arc(0.5, 0.5, rx, ry, rng.uniform(-0.1, 0.1), rng.uniform(1.0, 1.08))]


def _one(style: str, rng) -> Strokes:
    top, foot = np.array([0.55, 0.05]), np.array([0.5, 0.95])
    stem = _line(top, foot)
    if style == "flag":
        return [np.concatenate([_line(top + [-rng.uniform(0.12, 0.22), rng.uniform(0.1, 0.2)], top, 6), stem])]
    if style == "serif":     # flag and a foot, like a typed 1
        width = rng.uniform(0.15, 0.25)
        return [np.concatenate([_line(top + [-rng.uniform(0.12, 0.2), rng.uniform(0.08, 0.16)], top, 6), stem]),
                _line(foot + [-width, 0], foot + [width, 0], 8)]
    if style == "long_flag":  # the continental 1: a long up-stroke, almost a caret
        return [np.concatenate([_line(top + [-rng.uniform(0.25, 0.35), rng.uniform(0.25, 0.4)], top, 10), stem])]
    if style == "hook":
        hook = _arc(top[0] - 0.08, top[1] + 0.08, 0.08, 0.08, -0.25, 0.3, 10)
        return [np.concatenate([hook, stem])]
    return [stem]


def _two(style: str, rng) -> Strokes:
    r = rng.uniform(0.24, 0.32)
    cx, cy = 0.5, 0.05 + r
    arc = _arc(cx, cy, r, r, rng.uniform(-0.3, -0.2), rng.uniform(0.55, 0.65), 24)
    left, right = rng.uniform(0.1, 0.22), rng.uniform(0.78, 0.92)
    if style == "z":         # angular: a flat top, a straight diagonal, a flat base
        return [np.concatenate([_line([0.18, 0.08], [0.8, 0.08], 8), _line([0.8, 0.08], [left, 0.93], 14),
                                _line([left, 0.93], [right, 0.93], 8)])]
    if style == "curly":     # the diagonal ends in a loop before the base
        loop = _arc(left + 0.1, 0.84, 0.1, 0.09, 0.5, -0.9, 20)
        return [np.concatenate([arc, _line(arc[-1], loop[0], 10), loop, _line(loop[-1], [right, 0.93], 8)])]
    if style == "swan":      # a long curved neck with a wavy base
        neck = _arc(0.25, 0.45, 0.45, 0.5, 0.25, 0.22, 16)
        base = np.stack([np.linspace(neck[-1][0], right, 12), 0.93 + 0.03 * np.sin(np.linspace(0, 2 * math.pi, 12))], 1)
        return [np.concatenate([arc, _line(arc[-1], neck[-1], 10), base])]
    if style == "cursive":   # an entry hook and a tail that rises at the end
        hook = _arc(cx - r * 0.9, cy + r * 0.1, 0.07, 0.07, 0.4, -0.6, 8)
        tail = _line([right, 0.93], [right + 0.06, 0.82], 5)
        return [np.concatenate([hook, arc, _line(arc[-1], [left, 0.93], 12), _line([left, 0.93], [right, 0.93], 8),
                                tail])]
    return [np.concatenate([arc, _line(arc[-1], [left, 0.93], 12), _line([left, 0.93], [right, 0.93], 8)])]


def _three(style: str, rng) -> Strokes:
    """A 3, the digit the models are taught (``cvdemo.teaching``), never one of the sets of 0-2."""
    ru, rl = rng.uniform(0.2, 0.25), rng.uniform(0.24, 0.3)
    cu, cl = 0.05 + ru, 0.95 - rl
    rx = 0.55 if style == "narrow" else 1.0
    if style == "flat":      # a flat top and a diagonal down to the lower bowl
        top = _line([0.2, 0.06], [0.78, 0.06], 8)
        bowl = _arc(0.5, cl, rl, rl, -0.1, rng.uniform(0.68, 0.78), 28)
        return [np.concatenate([top, _line([0.78, 0.06], bowl[0], 10), bowl])]
    sweep = rng.uniform(0.55, 0.62) if style == "open" else rng.uniform(0.68, 0.75)
    upper = _arc(0.5, cu, ru * rx, ru, rng.uniform(-0.25, -0.15), 0.65, 28)
    lower = _arc(0.5, cl, rl * rx, rl, 0.0, sweep, 32)
    strokes = np.concatenate([upper, _line(upper[-1], lower[0], 4), lower])
    if style == "cursive":   # an entry hook and a tail curling back up
        hook = _arc(0.5 - ru * 1.1, cu - ru * 0.3, 0.06, 0.06, 0.5, -0.5, 8)
        tail = _line(strokes[-1], strokes[-1] + [-0.08, -0.08], 5)
        strokes = np.concatenate([hook, strokes, tail])
    return [strokes]


STYLES: dict[int, tuple[str, ...]] = {
    0: ("oval", "open", "cursive", "narrow", "squarish"),
    1: ("stick", "flag", "serif", "long_flag", "hook"),
    2: ("plain", "z", "curly", "swan", "cursive"),
    3: ("round", "flat", "narrow", "open", "cursive"),
}
_DRAW: dict[int, Callable[[str, np.random.Generator], Strokes]] = {0: _zero, 1: _one, 2: _two, 3: _three}
PENS = {"hairline": (1.0, 2.0), "pen": (3.0, 7.0), "marker": (12.0, 22.0)}   # px on a 200-px page


def _jitter(points: np.ndarray, rng, amount: float) -> np.ndarray:
    """A hand's slow wobble: smoothed random walk, not pixel noise."""
    steps = rng.normal(0, amount, points.shape)
    walk = np.cumsum(steps, axis=0)
    walk -= np.linspace(walk[0], walk[-1], len(walk))     # keeps the ends where they were meant
    return points + walk


def draw_style(digit: int, style: str, rng: np.random.Generator, pen: str = "pen", side: int = 200) -> Image.Image:
    """One handwritten digit in ``style`` with ``pen``: dark ink on a white ``side``-px page (mode "L")."""
    scale = 2                                      # drawn at twice the size, then reduced: smooth edges
    size = side * scale
    height = rng.uniform(0.5, 0.85) * size
    width = height * rng.uniform(0.75, 1.1)
    slant = rng.choice([rng.uniform(-0.15, 0.05), rng.uniform(0.15, 0.45)])   # most hands lean right
    x0 = rng.uniform(0.05, 0.95) * (size - width * 0.85)
    y0 = rng.uniform(0.05, 0.95) * (size - height)
    pen_px = rng.uniform(*PENS[pen]) * scale * side / 200
    page = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(page)
    ink = int(rng.integers(0, 70))
    for points in _DRAW[digit](style, rng):
        p = _jitter(points, rng, 0.004)
        xs = x0 + (p[:, 0] + slant * (0.5 - p[:, 1])) * width * 0.85
        ys = y0 + p[:, 1] * height
        coords = list(zip(xs.tolist(), ys.tolist()))
        draw.line(coords, fill=ink, width=max(1, round(pen_px)), joint="curve")
        r = pen_px / 2
        for x, y in (coords[0], coords[-1]):
            draw.ellipse((x - r, y - r, x + r, y + r), fill=ink)
    return page.resize((side, side), Image.Resampling.LANCZOS)


def write_styles(out: Path, digits: Iterable[int] = config.SAMPLE_CLASSES, per_class: int = 100,
                 seed: int = config.SEED) -> int:
    """``per_class`` digits of each class, cycling through every style and pen: ``<d>_digits/<style>_<pen>_<i>.png``."""
    rng = np.random.default_rng(seed + 17)
    n = 0
    for digit in digits:
        folder = Path(out) / f"{digit}_digits"
        folder.mkdir(parents=True, exist_ok=True)
        styles = STYLES[digit]
        for i in range(per_class):
            style, pen = styles[i % len(styles)], tuple(PENS)[(i // len(styles)) % len(PENS)]
            draw_style(digit, style, rng, pen).save(folder / f"{style}_{pen}_{i:03d}.png")
            n += 1
    return n
