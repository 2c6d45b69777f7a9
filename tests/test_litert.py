"""LiteRT serving (cvdemo.litert): every shipped model and a freshly trained one answer like
Keras; a refused or wrong conversion falls back to Keras with its reason; the cache and the
conversions shipped beside checkpoints are used, and a damaged one is replaced; concurrent callers
each get their own answer."""
from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT

SHIPPED = ROOT / "checkpoints"


def _digits(size: int = 48) -> np.ndarray:
    """Real MNIST digits as the models receive them, (N, 28, 28, 1) float32 in [0, 1]."""
    from cvdemo.data import mnist_digits

    pixels, _ = mnist_digits()
    return (pixels[-size:].reshape(-1, 28, 28, 1) / 255.0).astype(np.float32)


def _assert_like_keras(served_model, batch: np.ndarray) -> None:
    want = [np.asarray(t) for t in served_model.graph([batch], training=False)]
    got = served_model.infer(batch)
    for a, b in zip(got, want):
        assert np.max(np.abs(a - b)) <= 1e-4
    assert (got[0].argmax(1) == want[0].argmax(1)).all()


@pytest.fixture(autouse=True)
def convert_now(monkeypatch):
    """The tests' default is no conversion (conftest.py); these tests are about it."""
    from cvdemo import config

    monkeypatch.setattr(config, "LITERT_CONVERT", "now")


@pytest.mark.skipif(not (SHIPPED / "scratch.keras").exists(), reason="no shipped checkpoints")
def test_every_shipped_model_is_served_on_litert_and_answers_like_keras(tmp_path):
    from cvdemo.service import Service

    service = Service(checkpoints=SHIPPED, runs=tmp_path / "runs")
    model_set = service.model_set()
    assert set(model_set.models) >= {"scratch", "finetuned"}
    for name, served in model_set.models.items():
        assert served.backend == "litert", f"{name}: {served.backend_reason}"
        _assert_like_keras(served, _digits())
    answer = service.classify(_digits(1)[0] * 255)                  # and each answer says what ran it
    assert {a.runtime for a in answer.models.values()} == {"litert"}
    assert all(a["runtime"] == "litert" for a in answer.as_dict().values())


def test_a_freshly_trained_model_is_served_on_litert_and_answers_like_keras(tiny_checkpoints):
    from cvdemo import checkpoints
    from cvdemo.service import ServedModel

    served = ServedModel(checkpoints.load(tiny_checkpoints, "scratch"))     # the fine-tuned one: 15 s more
    assert served.backend == "litert", served.backend_reason
    _assert_like_keras(served, _digits())


@pytest.fixture
def two_outputs():
    """A small conv net with two outputs, like the served graphs (probabilities, embedding)."""
    import keras

    keras.utils.set_random_seed(3)
    inputs = keras.Input((28, 28, 1), name="image")
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    embedding = keras.layers.Dense(8, activation="relu", name="embedding")(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, [keras.layers.Dense(3, activation="softmax")(embedding), embedding])


def test_a_refused_conversion_serves_keras_and_says_why(two_outputs, tmp_path, monkeypatch, caplog):
    from cvdemo import litert

    def refuse(model):
        raise RuntimeError("converter refused an op")

    monkeypatch.setattr(litert, "convert", refuse)
    with caplog.at_level(logging.WARNING, logger="cvdemo.litert"):
        served = litert.fast_inference(two_outputs, (28, 28, 1), cache=tmp_path)
    assert served.backend == "keras" and "converter refused an op" in served.reason
    assert "converter refused an op" in caplog.text
    batch = _digits(5)
    np.testing.assert_allclose(served.infer(batch)[0], np.asarray(two_outputs(batch)[0]), atol=1e-6)


def test_a_conversion_that_answers_differently_is_not_trusted(two_outputs, tmp_path, monkeypatch):
    from cvdemo import litert

    honest = litert.LiteRTModel.__call__
    monkeypatch.setattr(litert.LiteRTModel, "__call__", lambda self, b: [o + 1e-3 for o in honest(self, b)])
    served = litert.fast_inference(two_outputs, (28, 28, 1), cache=tmp_path)
    assert served.backend == "keras" and "differs from Keras" in served.reason


