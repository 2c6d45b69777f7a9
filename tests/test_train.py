"""Training on tiny data: events, metadata, saving, stopping, and both fine-tuning phases."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from cvdemo import checkpoints as ckpt
from cvdemo.config import FinetuneConfig, TrainConfig
from cvdemo.train import fit_classifier, fit_finetuned, prepare, train

from conftest import write_digits


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return write_digits(tmp_path_factory.mktemp("train") / "digits", per_class=10)


def test_train_scratch_saves_a_checkpoint_with_metadata(tiny_data, tmp_path):
    events = []
    results = train(tiny_data, ("scratch",), TrainConfig(epochs=2, batch_size=8), out=tmp_path,
                    on_event=events.append)
    result = results["scratch"]
    assert result.checkpoint == tmp_path / "scratch.keras" and not result.stopped
    kinds = [e["kind"] for e in events]
    for kind in ("data", "load", "start", "epoch", "model_done", "done"):
        assert kind in kinds, kind
    assert kinds.index("start") < kinds.index("epoch") < kinds.index("model_done") < kinds.index("done")
    assert [e["epoch"] for e in events if e["kind"] == "epoch"] == [1, 2]
    meta = ckpt.read_meta(tmp_path, "scratch")
    assert meta["class_names"] == ["0_digits", "1_digits", "2_digits"]
    assert meta["input_shape"] == [28, 28, 1] and meta["profile"] == "digits"
    assert meta["epochs_run"] == 2 and len(meta["history"]["loss"]) == 2
    assert meta["data"]["n_train"] == 24 and meta["data"]["n_val"] == 6
    assert len(meta["data"]["val_files"]) == 6 and meta["weights"] == "none"
    assert 0 <= meta["val_accuracy"] <= 1 and len(meta["metrics"]["confusion_matrix"]) == 3
    assert meta["data"]["fingerprint"] == prepare(tiny_data, TrainConfig()).fingerprint
    loaded = ckpt.load(tmp_path, "scratch")
    x = np.zeros((1, 28, 28, 1), np.float32)
    assert np.allclose(np.asarray(loaded.model(x)), np.asarray(result.model(x)), atol=1e-5)


@pytest.mark.slow     # 12 s; test_sessions stops a run at the next batch in the default run
def test_a_stopped_run_saves_nothing(tiny_data, tmp_path):
    ckpt_before = train(tiny_data, ("scratch",), TrainConfig(epochs=1, batch_size=8), out=tmp_path)
    before = (tmp_path / "scratch.keras").read_bytes()
    stop = threading.Event()

    def on_event(event):
        if event["kind"] == "batch":
            stop.set()

    results = train(tiny_data, ("scratch",), TrainConfig(epochs=3, batch_size=8), out=tmp_path,
                    on_event=on_event, stop=stop)
    assert results["scratch"].stopped and results["scratch"].checkpoint is None
    assert (tmp_path / "scratch.keras").read_bytes() == before
    assert results["scratch"].meta["epochs_run"] == 1          # it stopped in the first epoch
    assert ckpt_before["scratch"].checkpoint.exists()


@pytest.mark.slow     # 20 s; tiny_checkpoints fine-tunes through train() in every run
def test_finetune_runs_both_phases(tiny_data):
    events = []
    prepared = prepare(tiny_data, TrainConfig(profile="digits"))
    result = fit_finetuned(prepared, TrainConfig(epochs=2, batch_size=8),
                           FinetuneConfig(weights="none", augmented_copies=1), on_event=events.append)
    phases = [e["phase"] for e in events if e["kind"] == "epoch"]
    assert phases == ["head", "fine-tune"]
    assert result.meta["weights"] == "none" and result.meta["backbone"] == "mobilenet_v2"
    assert result.meta["head_epochs"] == 1 and result.meta["fine_tune_epochs"] == 1
    assert any(e["kind"] == "phase" and e["phase"] == "features" for e in events)
    backbone = result.model.get_layer("backbone")
    assert backbone.trainable                                  # the top was unfrozen


def test_the_training_stream_shows_every_image_once_per_epoch_in_a_new_order():
    from cvdemo.fitting import shuffled_batches as _batches

    x = np.arange(10, dtype=np.float32)[:, None]
    y = np.arange(10)
    stream, steps = _batches(x, y, batch_size=4, seed=3)
    assert steps == 3
    batches = [b.numpy() for _, b in stream.take(3 * steps)]
    assert [len(b) for b in batches] == [4, 4, 2] * 3          # epochs end where the data ends
    epochs = [np.concatenate(batches[i:i + steps]) for i in range(0, 3 * steps, steps)]
    for epoch in epochs:
        assert sorted(epoch) == list(range(10))
    assert len({tuple(e) for e in epochs}) == 3                 # reshuffled every epoch
    again = [b.numpy() for _, b in _batches(x, y, 4, 3)[0].take(steps)]
    assert np.array_equal(np.concatenate(again), epochs[0])     # and seeded


def test_the_training_stream_runs_without_tf_data_autotuning():
    """Autotuning's sleeping thread held up the iterator's deletion at the end of fit (3-27 s)."""
    from cvdemo.fitting import shuffled_batches as _batches

    stream, _ = _batches(np.zeros((8, 2), np.float32), np.zeros(8), batch_size=4, seed=0)
    assert stream.options().autotune.enabled is False


@pytest.mark.slow
def test_validation_and_the_feature_pass_run_without_autotuning_too(tiny_data, monkeypatch):
    """Handed arrays, Keras reads them through autotuned streams of its own, and deleting one
    waited for the autotuner: 4 s after about half the fine-tuned model's feature passes."""
    import keras
    import tensorflow as tf

    from cvdemo.fitting import in_order as _in_order

    streams = []
    fit, predict = keras.Model.fit, keras.Model.predict

    def spy_fit(self, x=None, *args, **kwargs):
        streams.extend([x, kwargs.get("validation_data")])
        return fit(self, x, *args, **kwargs)

    def spy_predict(self, x, *args, **kwargs):
        streams.append(x)
        return predict(self, x, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", spy_fit)
    monkeypatch.setattr(keras.Model, "predict", spy_predict)
    prepared = prepare(tiny_data, TrainConfig(profile="digits"))
    fit_classifier("lenet", prepared, TrainConfig(epochs=1, batch_size=8))
    fit_finetuned(prepared, TrainConfig(epochs=2, batch_size=8), FinetuneConfig(weights="none", augmented_copies=0))
    assert len(streams) == 7       # lenet: train, validation; head: features, train, validation; phase 2: two
    for stream in streams:
        assert isinstance(stream, tf.data.Dataset) and stream.options().autotune.enabled is False

    x, y = np.arange(10, dtype=np.float32), np.arange(10) % 2
    assert np.array_equal(np.concatenate([b for b, _ in _in_order(x, y, batch_size=4).as_numpy_iterator()]), x)
    assert np.array_equal(np.concatenate(list(_in_order(x, batch_size=4).as_numpy_iterator())), x)


@pytest.mark.slow
def test_no_variable_is_created_inside_a_traced_training_step(tiny_data):
    """Every variable exists before fit traces its step, so the step is traced once, not twice.

    Keras 3's TensorFlow trainer creates the optimizer's and metrics' variables inside the first
    trace unless the model is built first; tf.function then retraces the whole step (seconds).
    """
    import tensorflow as tf

    created = []

    def creator(next_creator, **kwargs):
        if tf.inside_function():
            created.append(kwargs.get("name"))
        return next_creator(**kwargs)

    prepared = prepare(tiny_data, TrainConfig(profile="digits"))
    with tf.variable_creator_scope(creator):
        fit_classifier("scratch", prepared, TrainConfig(epochs=1, batch_size=8))
        fit_finetuned(prepared, TrainConfig(epochs=2, batch_size=8),
                      FinetuneConfig(weights="none", augmented_copies=0))
    assert created == []


@pytest.mark.slow
def test_the_reported_training_time_includes_building_the_model(tiny_data, monkeypatch):
    """``train_seconds`` (the CLI's, the app's and the benchmark's figure) starts before the model is built.

    The trainer's clock jumps an hour while a model is built: only a timer started before the
    build sees the hour.
    """
    import time
    import types

    from cvdemo import models
    from cvdemo import train as train_module

    jump = [0.0]
    clock = types.SimpleNamespace(perf_counter=lambda: time.perf_counter() + jump[0], time=time.time)
    monkeypatch.setattr(train_module, "time", clock)

    def costing_an_hour(build):
        def built(*args, **kwargs):
            jump[0] += 3600.0
            return build(*args, **kwargs)
        return built

    monkeypatch.setattr(models, "build_model", costing_an_hour(models.build_model))
    monkeypatch.setattr(models, "build_finetuned", costing_an_hour(models.build_finetuned))
    prepared = prepare(tiny_data, TrainConfig(profile="digits"))
    scratch = fit_classifier("scratch", prepared, TrainConfig(epochs=1, batch_size=8))
    tuned = fit_finetuned(prepared, TrainConfig(epochs=1, batch_size=8),
                          FinetuneConfig(weights="none", augmented_copies=0))
    assert scratch.meta["train_seconds"] >= 3600
    assert tuned.meta["train_seconds"] >= 3600


@pytest.mark.slow
def test_training_is_reproducible(tiny_data):
    cfg = TrainConfig(epochs=1, batch_size=8)
    a, b = (train(tiny_data, ("scratch",), cfg, out=None)["scratch"] for _ in range(2))
    assert a.meta["history"]["loss"] == pytest.approx(b.meta["history"]["loss"], rel=1e-3)
    assert a.meta["data"]["val_files"] == b.meta["data"]["val_files"]


def test_bad_data_folder_fails_before_training(tmp_path):
    from cvdemo.data import DatasetError

    write_digits(tmp_path / "one", per_class=3, classes=(1,))
    with pytest.raises(DatasetError, match="at least 2"):
        train(tmp_path / "one", ("scratch",), TrainConfig(epochs=1), out=tmp_path / "out")
    assert not (tmp_path / "out").exists()
