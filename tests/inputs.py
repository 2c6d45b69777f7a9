"""Odd, broken and hostile input files for the bad-input battery, reusable by every layer.

``make_inputs(folder)`` writes each case into ``folder`` and returns ``{name: (path, expectation)}``:

- ``Expect("digit", label)``: an odd but legitimate encoding of a real held-out MNIST digit
  (``mnist_partition()["query"]``, never trained on); it must preprocess fine and, with the real
  shipped models, be classified as ``label``.
- ``Expect("error", words)``: broken, hostile or empty; it must raise ``ImageError`` (a ``gr.Error``
  in the UI, one line + non-zero exit in the CLI) whose message contains every one of ``words``
  (lower-case).
- ``Expect("either")``: degenerate (1x1, 10000x10); an answer or an ImageError, never a crash.

Only Pillow and numpy are used, so the app and API tests can import this without Keras.
"""
from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

DIGIT = 2          # the class every "digit" case shows; it is in the sample task (0, 1, 2)


@dataclass(frozen=True)
class Expect:
    kind: str                                  # "digit" | "error" | "either"
    label: int | None = None                   # for "digit"
    words: tuple[str, ...] = field(default=())  # for "error": lower-case words the message contains


def query_digit(digit: int = DIGIT, index: int = 0) -> np.ndarray:
    """A held-out real MNIST digit: (28, 28) uint8, white ink on black."""
    from cvdemo.data import mnist_digits, mnist_partition

    pixels, labels = mnist_digits()
    query = mnist_partition()["query"]
    return pixels[query[labels[query] == digit][index]]


def paper(pixels: np.ndarray, size: int = 200) -> Image.Image:
    """A digit as dark ink on light paper, ``size`` square, "L" mode."""
    return Image.fromarray(255 - pixels, mode="L").resize((size, size), Image.Resampling.BICUBIC)


def ink_mask(pixels: np.ndarray, size: int = 200) -> np.ndarray:
    """(size, size) float in [0, 1]: how much ink each pixel holds."""
    im = Image.fromarray(pixels, mode="L").resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(im, dtype=np.float32) / 255.0


def png_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A tiny PNG whose header declares ``width x height`` 1-bit pixels (the IDAT is a stub)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + chunk(b"IEND", b""))


def _save(im: Image.Image, path: Path, **kwargs) -> Path:
    im.save(path, **kwargs)
    return path


def _animated_gif(pixels: np.ndarray, path: Path) -> Path:
    first = paper(pixels).convert("P")
    other = Image.new("L", first.size, 255)
    other.paste(0, (40, 40, 160, 160))         # a black square: frame 2 is not a digit
    return _save(first, path, save_all=True, append_images=[other.convert("P")], duration=100, loop=0)


def _cmyk_jpeg(pixels: np.ndarray, path: Path) -> Path:
    return _save(paper(pixels).convert("RGB").convert("CMYK"), path, quality=95)


def _png16(pixels: np.ndarray, path: Path) -> Path:
    # dark ink on paper using only part of the 16-bit range: convert("L") would clip it all to 255
    a = (np.asarray(paper(pixels), dtype=np.float64) / 255.0 * 4000 + 1000).astype(np.uint16)
    return _save(Image.fromarray(a, mode="I;16"), path)


def _palette_transparent(pixels: np.ndarray, path: Path) -> Path:
    ink = ink_mask(pixels) > 0.4
    a = np.where(ink, 1, 0).astype(np.uint8)   # index 0: transparent background, 1: black ink
    im = Image.fromarray(a, mode="P")
    im.putpalette([255, 0, 255] + [0, 0, 0] + [0, 0, 0] * 254)   # magenta under the transparency
    return _save(im, path, transparency=0)


def _exif_rotated(pixels: np.ndarray, path: Path) -> Path:
    # stored rotated 90 degrees; EXIF Orientation=6 says "rotate 90 CW to display"
    upright = paper(pixels, 240).convert("RGB")
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    return _save(stored, path, exif=exif, quality=92)


def _transparent_dark(pixels: np.ndarray, path: Path) -> Path:
    alpha = (ink_mask(pixels) * 255).astype(np.uint8)
    rgba = np.zeros((*alpha.shape, 4), np.uint8)
    rgba[..., 3] = alpha                          # black strokes, transparent (black) elsewhere
    return _save(Image.fromarray(rgba, mode="RGBA"), path)


def _light_on_dark(pixels: np.ndarray, path: Path) -> Path:
    im = Image.fromarray(pixels, mode="L").resize((200, 200), Image.Resampling.BICUBIC)
    rgb = np.stack([np.asarray(im)] * 3, -1).astype(np.float64)
    rgb = rgb * np.array([0.9, 0.95, 0.6]) + np.array([20, 25, 40])   # chalk on a blue-black board
    return _save(Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), mode="RGB"), path)


