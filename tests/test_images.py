"""The one preprocessing path: every mode and polarity gives the same canonical digit."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from cvdemo import config
from cvdemo import images as img
from cvdemo.images import ImageError, NoInkError, preprocess
from cvdemo.images import digits as dig

from inputs import ink_mask, paper, query_digit


@pytest.fixture(scope="module")
def digit():
    return query_digit(2, 0)


@pytest.fixture(scope="module")
def reference(digit):
    return preprocess(paper(digit))[..., 0]


def same_digit(out: np.ndarray, ref: np.ndarray, corr: float = 0.9, mad: float = 0.07) -> None:
    assert out.shape == ref.shape == (28, 28)
    c = float(np.corrcoef(out.ravel(), ref.ravel())[0, 1])
    d = float(np.abs(out - ref).mean())
    assert c > corr and d < mad, f"correlation {c:.3f}, mean abs difference {d:.3f}"


def _png(im: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _one_bit(im: Image.Image) -> Image.Image:
    return im.point(lambda v: 255 if v > 128 else 0).convert("1", dither=Image.Dither.NONE)


def _sixteen(im: Image.Image) -> Image.Image:
    a = np.asarray(im, dtype=np.float64) / 255 * 3000 + 20000   # a narrow slice of 0..65535
    return Image.fromarray(a.astype(np.uint16), mode="I;16")


def _palette_transparent(digit) -> Image.Image:
    a = (ink_mask(digit) > 0.4).astype(np.uint8)
    im = Image.fromarray(a, mode="P")
    im.putpalette([0, 255, 0] + [0, 0, 0] * 255)    # bright green hidden under transparency
    im.info["transparency"] = 0
    return im


def _rgba_strokes(digit, colour: int, hidden: int) -> Image.Image:
    """Strokes of ``colour`` on a transparent canvas whose hidden colour is ``hidden``."""
    rgba = np.zeros((200, 200, 4), np.uint8)
    rgba[..., :3] = hidden
    alpha = ink_mask(digit)
    rgba[..., :3][alpha > 0.02] = colour
    rgba[..., 3] = (alpha * 255).astype(np.uint8)
    return Image.fromarray(rgba, mode="RGBA")


def _exif_jpeg(im: Image.Image) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 8          # "rotate 270 CW to display": stored rotated 90 CW
    return _png(im.convert("RGB").transpose(Image.Transpose.ROTATE_270), "JPEG", exif=exif, quality=95)


MODES = {
    "L": lambda d: paper(d),
    "RGB": lambda d: paper(d).convert("RGB"),
    "RGBA": lambda d: paper(d).convert("RGBA"),
    "LA": lambda d: paper(d).convert("LA"),
    "P": lambda d: paper(d).convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE),
    "P+transparency": _palette_transparent,
    "CMYK": lambda d: paper(d).convert("CMYK"),
    "I;16": lambda d: _sixteen(paper(d)),
    "1": lambda d: _one_bit(paper(d)),
    "JPEG+EXIF": lambda d: _exif_jpeg(paper(d)),
    "light-on-dark L": lambda d: Image.fromarray(255 - np.asarray(paper(d))),
    "light-on-dark RGB": lambda d: Image.fromarray(255 - np.asarray(paper(d))).convert("RGB"),
    "dark strokes on transparent": lambda d: _rgba_strokes(d, 0, 0),
    "dark strokes on transparent white": lambda d: _rgba_strokes(d, 20, 255),
    "light strokes on transparent": lambda d: _rgba_strokes(d, 255, 255),
    "light strokes on transparent black": lambda d: _rgba_strokes(d, 240, 0),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("via", ["pil", "file"])
def test_every_mode_gives_the_canonical_digit(mode, via, digit, reference, tmp_path):
    source = MODES[mode](digit)
    if via == "file":
        if isinstance(source, Image.Image):
            fmt = "PNG" if source.mode != "CMYK" else "JPEG"
            source = _png(source, fmt)
        path = tmp_path / "digit.img"
        path.write_bytes(source)
        source = path
    elif isinstance(source, bytes):
        source = Image.open(io.BytesIO(source))
    out = preprocess(source)
    assert out.shape == (28, 28, 1) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    same_digit(out[..., 0], reference)


def test_decoded_modes_are_what_the_test_claims(digit):
    """Guard the battery above: each case really is in the mode it is named after."""
    for mode in ("L", "RGB", "RGBA", "LA", "P", "CMYK", "I;16", "1"):
        im = MODES[mode](digit)
        assert im.mode == mode
    assert "transparency" in MODES["P+transparency"](digit).info
    rotated = Image.open(io.BytesIO(MODES["JPEG+EXIF"](digit)))
    assert rotated.getexif()[0x0112] == 8


def test_exif_orientation_is_applied(digit, reference):
    data = MODES["JPEG+EXIF"](digit)
    same_digit(preprocess(data)[..., 0], reference)
    stripped = Image.fromarray(np.asarray(Image.open(io.BytesIO(data)).convert("L")))   # EXIF dropped
    ignored = preprocess(stripped)[..., 0]
    assert np.corrcoef(ignored.ravel(), reference.ravel())[0, 1] < 0.8


def test_sixteen_bit_is_stretched_not_clipped(digit, reference):
    im = MODES["I;16"](digit)
    assert np.asarray(im.convert("L")).min() == 255     # what a naive convert("L") would see
    same_digit(preprocess(im)[..., 0], reference)


@pytest.mark.parametrize("kind", ["L composite", "RGBA opaque composite", "RGBA transparent", "float",
                                  "float 0-255"])
def test_sketchpad_arrays(kind, digit, reference):
    """What gr.Sketchpad / gr.Image hand over: numpy arrays of either layout."""
    gray = np.asarray(paper(digit))                              # 255 paper, 0 ink
    if kind == "L composite":
        array = gray
    elif kind == "RGBA opaque composite":
        array = np.dstack([gray, gray, gray, np.full_like(gray, 255)])
    elif kind == "RGBA transparent":
        array = np.asarray(_rgba_strokes(digit, 0, 0))
    elif kind == "float":
        array = gray.astype(np.float32) / 255.0
    else:
        array = gray.astype(np.float32)
    same_digit(preprocess(array)[..., 0], reference)


@pytest.mark.parametrize("scale", [1 / 255, 1.0], ids=["0-1", "0-255"])
def test_float_arrays_read_like_their_bytes(scale, digit):
    """Float pixels in [0, 1] or in [0, 255] are the same picture as the uint8 array they came from."""
    gray = np.asarray(paper(digit))
    assert np.array_equal(preprocess(gray.astype(np.float32) * scale), preprocess(gray))


def test_huge_negative_floats_read_as_black_without_overflow():
    """Out-of-range floats clip to black instead of overflowing on the way (a RuntimeWarning before)."""
    import warnings

    a = np.full((8, 8), -1e308)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        decoded = img.decode(a)
    assert np.asarray(decoded.image).max() == 0


def test_output_is_mnist_shaped(reference):
    """White ink on black, fitted in a 20-px box, centred (centre of the box near the middle)."""
    ys, xs = np.nonzero(reference > 0.1)
    assert max(ys.max() - ys.min(), xs.max() - xs.min()) + 1 <= config.DIGIT_BOX + 1
    assert abs((ys.min() + ys.max()) / 2 - 13.5) <= 1 and abs((xs.min() + xs.max()) / 2 - 13.5) <= 1
    assert reference[0].max() == 0 and reference[:, 0].max() == 0 and reference.max() > 0.9


def test_position_and_scale_do_not_matter(digit, reference):
    """A small digit in a corner of a big page is the same digit once normalised."""
    page = Image.new("L", (600, 400), 255)
    page.paste(paper(digit, 90), (470, 290))
    same_digit(preprocess(page)[..., 0], reference)


def _brush_two(width: int) -> Image.Image:
    canvas = Image.new("L", (280, 280), 255)
    draw = ImageDraw.Draw(canvas)
    path = [(80, 90), (110, 60), (160, 55), (195, 85), (190, 125), (150, 165), (90, 220), (200, 220)]
    draw.line(path, fill=0, width=width, joint="curve")
    return canvas


def test_thick_and_thin_brush_normalise_to_similar_strokes():
    thin, thick = (preprocess(_brush_two(w))[..., 0] for w in (3, 34))
    widths = [img.stroke_width(x > 0.5) for x in (thin, thick)]
    assert max(widths) / min(widths) < 1.5, widths
    # and without normalisation the two differ a lot (so the check above means something)
    raw = [img.stroke_width(np.asarray(_brush_two(w).resize((28, 28), Image.Resampling.BOX)) < 128)
           for w in (3, 34)]
    assert max(raw) / max(min(raw), 0.5) > 3, raw
    assert np.corrcoef(thin.ravel(), thick.ravel())[0, 1] > 0.75


def _stroke_scale_mask(gray: np.ndarray) -> np.ndarray:
    """digit_array() up to the stroke measurement: ink found, cropped, longest side 48 px, padded."""
    ink = img.ink_map(gray)
    mask = dig._keep_main_strokes(ink > dig._INK_THRESHOLD)
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop = np.where(mask[y0:y1, x0:x1] | (ink[y0:y1, x0:x1] > 0.1), ink[y0:y1, x0:x1], 0)
    h, w = crop.shape
    scale = (dig._STROKE_SIDE - 16) / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    mid = np.asarray(Image.fromarray(crop.astype(np.float32), mode="F").resize(
        size, Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR))
    return np.pad(np.clip(mid, 0, 1), 8) > 0.5          # the threshold _normalise_stroke measures at


def test_stroke_target():
    """STROKE_TARGET is the median MNIST stroke width measured the way _normalise_stroke measures."""
    from cvdemo.data import mnist_digits, mnist_to_paper

    pixels, _ = mnist_digits()
    widths = [img.stroke_width(_stroke_scale_mask(np.asarray(mnist_to_paper(p)))) for p in pixels[::4]]
    median = float(np.median(widths))
    assert abs(median - img.STROKE_TARGET) <= 0.35, f"measured median {median:.2f}, constant {img.STROKE_TARGET}"


def test_training_digits_are_left_alone():
    """A typical MNIST digit's stroke is already on target: normalisation barely changes it."""
    from cvdemo.data import mnist_digits, mnist_to_paper

    pixels, _ = mnist_digits()
    changed = 0
    for p in pixels[::50]:
        mask = _stroke_scale_mask(np.asarray(mnist_to_paper(p)))
        changed += not np.array_equal(dig._normalise_stroke(mask.astype(np.float32)) > 0.5, mask)
    assert changed <= 0.15 * len(pixels[::50])


