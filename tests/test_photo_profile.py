"""The `photo` profile end to end: colour photos are detected, trained, saved and served as photos."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from cvdemo import checkpoints as ckpt
from cvdemo.config import FinetuneConfig, TrainConfig
from cvdemo.data import detect_profile, scan_folder


def _photo(kind: str, rng: np.random.Generator, size: int = 96) -> Image.Image:
    """A noisy colour scene with a warm disc ('sun') or a cool square ('sea')."""
    base = rng.integers(40, 200, 3)
    gradient = np.linspace(0, 60, size)[:, None, None]
    pixels = np.clip(base + gradient + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    draw = ImageDraw.Draw(image)
    x, y, r = rng.integers(20, size - 20, 2).tolist() + [int(rng.integers(10, 18))]
    if kind == "sun":
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(250, int(rng.integers(120, 200)), 20))
    else:
        draw.rectangle((x - r, y - r, x + r, y + r), fill=(20, int(rng.integers(60, 140)), 240))
    return image


@pytest.fixture
def photo_dataset(tmp_path):
    rng = np.random.default_rng(0)
    for kind in ("sea", "sun"):
        folder = tmp_path / "photos" / kind
        folder.mkdir(parents=True)
        for i in range(16):
            _photo(kind, rng).save(folder / f"{kind}_{i}.jpg", quality=90)
    return tmp_path / "photos"


def test_photo_dataset_is_detected_as_photo(photo_dataset, tiny_dataset):
    assert detect_profile(scan_folder(photo_dataset)) == "photo"
    assert detect_profile(scan_folder(tiny_dataset)) == "digits"


@pytest.mark.slow
def test_photo_dataset_trains_and_serves_with_the_photo_profile(photo_dataset, tmp_path):
    from cvdemo.service import Service
    from cvdemo.train import train

    out = tmp_path / "ckpt"
    train(photo_dataset, ("scratch", "finetuned"), TrainConfig(epochs=2, batch_size=8),
          FinetuneConfig(weights="none"), out=out)
    for name in ("scratch", "finetuned"):
        meta = ckpt.read_meta(out, name)
        assert meta["profile"] == "photo"
        assert meta["class_names"] == ["sea", "sun"]
        assert meta["input_shape"][-1] == 3
    service = Service(checkpoints=out)
    probe = tmp_path / "probe.png"
    _photo("sun", np.random.default_rng(99)).save(probe)
    result = service.classify(probe)
    for answer in result.models.values():
        assert answer.model_input.shape[-1] == 3          # colour kept, not ink-cropped
        assert set(answer.probabilities) == {"sea", "sun"}
        assert abs(sum(answer.probabilities.values()) - 1) < 1e-4
    # the page's words follow the set: colour photos, and a drawing is told it is not one
    pytest.importorskip("gradio")
    from webapp.tabs.classify import DRAWN_ON_PHOTOS, Handlers

    assert service.model_set().profile == "photo"
    on = Handlers(service)
    *_, hint_text, seen_text = on.columns("shipped")
    assert "colour photos" in hint_text and "colour image" in seen_text and "MNIST" not in seen_text
    drawing = np.full((320, 320), 255, np.uint8)
    drawing[60:260, 150:172] = 0
    assert DRAWN_ON_PHOTOS in on.show(service.classify(drawing), drawing, drawing, on.drawn_notice("shipped"))[0]
