"""Model registry: every entry builds, weights come from where the metadata says."""
from __future__ import annotations

import time

import numpy as np
import pytest

from cvdemo import backbones, config, models
from cvdemo.backbones import BACKBONES, WeightsUnavailable
from cvdemo.models import MODELS


def _kwargs(name):
    return {"weights": "none"} if name == "finetuned" else {}


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("shape", [(28, 28, 1), (48, 48, 3)])
def test_every_model_builds_and_runs(name, shape):
    import keras

    model = models.build_model(name, shape, 3, **_kwargs(name))
    assert model.output_shape == (None, 3)
    out = np.asarray(model(np.random.default_rng(0).random((2, *shape)).astype(np.float32), training=False))
    assert out.shape == (2, 3) and np.allclose(out.sum(axis=1), 1, atol=1e-5)
    embedding = models.embedding_model(model)
    assert embedding.output_shape[0] is None and len(embedding.output_shape) == 2
    lambdas = [layer for layer in _all_layers(model) if isinstance(layer, keras.layers.Lambda)]
    assert not lambdas, "Lambda layers cannot be loaded in safe mode"


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


@pytest.mark.parametrize("training", [True, False])
def test_fused_batch_norm_matches_keras_batch_norm(training):
    """Same outputs, gradients and moving statistics as the Keras layer it replaces."""
    import keras
    import tensorflow as tf

    from cvdemo.layers import FusedBatchNormalization

    x = tf.constant(np.random.default_rng(0).normal(2, 3, (8, 5, 5, 4)).astype(np.float32))
    plain, fused = keras.layers.BatchNormalization(momentum=0.9), FusedBatchNormalization(momentum=0.9)
    plain.build(x.shape)
    fused.build(x.shape)
    start = [np.random.default_rng(1).random(w.shape).astype(np.float32) + 0.5 for w in plain.weights]
    plain.set_weights(start)
    fused.set_weights(start)
    results = []
    for layer in (plain, fused):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=training)
            loss = tf.reduce_sum(y * tf.sin(y))
        grads = tape.gradient(loss, [x, *layer.trainable_weights])
        results.append((y.numpy(), [g.numpy() for g in grads], layer.get_weights()))
    (y1, g1, w1), (y2, g2, w2) = results
    np.testing.assert_allclose(y2, y1, atol=1e-5)
    for a, b in zip(g2, g1):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    for a, b in zip(w2, w1):                                   # moving mean and variance included
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    if training:
        assert not np.allclose(w2[2], start[2])                 # the moving statistics did move


def test_fused_batch_norm_falls_back_where_the_kernel_does_not_apply():
    """Inputs the fused kernel does not take (here 2-D features) get the Keras layer's results."""
    import keras

    from cvdemo.layers import FusedBatchNormalization

    x = np.random.default_rng(2).normal(size=(6, 3)).astype(np.float32)
    plain, fused = keras.layers.BatchNormalization(), FusedBatchNormalization()
    np.testing.assert_allclose(fused(x, training=True), plain(x, training=True), atol=1e-6)


def test_unknown_names():
    with pytest.raises(KeyError, match="choose from"):
        models.build_model("alexnet", (28, 28, 1), 3)
    with pytest.raises(KeyError, match="choose from"):
        backbones.build_backbone("alexnet", "none")


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "resnet_rs50" else n   # 8 s
                                  for n in sorted(BACKBONES)])
def test_every_backbone_builds_without_weights(name):
    spec = BACKBONES[name]
    started = time.perf_counter()
    base = backbones.build_backbone(name, "none")
    assert base.input_shape == (None, spec.input_size, spec.input_size, 3)
    assert len(base.output_shape) == 2                             # pooled
    assert spec.fine_tune_from in [layer.name for layer in base.layers]
    assert time.perf_counter() - started < 20
    model = models.build_finetuned((28, 28, 1), 3, name, "none")
    assert model.get_layer("backbone").input_shape[1:3] == (spec.input_size, spec.input_size)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_backbone_preprocess_matches_keras(name):
    """Grey input is fed as 3 channels through the backbone's own preprocess_input."""
    from cvdemo.layers import BackbonePreprocess

    grey = np.random.default_rng(1).random((2, 8, 8, 1)).astype(np.float32)
    out = np.asarray(BackbonePreprocess(name)(grey))
    expected = BACKBONES[name].preprocess_input(np.repeat(grey, 3, axis=-1) * 255.0)
    assert out.shape == (2, 8, 8, 3)
    assert np.allclose(out, np.asarray(expected), atol=1e-4)


@pytest.mark.slow     # 6 s
def test_weights_from_a_local_file(tmp_path):
    first = backbones.build_backbone("mobilenet_v2", "none")
    path = tmp_path / "mine.weights.h5"
    first.save_weights(path)
    second = backbones.build_backbone("mobilenet_v2", str(path))
    fresh = backbones.build_backbone("mobilenet_v2", "none")
    assert all(np.array_equal(a, b) for a, b in zip(first.get_weights(), second.get_weights()))
    assert not all(np.array_equal(a, b) for a, b in zip(first.get_weights(), fresh.get_weights()))
    # the same file through the fine-tuned model's path
    model = models.build_finetuned((28, 28, 1), 3, "mobilenet_v2", str(path))
    assert all(np.array_equal(a, b) for a, b in zip(first.get_weights(),
                                                    model.get_layer("backbone").get_weights()))
    assert backbones.describe_weights(str(path)) == "local file mine.weights.h5"