@pytest.mark.parametrize("value", [0, 128, 255])
def test_flat_images_have_no_ink(value):
    with pytest.raises(NoInkError, match="No digit"):
        preprocess(Image.new("L", (50, 50), value))


def test_faint_noise_is_not_a_digit():
    rng = np.random.default_rng(0)
    noise = (235 + rng.integers(0, 12, (100, 100))).astype(np.uint8)
    with pytest.raises(NoInkError):
        preprocess(noise)


def test_photo_profile_keeps_colour():
    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[..., 0] = 200
    rgb[:, 30:, 2] = 255
    out = preprocess(rgb, "photo")
    assert out.shape == (config.PHOTO_SIZE, config.PHOTO_SIZE, 3) and out.dtype == np.float32
    assert out[..., 0].mean() == pytest.approx(200 / 255, abs=0.01)
    assert out[:, :20, 2].max() < 0.05 and out[:, -20:, 2].min() > 0.95
    assert preprocess(rgb, "photo", size=32).shape == (32, 32, 3)


def test_unknown_profile_is_a_programming_error():
    with pytest.raises(ValueError, match="profile"):
        preprocess(np.zeros((5, 5)), "cats")


@pytest.mark.parametrize("source, words", [
    (None, "no image"),
    (b"", "empty"),
    ("/nonexistent/dir/x.png", "does not exist"),
    (12345, "cannot read"),
    (np.zeros((4, 4, 2)), "(h, w)"),
    (np.array(["a", "b"]), "numeric"),
    (np.full((5, 5), np.nan), "nan"),
])
def test_unusable_sources_raise_image_error(source, words):
    with pytest.raises(ImageError) as err:
        preprocess(source)
    assert words in str(err.value).lower()


