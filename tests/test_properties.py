"""Property-based tests of the one preprocessing path: any array or bytes either becomes a valid
(28, 28, 1) float32 image in [0, 1] or raises the project's ImageError, nothing else."""
from __future__ import annotations

import io

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cvdemo.images import ImageError, preprocess

DTYPES = [np.uint8, np.uint16, np.int32, np.float32, np.float64, np.bool_]
SETTINGS = settings(max_examples=120, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _elements(dtype):
    if np.dtype(dtype).kind == "f":
        return st.floats(allow_nan=True, allow_infinity=True, width=np.dtype(dtype).itemsize * 8)
    return None


@st.composite
def arrays(draw):
    dtype = draw(st.sampled_from(DTYPES))
    ndim = draw(st.integers(0, 4))
    shape = tuple(draw(st.lists(st.integers(0, 40), min_size=ndim, max_size=ndim)))
    if ndim == 3 and draw(st.booleans()):
        shape = (*shape[:2], draw(st.sampled_from([1, 3, 4])))    # plausible image layouts often
    return draw(hnp.arrays(dtype, shape, elements=_elements(dtype)))


def check(source, profile="digits"):
    try:
        out = preprocess(source, profile)
    except ImageError as err:
        assert str(err), "an ImageError must carry a message"
        return None
    side = 28 if profile == "digits" else out.shape[0]
    assert out.shape == ((28, 28, 1) if profile == "digits" else (side, side, 3))
    assert out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    return out


@SETTINGS
@given(arrays())
def test_any_array_works_or_raises_image_error(array):
    check(array)


@SETTINGS
@given(arrays())
def test_any_array_photo_profile(array):
    check(array, "photo")


@SETTINGS
@given(st.binary(max_size=2048))
def test_random_bytes(data):
    check(data)


@st.composite
def corrupted_pngs(draw):
    """A real small PNG/GIF/BMP/JPEG with some bytes flipped or cut off: decoders' edge cases."""
    fmt = draw(st.sampled_from(["PNG", "GIF", "BMP", "JPEG", "WEBP"]))
    a = draw(hnp.arrays(np.uint8, (draw(st.integers(1, 24)), draw(st.integers(1, 24)))))
    buffer = io.BytesIO()
    from PIL import Image

    Image.fromarray(a, mode="L").save(buffer, format=fmt)
    data = bytearray(buffer.getvalue())
    for _ in range(draw(st.integers(0, 4))):
        i = draw(st.integers(0, len(data) - 1))
        data[i] = draw(st.integers(0, 255))
    cut = draw(st.integers(1, len(data)))
    return bytes(data[:cut])


@SETTINGS
@given(corrupted_pngs())
def test_corrupted_image_files(data):
    check(data)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.integers(8, 60), st.integers(8, 60), st.integers(0, 3), st.booleans())
def test_a_stroke_anywhere_is_found_either_polarity(h, w, thickness, light_on_dark):
    """Any visible stroke on flat paper is found, whatever the canvas size and polarity."""
    canvas = np.full((h, w), 255, np.uint8)
    canvas[h // 4: 3 * h // 4, w // 2 - thickness: w // 2 + thickness + 1] = 0
    assume(canvas.min() == 0)
    if light_on_dark:
        canvas = 255 - canvas
    out = check(canvas)
    assert out is not None and out.max() > 0.5


@given(hnp.arrays(np.float64, st.integers(1, 60), elements=st.sampled_from([0.0, 0.5, 1.0, 1.5, 2.0, 3.0])))
def test_median_above_is_the_median_compared(values):
    from cvdemo.images.paper import _median_above

    assert _median_above(values, 1.0) == (float(np.median(values)) > 1.0)


@given(hnp.arrays(np.bool_, st.tuples(st.integers(1, 30), st.integers(1, 30))))
def test_bounds_is_the_box_of_nonzero(mask):
    from cvdemo.images.digits import bounds

    assume(mask.any())
    ys, xs = np.nonzero(mask)
    rows, cols = bounds(mask)
    assert (rows.start, rows.stop, cols.start, cols.stop) == (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1)
