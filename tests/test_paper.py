"""Photos of paper: the steps on generated photos whose answer is known, clean inputs unchanged,
blank sheets refused, phone JPEGs as they arrive, and the photo and handwriting-style sets."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from cvdemo import images
from cvdemo.images import BLANK, NoInkError, prepare, preprocess
from cvdemo.images.paper import is_clean

REFERENCE = Path(__file__).parent / "data" / "clean_reference.npz"
WOOD, PAPER, RULING = (150, 100, 60), (238, 236, 228), (150, 180, 225)
SHEET = (160, 40, 480, 440)            # left, top, right, bottom in a 640 x 480 photo
DIGIT_BOX = (290, 170, 350, 290)       # where the 0 is written


def _jpeg(image: Image.Image, quality: int = 85, **extra) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality, **extra)
    return buffer.getvalue()


def photo(table: bool = True, ruling: str = "ruled", digit: str | None = "0", tilt: float = 0.0,
          size: tuple[int, int] = (640, 480), seed: int = 0) -> Image.Image:
    """A phone-like photo: wood table, a sheet (ruled or squared), a blue 0 or 1, light falling off
    across the frame, sensor noise. Coordinates are those of a 640 x 480 frame, scaled to ``size``."""
    image = Image.new("RGB", (640, 480), WOOD if table else PAPER)
    draw = ImageDraw.Draw(image)
    if table:
        for y in range(0, 480, 9):                                  # wood grain
            draw.line((0, y, 640, y + 4), fill=(135, 90, 52), width=3)
    left, top, right, bottom = SHEET if table else (0, 0, 640, 480)
    draw.rectangle((left, top, right, bottom), fill=PAPER)
    for y in range(top + 20, bottom, 26):
        draw.line((left, y, right, y), fill=RULING, width=2)
    if ruling == "squared":
        for x in range(left + 13, right, 26):
            draw.line((x, top, x, bottom), fill=RULING, width=2)
    if digit == "0":
        draw.ellipse(DIGIT_BOX, outline=(30, 45, 150), width=7)
    elif digit == "1":
        draw.line((320, 170, 316, 290), fill=(30, 45, 150), width=8)
    if tilt:
        image = image.rotate(tilt, Image.Resampling.BICUBIC, fillcolor=WOOD if table else PAPER)
    a = np.asarray(image, np.float32)
    light = np.linspace(1.0, 0.72, 640)[None, :, None]              # a window on the left
    a = a * light + np.random.default_rng(seed).normal(0, 4, a.shape)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).resize(size, Image.Resampling.BILINEAR)


def _scaled(box, steps):
    """A 640 x 480 box in the working scale of the steps."""
    f = steps.picture.shape[1] / 640
    return [round(v * f) for v in box]


def _iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_the_digit_is_found_on_ruled_paper_on_a_table():
    steps = prepare(_jpeg(photo())).steps
    assert steps is not None and steps.angle == 0
    top, bottom, left, right = steps.box
    assert _iou((left, top, right, bottom), _scaled(DIGIT_BOX, steps)) > 0.7
    # the ruling is gone away from the digit, though the light-evened picture still has it
    x0, y0, x1, y1 = _scaled((SHEET[0] + 20, SHEET[1] + 10, 260, SHEET[3] - 10), steps)
    assert steps.flattened[y0:y1, x0:x1].max() > 0.15
    assert steps.ink[y0:y1, x0:x1].max() < 0.12
    # nothing of the table, its grain or the sheet's edge is taken for ink
    sl, st, sr, sb = _scaled(SHEET, steps)
    outside = np.ones_like(steps.mask)
    outside[st:sb, sl:sr] = False
    assert not (steps.mask & outside).any()
    assert not steps.sheet[: st - 3].any() and not steps.sheet[:, : sl - 3].any()


def test_a_slanted_margin_line_is_not_taken_for_the_digit():
    """A notebook's margin line runs the sheet's whole height, here at a slant and darker than a
    pencil 1: the long thin straight stroke loses to the digit."""
    image = photo(table=True, digit=None)
    draw = ImageDraw.Draw(image)
    draw.line((250, 50, 285, 430), fill=(200, 40, 40), width=4)
    draw.line((380, 180, 377, 260), fill=(140, 140, 150), width=5)      # a pencil 1
    steps = prepare(_jpeg(image)).steps
    top, bottom, left, right = steps.box
    f = steps.picture.shape[1] / 640
    assert abs((left + right) / 2 - 378 * f) < 10 * f and bottom - top > 3 * (right - left)


def test_squared_paper_turned_is_levelled_by_its_lines():
    steps = prepare(_jpeg(photo(ruling="squared", tilt=6))).steps
    assert abs(abs(steps.angle) - 6) <= 1
    top, bottom, left, right = steps.box
    cy, cx = (top + bottom) / 2, (left + right) / 2
    f = steps.picture.shape[1] / 640
    assert abs(cy - 230 * f) < 12 and abs(cx - 320 * f) < 12
    assert (bottom - top) > 1.5 * (right - left) * 0.8       # the 0 stays taller than wide


@pytest.mark.parametrize("table", [True, False])
def test_a_photo_becomes_the_same_digit_as_its_drawing(table):
    """The 28x28 input of a photographed 0 is close to that of the same 0 drawn cleanly."""
    clean = Image.new("L", (640, 480), 255)
    ImageDraw.Draw(clean).ellipse(DIGIT_BOX, outline=0, width=7)
    drawn = preprocess(clean)[..., 0]
    photographed = preprocess(_jpeg(photo(table=table)))[..., 0]
    assert np.abs(drawn - photographed).mean() < 0.08


@pytest.mark.parametrize("case", ["blank sheet", "lines only", "table only"])
def test_a_photo_without_a_digit_is_refused_like_an_empty_canvas(case):
    picture = {"blank sheet": photo(table=False, ruling="plain", digit=None),
               "lines only": photo(table=False, ruling="squared", digit=None),
               "table only": photo(table=True, digit=None).crop((0, 0, 150, 480))}[case]
    with pytest.raises(NoInkError) as photo_error:
        preprocess(_jpeg(picture))
    with pytest.raises(NoInkError) as canvas_error:
        preprocess(np.full((280, 280), 255, np.uint8))
    assert str(photo_error.value) == str(canvas_error.value) == BLANK


def test_clean_inputs_come_out_as_before_pixel_for_pixel():
    """MNIST digits, database-like JPEG scans, canvases, a UCI scan and a typed digit: the outputs
    of the preprocessing before photos had their own steps (stored in tests/data)."""
    reference = np.load(REFERENCE)
    names = [k[3:] for k in reference.files if k.startswith("in_")]
    assert len(names) == 11
    for name in names:
        source = reference[f"in_{name}"]
        source = source.tobytes() if name.startswith("scan_jpeg") else source
        prepared = prepare(source)
        assert prepared.steps is None, name
        np.testing.assert_array_equal(prepared.array, reference[f"out_{name}"], err_msg=name)


def test_a_sideways_phone_jpeg_is_turned_upright_by_its_exif_tag():
    upright = photo(table=False, digit="1")
    exif = Image.Exif()
    exif[0x0112] = 6                     # "rotate 90 clockwise to display": the pixels lie on their side
    data = _jpeg(upright.transpose(Image.Transpose.ROTATE_90), exif=exif)
    assert images.decode(data).image.size == upright.size
    top, bottom, left, right = prepare(data).steps.box
    assert bottom - top > 4 * (right - left)                # a 1 standing up, not lying down


def test_a_12_megapixel_jpeg_decodes_at_an_eighth_and_is_read():
    data = _jpeg(photo(size=(4000, 3000)), quality=80)
    assert images.decode(data, max_side=images.DECODE_SIDE).image.size == (500, 375)
    assert images.decode(data).image.size == (4000, 3000)
    prepared = prepare(data)
    assert prepared.steps is not None
    top, bottom, left, right = prepared.steps.box
    assert _iou((left, top, right, bottom), _scaled(DIGIT_BOX, prepared.steps)) > 0.6


def test_the_steps_picture_shows_four_panels_two_by_two():
    steps = prepare(_jpeg(photo())).steps
    picture = images.steps_picture(steps)
    assert picture.dtype == np.uint8 and picture.ndim == 3 and 0.8 < picture.shape[1] / picture.shape[0] < 1.8
    # the box is drawn in red on the photo (top-left panel)
    red = (picture[..., 0] > 200) & (picture[..., 1] < 80) & (picture[..., 2] < 80)
    assert red[: picture.shape[0] // 2, : picture.shape[1] // 2].sum() > 50


@pytest.mark.slow
def test_the_photo_and_style_sets_are_deterministic_and_laid_out_like_the_others(tmp_path):
    from cvdemo.testsets import write_paper, write_paper_table, write_styles

    for write in (write_paper, write_paper_table, write_styles):
        a, b = tmp_path / f"{write.__name__}_a", tmp_path / f"{write.__name__}_b"
        assert write(a, digits=(1, 2), per_class=3) == write(b, digits=(1, 2), per_class=3) == 6
        files = sorted(p.relative_to(a) for p in a.rglob("*.*"))
        assert [p.parent.name for p in files] == ["1_digits"] * 3 + ["2_digits"] * 3
        assert all((a / p).read_bytes() == (b / p).read_bytes() for p in files)
    photos = sorted((tmp_path / "write_paper_table_a").rglob("*.jpg"))
    assert all(Image.open(p).format == "JPEG" for p in photos)
    for path in photos:                                           # they take the photo path
        gray = np.asarray(images.reduce(images.decode(path).image, 512).convert("L"))
        assert not is_clean(gray, float(np.median(gray[:4])))


def test_the_bench_reports_the_new_sets_and_the_12mp_timing():
    from benchmarks.markdown import markdown
    from benchmarks.targets import check_targets

    scores = {"n": 180, "refused": 1, "scratch": 0.98, "finetuned": 0.97, "lenet": 0.94, "best": 0.98}
    document = {"machine": {"date": "d", "cpu": "c", "usable_cores": 2, "cores": 2, "ram_gb": 1, "platform": "p"},
                "options": {"checkpoints": "checkpoints"},
                "robustness": {"paper": scores, "paper_table": scores, "styles": {**scores, "refused": 0}},
                "preprocess_ms": {"phone_12mp_bytes": 2_000_000, "phone_12mp": {"p50": 50.0, "p95": 60.0},
                                  "sketch": {"p50": 1.0, "p95": 1.2}, "scan_100px": {"p50": 0.7, "p95": 0.8}}}
    document["targets"] = check_targets(document)
    status = {row["name"]: row["status"] for row in document["targets"]}
    assert status["shipped lenet on paper"] == "miss" and status["best model on paper_table"] == "pass"
    assert status["preprocess a 12 MP phone photo p50"] == "pass"
    text = markdown(document)
    assert "unseen paper_table (180 images, 1 refused as blank)" in text and "12 MP phone JPEG" in text


def test_upscaled_scans_of_other_writers_stay_on_the_plain_path(tmp_path):
    """UCI 8x8 scans upscaled to 100 px have a soft halo round thick ink and bars across the
    whole image (5s, 7s): neither makes them photos."""
    from cvdemo.testsets import write_writers

    write_writers(tmp_path, digits=(5,))
    files = sorted(tmp_path.rglob("*.png"))
    assert len(files) > 150
    assert all(prepare(f).steps is None for f in files)