def test_folder_is_not_an_image(tmp_path):
    with pytest.raises(ImageError, match="folder|not a file"):
        preprocess(tmp_path)


def test_pixel_limit_checked_before_decoding():
    from inputs import png_bomb

    side = int((config.MAX_IMAGE_PIXELS * 1.2) ** 0.5)     # over our limit, under Pillow's
    with pytest.raises(ImageError, match="megapixels"):
        preprocess(png_bomb(side, side))


def test_to_display_enlarges():
    shown = img.to_display(np.full((28, 28, 1), 0.5, np.float32), scale=4)
    assert shown.shape == (112, 112) and shown.dtype == np.uint8 and shown.max() == 128


def _data_url(im: Image.Image) -> str:
    import base64

    buffer = io.BytesIO()
    im.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_a_canvas_data_url_reads_like_the_same_png_file(digit, reference):
    """The drawing canvas's value: an opaque RGBA PNG of dark ink on white, as toDataURL gives it."""
    gray = paper(digit)                                           # 255 paper, 0 ink
    drawing = img.canvas_array(_data_url(gray.convert("RGBA")))
    assert drawing.dtype == np.uint8
    np.testing.assert_array_equal(drawing, np.asarray(gray))
    np.testing.assert_array_equal(preprocess(drawing)[..., 0], reference)


@pytest.mark.parametrize("value, words", [
    ("/etc/passwd", "not an image"),
    ("data:image/png,plain", "not a base64"),
    ("data:image/png;base64,@@@@", "not valid base64"),
    ("data:image/png;base64," + "A" * (config.MAX_IMAGE_BYTES * 2), "larger than"),
    ("data:image/png;base64,aGVsbG8gd29ybGQ=", "not"),            # "hello world": decodes, is no image
])
def test_bad_canvas_values_are_refused_with_a_reason(value, words):
    with pytest.raises(ImageError, match=words):
        img.canvas_array(value)
