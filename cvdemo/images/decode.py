"""Decoding any image input safely: paths, bytes, uploads, arrays and canvases, refusing what is unsafe.

Knows about Pillow and numpy only. Every error is an :class:`ImageError` whose text is for the user.
"""
from __future__ import annotations

import base64
import binascii
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .. import config


class ImageError(ValueError):
    """An input that cannot become model input. ``str(err)`` is a message for the user."""


class TooLargeError(ImageError):
    """An image over the byte or pixel limit (an HTTP caller gets 413 for it)."""


def too_large(name: str) -> TooLargeError:
    """The error for an input of more than ``config.MAX_IMAGE_BYTES`` (one message everywhere)."""
    return TooLargeError(f"{name} is larger than the {config.MAX_IMAGE_BYTES // (1024 * 1024)} MB limit for one image.")


class NoInkError(ImageError):
    """The image decoded fine but holds no digit (blank canvas, flat colour, a blank sheet)."""


# one message for every empty input: an untouched canvas, a blank scan, a photo of a blank sheet
BLANK = "No digit found: the image is blank. Draw a digit first (on paper: one digit, large, near the middle)."


@dataclass(frozen=True)
class Decoded:
    """A decoded image plus what we learnt about it while decoding."""

    image: Image.Image          # mode "L", "RGB" or "RGBA", EXIF orientation applied
    source_format: str | None   # "PNG", "JPEG", ... or None for arrays
    size: tuple[int, int]       # original (width, height)


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


def _open_bytes(data: bytes, name: str, max_side: int | None = None) -> Decoded:
    if len(data) == 0:
        raise ImageError(f"{name} is empty (0 bytes).")
    if len(data) > config.MAX_IMAGE_BYTES:
        raise too_large(name)
    formats = "/".join(config.IMAGE_FORMATS)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=list(config.IMAGE_FORMATS))
            width, height = im.size
            if width < 1 or height < 1:
                raise ImageError(f"{name} has no pixels ({width}x{height}).")
            if width * height > config.MAX_IMAGE_PIXELS:
                raise TooLargeError(
                    f"{name} is {width}x{height} pixels; the limit is "
                    f"{config.MAX_IMAGE_PIXELS / 1e6:.0f} megapixels. Please use a smaller image.")
            if getattr(im, "is_animated", False):
                im.seek(0)          # the first frame of an animated GIF/WEBP
            fmt = im.format
            if max_side and fmt == "JPEG":
                # decode a phone photo at 1/2, 1/4 or 1/8 scale in the DCT: a 12 MP JPEG
                # costs a few milliseconds instead of a hundred, and no more is needed
                scale = next((s for s in (8, 4, 2) if max(width, height) / s >= max_side), 1)
                if scale > 1:
                    im.draft(im.mode, (width // scale, height // scale))
            im.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise TooLargeError(f"{name} declares too many pixels (a decompression bomb?); "
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


def decode(source: Any, name: str | None = None, max_side: int | None = None) -> Decoded:
    """Decode a path, bytes, file object, PIL image or numpy array, refusing what is unsafe.

    Only PNG, JPEG, WEBP, GIF and BMP are decoded; the pixel count is checked before any pixel is
    allocated. ``max_side`` lets a JPEG decode at a reduced scale whose longer side stays at
    least that long (the decoder's own downscaling; other formats decode whole). Raises
    :class:`ImageError` with a message fit to show a user.
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
        return _open_bytes(bytes(source), name or "The image", max_side)
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
        return _open_bytes(data, label, max_side)
    if hasattr(source, "read"):
        data = source.read(config.MAX_IMAGE_BYTES + 1)
        return _open_bytes(data, name or "The upload", max_side)
    raise ImageError(f"Cannot read an image from a {type(source).__name__}.")


def decode_data_url(text: str, name: str = "The drawing") -> Decoded:
    """Decode a ``data:image/...;base64,`` URL (what a browser canvas exports) through :func:`decode`.

    The encoded length is checked before anything is decoded, so a huge string costs nothing.
    """
    if not isinstance(text, str) or not text.startswith("data:image/"):
        raise ImageError(f"{name} is not an image: expected a data:image/...;base64 URL.")
    head, _, body = text.partition(",")
    if not head.endswith(";base64") or not body:
        raise ImageError(f"{name} is not a base64 image URL.")
    if len(body) > config.MAX_IMAGE_BYTES * 4 // 3 + 4:
        raise too_large(name)
    try:
        data = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise ImageError(f"{name} is not valid base64.") from None
    return decode(data, name=name)


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


def reduce(im: Image.Image, side: int) -> Image.Image:
    if max(im.size) <= side:
        return im
    scale = side / max(im.size)
    size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    return im.resize(size, Image.Resampling.BOX)


ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, never half an image
