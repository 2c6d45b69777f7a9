"""Decode any image input safely and turn it into model input: the one preprocessing path.

Dataset files, uploads, pasted screenshots, phone photos, sketchpad canvases and retrieval queries
all go through :func:`preprocess` (or :func:`prepare`, which also returns the photo steps).
Knows about Pillow, numpy and scipy only: no Keras, no models, no UI.

Profiles:
- ``digits`` (:mod:`.digits`, :mod:`.paper`): one digit, drawn, scanned or photographed on paper,
  shaped like an MNIST digit: white ink on black in [0, 1], 28x28.
- ``photo``: colour kept, resized to a square without cropping to ink.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from .. import config
from .decode import BLANK, Decoded, ImageError, NoInkError, TooLargeError, decode, decode_data_url, flatten, reduce, too_large
from .digits import STROKE_TARGET, WORK_SIDE, digit_array, ink_map, read_digit, stroke_width
from .display import steps_picture, to_display
from .paper import PaperSteps

PROFILES = ("digits", "photo")
DECODE_SIDE = 480    # a 12 MP phone JPEG decodes at 1/8 scale (500 x 375): more than a photo of paper needs

__all__ = ["BLANK", "DECODE_SIDE", "PROFILES", "STROKE_TARGET", "WORK_SIDE", "Decoded", "ImageError", "NoInkError",
           "TooLargeError", "PaperSteps",
           "Prepared", "canvas_array", "decode", "digit_array", "flatten", "ink_map", "looks_like_digits", "photo_array",
           "prepare", "preprocess", "read_digit", "steps_picture", "stroke_width", "to_display", "too_large"]


@dataclass(frozen=True)
class Prepared:
    """Model input plus, for a photo of paper, the steps that found the digit in it."""

    array: np.ndarray               # (28, 28, 1) or (size, size, 3) float32 in [0, 1]
    steps: PaperSteps | None = None


def photo_array(im: Image.Image, size: int = config.PHOTO_SIZE) -> np.ndarray:
    """A flattened image -> (size, size, 3) float32 RGB in [0, 1], no cropping to ink."""
    rgb = im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(rgb, dtype=np.float32) / 255.0


def canvas_array(data_url: str) -> np.ndarray:
    """A browser canvas's PNG data URL -> the drawing as a 2-D uint8 array (255 = paper), the form
    every drawing takes from here on (classified, sent to Retrieve or Explain)."""
    return np.asarray(flatten(decode_data_url(data_url).image, background=255).convert("L"))


def prepare(source: Any, profile: str = "digits", size: int | None = None, name: str | None = None) -> Prepared:
    """:func:`preprocess`, keeping the photo steps for showing them."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {PROFILES}")
    # a JPEG decodes at 1/2, 1/4 or 1/8 scale when that still leaves a photo's working side
    decoded = decode(source, name=name, max_side=DECODE_SIDE)
    if profile == "photo":
        return Prepared(photo_array(flatten(decoded.image, background=255), size or config.PHOTO_SIZE))
    array, steps = read_digit(flatten(decoded.image))
    return Prepared(array[..., None], steps)


def preprocess(source: Any, profile: str = "digits", size: int | None = None,
               name: str | None = None) -> np.ndarray:
    """The one preprocessing function: any input -> model input.

    Args:
        source: a path, bytes, file object, PIL image or numpy array (a sketchpad canvas too).
        profile: "digits" or "photo" (see the module docstring).
        size: side of the photo profile's output; ignored for digits (always 28).
        name: what to call the input in error messages.

    Returns:
        ``(28, 28, 1)`` float32 for digits, ``(size, size, 3)`` float32 for photos, in [0, 1].

    Raises:
        ImageError: unreadable, unsafe or empty input, with a message for the user.
    """
    return prepare(source, profile, size, name).array


def looks_like_digits(sources: list[Any]) -> bool:
    """Guess a dataset's profile from a sample: grey drawings on flat paper are digits."""
    from .digits import _border

    votes = []
    for source in sources:
        try:
            im = flatten(decode(source, max_side=DECODE_SIDE).image, background=255)
        except ImageError:
            continue
        rgb = np.asarray(reduce(im.convert("RGB"), 128), dtype=np.float32)
        colourful = float(np.abs(rgb - rgb.mean(axis=-1, keepdims=True)).mean()) > 12
        border = _border(rgb.mean(axis=-1))
        flat_paper = float(np.percentile(np.abs(border - np.median(border)), 80)) < 30
        votes.append(flat_paper and not colourful)
    return bool(votes) and sum(votes) >= 0.7 * len(votes)
