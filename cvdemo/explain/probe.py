"""How an answer breaks: the input rotated, scaled, thickened and shifted in steps, every step of
every transform through each model as one batch.

Transforms act on the model input (white ink on black, as :mod:`cvdemo.images` prepares it),
so what a curve shows is the model's own sensitivity, not the preprocessing's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

STEPS = 25
# (low, high, unit) of each transform's parameter; the untouched input sits at the middle step
TRANSFORMS: dict[str, tuple[float, float, str]] = {
    "rotation": (-90.0, 90.0, "degrees anticlockwise"),
    "scale": (0.4, 1.6, "× size"),
    "thickness": (-2.0, 2.0, "pixels of stroke"),
    "shift": (-8.0, 8.0, "pixels right"),
}
# each transform's parameter for the untouched input (the middle step of ``values``)
NEUTRAL = {"rotation": 0.0, "scale": 1.0, "thickness": 0.0, "shift": 0.0}
_FINE = 2                          # thickness is changed at 2x resolution, in half pixels, blended


def values(transform: str, steps: int = STEPS) -> np.ndarray:
    low, high, _ = TRANSFORMS[transform]
    return np.linspace(low, high, steps)


def transformed(image: np.ndarray, transform: str, value: float, _cache: dict | None = None) -> np.ndarray:
    """One input (S, S, C) in [0, 1] under one transform, same shape and range."""
    from scipy import ndimage

    image = np.asarray(image, np.float32)
    if transform == "thickness":
        return _thickened(image, value, {} if _cache is None else _cache)
    background = float(image.min())
    centre = (np.array(image.shape[:2]) - 1) / 2
    if transform == "rotation":
        angle = np.deg2rad(value)
        matrix = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
        offset = centre - matrix @ centre
    elif transform == "scale":
        matrix = np.eye(2) / value
        offset = centre - matrix @ centre
    elif transform == "shift":
        matrix, offset = np.eye(2), np.array([0.0, -value])
    else:
        raise KeyError(f"unknown transform {transform!r}; choose from {', '.join(TRANSFORMS)}")
    channels = [ndimage.affine_transform(image[..., c], matrix, offset, order=1, cval=background)
                for c in range(image.shape[-1])]
    return np.clip(np.stack(channels, axis=-1), 0, 1).astype(np.float32)


def _thickened(image: np.ndarray, value: float, cache: dict) -> np.ndarray:
    """Strokes grown (value > 0) or thinned by ``value`` pixels: a disk dilation or erosion at
    ``_FINE`` times the resolution, blended between the two nearest whole radii so the change is
    smooth in ``value``. ``cache`` keeps each radius's result across the steps of one probe."""
    from scipy import ndimage

    def morphed(radius: int) -> np.ndarray:
        key = (radius, value > 0)
        if key not in cache:
            if radius == 0:
                cache[key] = image
            else:
                fine = cache.setdefault("fine", ndimage.zoom(image, (_FINE, _FINE, 1), order=1))
                grown = (ndimage.grey_dilation if value > 0 else ndimage.grey_erosion)(
                    fine, footprint=_disk(radius)[..., None])
                cache[key] = np.clip(ndimage.zoom(grown, (1 / _FINE, 1 / _FINE, 1), order=1), 0, 1)
        return cache[key]

    steps = abs(value) * _FINE
    low = int(np.floor(steps))
    share = steps - low
    out = morphed(low) if share < 1e-6 else (1 - share) * morphed(low) + share * morphed(low + 1)
    return np.asarray(out, np.float32)


def _disk(radius: int) -> np.ndarray:
    y, x = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    return x * x + y * y <= radius * radius


def batch(image: np.ndarray, steps: int = STEPS) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Every step of every transform as one (len(TRANSFORMS) * steps, S, S, C) batch, with the
    parameter values per transform."""
    grid = {name: values(name, steps) for name in TRANSFORMS}
    cache: dict = {}
    images = [transformed(image, name, v, cache) for name, vs in grid.items() for v in vs]
    return np.stack(images), grid


@dataclass
class ProbeCurves:
    """Each model's probability of its answer (and of the named true class) along each transform."""

    grid: dict[str, np.ndarray]                 # transform -> parameter values
    answers: dict[str, str]                     # model -> its answer on the untouched input
    answer_curves: dict[str, dict[str, np.ndarray]]   # model -> transform -> p(answer)
    true_curves: dict[str, dict[str, np.ndarray]]     # model -> transform -> p(true class), when named
    labels: dict[str, dict[str, list[str]]]     # model -> transform -> its answer at each step
    true_class: str | None = None

    def as_dict(self) -> dict:
        return {"true_class": self.true_class,
                "transforms": {name: {"values": grid.tolist(), "unit": TRANSFORMS[name][2]}
                               for name, grid in self.grid.items()},
                "models": {model: {"answer": self.answers[model],
                                   "p_answer": {t: c.round(5).tolist() for t, c in curves.items()},
                                   "p_true": {t: c.round(5).tolist() for t, c in self.true_curves.get(model, {}).items()},
                                   "labels": self.labels[model]}
                           for model, curves in self.answer_curves.items()}}


def probe(image: np.ndarray, models: dict[str, tuple[Callable[[np.ndarray], np.ndarray], list[str]]],
          true_class: str | None = None, steps: int = STEPS) -> ProbeCurves:
    """``models``: name -> (predict on a batch, class names). One batched forward pass per model."""
    images, grid = batch(image, steps)
    answers, answer_curves, true_curves, labels = {}, {}, {}, {}
    for name, (predict, classes) in models.items():
        probabilities = np.asarray(predict(np.concatenate([image[None], images])))
        base, rows = probabilities[0], probabilities[1:].reshape(len(grid), steps, -1)
        picked = int(base.argmax())
        answers[name] = classes[picked]
        answer_curves[name] = {t: rows[i, :, picked] for i, t in enumerate(grid)}
        labels[name] = {t: [classes[j] for j in rows[i].argmax(axis=1)] for i, t in enumerate(grid)}
        if true_class in classes:
            true_curves[name] = {t: rows[i, :, classes.index(true_class)] for i, t in enumerate(grid)}
    return ProbeCurves(grid, answers, answer_curves, true_curves, labels, true_class)
