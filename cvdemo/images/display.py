"""Pictures of model input and of the photo steps, for people to look at (uint8 arrays)."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .paper import PaperSteps

_PANEL = 240    # each step's panel is scaled to this height


def to_display(array: np.ndarray, scale: int = 8) -> np.ndarray:
    """Model input (S, S, C) float -> uint8 picture enlarged ``scale`` times for showing."""
    a = np.asarray(array, dtype=np.float32)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    a = np.rint(np.clip(a, 0, 1) * 255).astype(np.uint8)
    return np.kron(a, np.ones((scale, scale) + (() if a.ndim == 2 else (1,)), np.uint8))


def _ink_panel(ink: np.ndarray) -> Image.Image:
    """Ink in [0, 1] as dark ink on white paper, the way a person reads a page."""
    return Image.fromarray(np.rint(255 * (1 - np.clip(ink, 0, 1))).astype(np.uint8), "L").convert("RGB")


def _titled(panel: Image.Image, title: str) -> Image.Image:
    scale = _PANEL / panel.height
    panel = panel.resize((max(1, round(panel.width * scale)), _PANEL), Image.Resampling.BILINEAR)
    out = Image.new("RGB", (panel.width, _PANEL + 26), (255, 255, 255))
    out.paste(panel, (0, 26))
    ImageDraw.Draw(out).text((4, 4), title, fill=(20, 20, 20), font=ImageFont.load_default(size=16))
    return out


def steps_picture(steps: PaperSteps) -> np.ndarray:
    """The photo steps, two by two: the photo with the digit boxed, the background divided out,
    the lines and the table removed, and the strokes chosen as the digit."""
    top, bottom, left, right = steps.box
    photo = Image.fromarray(steps.picture).convert("RGB")
    pad = max(2, round(0.02 * max(photo.size)))
    ImageDraw.Draw(photo).rectangle((left - pad, top - pad, right + pad, bottom + pad), outline=(230, 40, 40),
                                    width=max(2, photo.width // 120))
    chosen = _ink_panel(np.where(steps.mask, steps.ink, 0))
    ImageDraw.Draw(chosen).rectangle((left, top, right, bottom), outline=(230, 40, 40), width=max(1, photo.width // 160))
    panels = [_titled(photo, "1. the photo, digit boxed"),
              _titled(_ink_panel(steps.flattened), "2. light evened out"),
              _titled(_ink_panel(steps.ink), "3. lines and table removed"),
              _titled(chosen, "4. the strokes kept")]
    # two by two: as readable on a phone's narrow screen as on a desktop
    # the band on top stays clear of the label an image viewer puts over its corner
    gap, top, width, height = 8, 40, max(p.width for p in panels), panels[0].height
    out = Image.new("RGB", (2 * width + gap, top + 2 * height + gap), (255, 255, 255))
    for i, p in enumerate(panels):
        out.paste(p, ((i % 2) * (width + gap), top + (i // 2) * (height + gap)))
    return np.asarray(out)