def _big_photo(pixels: np.ndarray, path: Path) -> Path:
    rng = np.random.default_rng(7)
    side = 1200
    ink = ink_mask(pixels, 900)
    y, x = np.mgrid[0:side, 0:side]
    sheet = 215 + 25 * (x / side) - 15 * (y / side)               # uneven lighting
    page = np.repeat(sheet[..., None], 3, -1) * np.array([1.0, 0.97, 0.9])   # warm paper
    page[150:1050, 150:1050] *= 1 - 0.8 * ink[..., None]            # a large pencil digit
    page += rng.normal(0, 6, page.shape)                             # sensor noise
    return _save(Image.fromarray(np.clip(page, 0, 255).astype(np.uint8), mode="RGB"), path, quality=90)


def _truncated_jpeg(pixels: np.ndarray, path: Path) -> Path:
    buffer = io.BytesIO()
    paper(pixels).save(buffer, format="JPEG", quality=95)
    data = buffer.getvalue()
    path.write_bytes(data[: len(data) // 2])
    return path


def _flat(value, mode: str = "L"):
    def write(pixels: np.ndarray, path: Path) -> Path:
        return _save(Image.new(mode, (120, 120), value), path)
    return write


def _bytes(data: bytes):
    def write(pixels: np.ndarray, path: Path) -> Path:
        path.write_bytes(data)
        return path
    return write


def _strip(pixels: np.ndarray, path: Path) -> Path:
    a = np.full((10, 10_000), 255, np.uint8)
    a[2:8, 4000:6000] = 0                         # a long dark bar
    return _save(Image.fromarray(a, mode="L"), path)


def _dot(pixels: np.ndarray, path: Path) -> Path:
    return _save(Image.new("L", (1, 1), 0), path)


SVG = (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100">'
       b'<text x="30" y="70" font-size="60">2</text></svg>\n')
HTML = b"<!DOCTYPE html>\n<html><body><img src=x onerror=alert(1)>2</body></html>\n"

# name: (file name, writer, expectation)
CASES = {
    "animated_gif": ("animated.gif", _animated_gif, Expect("digit", DIGIT)),
    "cmyk_jpeg": ("cmyk.jpg", _cmyk_jpeg, Expect("digit", DIGIT)),
    "png_16bit": ("sixteen.png", _png16, Expect("digit", DIGIT)),
    "palette_transparent_png": ("palette.png", _palette_transparent, Expect("digit", DIGIT)),
    "exif_rotated_jpeg": ("rotated.jpg", _exif_rotated, Expect("digit", DIGIT)),
    "transparent_dark_strokes": ("canvas.png", _transparent_dark, Expect("digit", DIGIT)),
    "light_ink_on_dark": ("chalk.png", _light_on_dark, Expect("digit", DIGIT)),
    "photo_1200": ("photo.jpg", _big_photo, Expect("digit", DIGIT)),
    "text_as_png": ("notes.png", _bytes(b"these are my notes, not an image\n" * 20),
                    Expect("error", ("could not be read",))),
    "zero_bytes": ("empty.png", _bytes(b""), Expect("error", ("empty",))),
    "truncated_jpeg": ("truncated.jpg", _truncated_jpeg, Expect("error", ("truncated",))),
    "png_bomb": ("bomb.png", _bytes(png_bomb()), Expect("error", ("pixels", "limit"))),
    "all_white": ("white.png", _flat(255), Expect("error", ("no digit",))),
    "all_black": ("black.png", _flat(0), Expect("error", ("no digit",))),
    "fully_transparent": ("clear.png", _flat((0, 0, 0, 0), "RGBA"), Expect("error", ("transparent",))),
    "svg_file": ("drawing.svg", _bytes(SVG), Expect("error", ("svg",))),
    "svg_as_png": ("drawing.png", _bytes(SVG), Expect("error", ("svg",))),
    "html_file": ("page.html", _bytes(HTML), Expect("error", ("html",))),
    "one_pixel": ("dot.png", _dot, Expect("either")),
    "ten_thousand_by_ten": ("strip.png", _strip, Expect("either")),
}


def make_inputs(folder: Path, digit: int = DIGIT, index: int = 0) -> dict[str, tuple[Path, Expect]]:
    """Write every case into ``folder``; returns ``{name: (path, expectation)}``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pixels = query_digit(digit, index)
    found = {}
    for name, (file_name, write, expect) in CASES.items():
        if expect.kind == "digit" and digit != DIGIT:
            expect = Expect("digit", digit)
        found[name] = (write(pixels, folder / file_name), expect)
    return found