def test_digits_weights_come_from_the_checkpoint_folder(tmp_path):
    base = backbones.build_backbone("mobilenet_v2", "none")
    base.save_weights(backbones.digits_weights_path("mobilenet_v2", tmp_path))
    loaded = backbones.build_backbone("mobilenet_v2", "digits", checkpoints=tmp_path)
    assert np.array_equal(base.get_weights()[0], loaded.get_weights()[0])
    with pytest.raises(WeightsUnavailable, match="cvdemo pretrain"):
        backbones.build_backbone("mobilenet_v2", "digits", checkpoints=tmp_path / "empty")


def test_bad_weight_files(tmp_path):
    with pytest.raises(WeightsUnavailable, match="does not exist"):
        backbones.build_backbone("mobilenet_v2", str(tmp_path / "missing.weights.h5"))
    vgg = backbones.build_backbone("vgg16", "none")
    path = tmp_path / "vgg.weights.h5"
    vgg.save_weights(path)
    with pytest.raises(WeightsUnavailable, match="does not fit"):
        backbones.build_backbone("mobilenet_v2", str(path))
    junk = tmp_path / "junk.weights.h5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(WeightsUnavailable):
        backbones.build_backbone("mobilenet_v2", str(junk))


@pytest.mark.parametrize("name", ["mobilenet_v2", "vgg16", "resnet_rs50"])
def test_imagenet_offline_fails_fast_with_a_clear_message(name, tmp_path, monkeypatch):
    monkeypatch.setattr(config, "KERAS_HOME", tmp_path / "keras")
    monkeypatch.delenv("CVDEMO_OFFLINE", raising=False)
    started = time.perf_counter()
    try:
        backbones.build_backbone(name, "imagenet")
    except WeightsUnavailable as err:
        message = str(err)
    else:
        pytest.skip("ImageNet weights could be downloaded or were cached: this machine is online")
    assert time.perf_counter() - started < 30
    assert BACKBONES[name].imagenet_file in message
    assert "--weights digits" in message and str(tmp_path / "keras" / "models") in message
    assert "\n" not in message and "Traceback" not in message


def test_imagenet_declared_offline_does_not_even_try(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "KERAS_HOME", tmp_path / "keras")
    monkeypatch.setenv("CVDEMO_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    with pytest.raises(WeightsUnavailable, match="no network"):
        backbones.build_backbone("mobilenet_v2", "imagenet")
    assert time.perf_counter() - started < 2


def test_describe_weights():
    assert "ImageNet" in backbones.describe_weights("imagenet")
    assert "offline" in backbones.describe_weights("digits")
    assert "not pretrained" in backbones.describe_weights("none")


@pytest.mark.parametrize("at", [None, backbones.BACKBONES["mobilenet_v2"].teach_from])
def test_split_finetuned_halves_compose_to_the_model(at):
    model = models.build_finetuned((28, 28, 1), 3, "mobilenet_v2", "none")
    lower, upper = models.split_finetuned(model, at)
    x = np.random.default_rng(2).random((3, 28, 28, 1)).astype(np.float32)
    whole = np.asarray(model(x, training=False))
    halves = np.asarray(upper(np.asarray(lower(x, training=False)), training=False))
    assert np.allclose(whole, halves, atol=1e-5)
    assert upper.get_layer("embedding") is model.get_layer("embedding")     # shared, not copied
    if at:      # the top blocks are the model's own layers: teaching them teaches the model
        assert any(w is v for w in upper.trainable_weights for v in model.get_layer("backbone").weights)


@pytest.mark.slow
@pytest.mark.parametrize("backbone", [n for n in backbones.BACKBONES if n != "mobilenet_v2"])
def test_every_backbone_splits_where_teaching_starts(backbone):
    model = models.build_finetuned((28, 28, 1), 3, backbone, "none")
    lower, upper = models.split_finetuned(model, backbones.BACKBONES[backbone].teach_from)
    x = np.random.default_rng(2).random((2, 28, 28, 1)).astype(np.float32)
    assert np.allclose(np.asarray(model(x, training=False)),
                       np.asarray(upper(np.asarray(lower(x, training=False)), training=False)), atol=1e-4)


@pytest.mark.slow
def test_resnet_rs50_trains_from_the_command_line(tiny_dataset, tmp_path):
    """The backbone Keras 3 lacks, built by cvdemo: ``train --backbone resnet_rs50`` saves a model that loads."""
    from cvdemo import checkpoints as ckpt
    from cvdemo.cli import main

    out = tmp_path / "out"
    assert main(["train", "--data", str(tiny_dataset), "--model", "finetune", "--backbone", "resnet_rs50",
                 "--weights", "none", "--epochs", "2", "--batch-size", "8", "--out", str(out)]) == 0
    loaded = ckpt.load(out, "finetuned")
    assert loaded.meta["backbone"] == "resnet_rs50"
    assert loaded.model.get_layer("backbone").input_shape[1:3] == (64, 64)
    assert np.asarray(loaded.model(np.zeros((1, 28, 28, 1), np.float32))).shape == (1, 3)