def test_conversions_are_cached_and_a_damaged_one_is_replaced(two_outputs, tmp_path, monkeypatch):
    from cvdemo import litert

    calls = []
    real = litert.convert
    monkeypatch.setattr(litert, "convert", lambda m: calls.append(1) or real(m))
    assert litert.fast_inference(two_outputs, (28, 28, 1), cache=tmp_path).backend == "litert"
    assert litert.fast_inference(two_outputs, (28, 28, 1), cache=tmp_path).backend == "litert"
    assert len(calls) == 1
    (cached,) = tmp_path.glob("*.tflite")
    cached.write_bytes(cached.read_bytes()[:200])             # torn by a crash
    assert litert.fast_inference(two_outputs, (28, 28, 1), cache=tmp_path).backend == "litert"
    assert len(calls) == 2 and cached.stat().st_size > 200


def test_a_model_without_a_conversion_serves_keras_until_its_conversion_is_checked(two_outputs, tmp_path):
    from cvdemo import litert

    served = litert.fast_inference(two_outputs, (28, 28, 1), cache=tmp_path, when="background")
    batch = _digits(3)
    first = served.infer(batch)                       # answers at once, whatever runs it
    assert served.ready.wait(120)
    assert served.backend == "litert" and served.reason == ""
    np.testing.assert_allclose(served.infer(batch)[0], first[0], atol=1e-4)


def test_a_background_conversion_that_fails_in_its_child_serves_keras_and_says_why(tmp_path):
    import keras

    from cvdemo import litert

    inputs = keras.Input((28, 28, 1), name="image")
    doubled = keras.layers.Lambda(lambda x: 2 * x)(inputs)        # the child's safe loading refuses it
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(doubled)))
    served = litert.fast_inference(model, (28, 28, 1), cache=tmp_path, when="background")
    assert served.ready.wait(120)
    assert served.backend == "keras" and "the converter exited with 1" in served.reason, served.reason
    assert not list(tmp_path.glob("*.tflite"))
    batch = _digits(2)
    np.testing.assert_allclose(served.infer(batch), np.asarray(model(batch)), atol=1e-6)


def test_with_conversion_off_only_an_existing_conversion_is_used(two_outputs, tmp_path):
    from cvdemo import litert

    off = litert.fast_inference(two_outputs, (28, 28, 1), cache=tmp_path, when="off")
    assert off.backend == "keras" and "off" in off.reason and not list(tmp_path.iterdir())
    litert.fast_inference(two_outputs, (28, 28, 1), cache=tmp_path, when="now")
    assert litert.fast_inference(two_outputs, (28, 28, 1), cache=tmp_path, when="off").backend == "litert"


def test_concurrent_callers_each_get_their_own_answer(two_outputs, tmp_path):
    from cvdemo import litert

    model = litert.LiteRTModel(litert.converted(two_outputs, tmp_path)[0], outputs=2, pool=2)
    inputs = [np.random.default_rng(i).random((1 + i % 5, 28, 28, 1), dtype=np.float32) for i in range(24)]
    want = [model(x)[0] for x in inputs]
    got: dict[int, list] = {}

    def caller(worker: int):
        got[worker] = [model(inputs[i])[0] for i in range(worker, len(inputs), 8) for _ in range(5)]

    threads = [threading.Thread(target=caller, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for worker, answers in got.items():
        expected = [want[i] for i in range(worker, len(inputs), 8) for _ in range(5)]
        assert all(np.array_equal(a, b) for a, b in zip(answers, expected))


def test_convert_command_ships_conversions_beside_the_checkpoints(tiny_checkpoints, tmp_path, capsys, monkeypatch):
    import shutil

    from cvdemo import litert
    from cvdemo.cli import main

    folder = tmp_path / "checkpoints"          # the scratch model only: converting MobileNetV2 takes 15 s
    folder.mkdir()
    for path in tiny_checkpoints.glob("scratch.*"):
        shutil.copy(path, folder)
    assert main(["convert", "--checkpoints", str(folder), "--json"]) == 0
    reports = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in reports] == ["scratch"]
    assert all(r["runtime"] == "litert" and Path(r["file"]).parent == folder / "litert" for r in reports), reports
    # a fresh start with an empty cache reads them instead of converting
    monkeypatch.setattr(litert, "convert", lambda m: pytest.fail("converted again"))
    from cvdemo.service import Service

    served = Service(checkpoints=folder, runs=tmp_path / "runs", warm=False).model_set().models
    assert {m.backend for m in served.values()} == {"litert"}
