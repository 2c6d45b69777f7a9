"""The Keras plumbing every training shares: tf.data streams without autotuning, the compile
recipe, progress and stop callbacks, augmentation in front of a model, distribution strategies.

Knows nothing about which models are trained or on what data.
"""
from __future__ import annotations

import contextlib
import math
import threading
import time
from pathlib import Path
from typing import Callable

from . import config
from .config import TrainConfig

OnEvent = Callable[[dict], None]


def progress_callbacks(name: str, phase: str, total_epochs: int, steps: int, emit: OnEvent,
               stop: threading.Event | None, started: float, logdir: Path | None):
    import keras

    class Report(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if stop is not None and stop.is_set():
                self.model.stop_training = True
            if batch % 5 == 0:
                emit({"kind": "batch", "model": name, "phase": phase, "epoch": self._epoch,
                      "batch": batch + 1, "steps": steps, "total_epochs": total_epochs})

        def on_epoch_begin(self, epoch, logs=None):
            self._epoch = epoch + 1

        def on_epoch_end(self, epoch, logs=None):
            emit({"kind": "epoch", "model": name, "phase": phase, "epoch": epoch + 1,
                  "total_epochs": total_epochs, "seconds": time.perf_counter() - started,
                  "logs": {k: float(v) for k, v in (logs or {}).items()}})

    callbacks = [Report(), keras.callbacks.TerminateOnNaN()]
    if logdir:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(Path(logdir) / name / phase)))
    return callbacks


def merge_history(history: dict, new: dict) -> None:
    for key, values in new.items():
        history.setdefault(key, []).extend(float(v) for v in values)


def with_augmentation(model, profile: str, seed: int):
    """A training-only wrapper: augmentation layers in front of the inference model."""
    import keras

    from .data import make_augmenter

    inputs = keras.Input(model.input_shape[1:])
    return keras.Model(inputs, model(make_augmenter(profile, seed)(inputs)), name=f"train_{model.name}")


def compile_model(model, learning_rate, steps_total: int | None = None, sample=None):
    """Adam (cosine-decayed over ``steps_total``) on cross-entropy, tracking accuracy.

    With ``sample`` (a batch of inputs and labels) every variable of the training step (the
    optimizer's slots, the metrics' totals) is created here, before ``fit`` traces the step:
    Keras 3's TensorFlow trainer otherwise creates them inside the first trace when no
    distribution strategy is set, and ``tf.function`` then traces the whole step twice
    (docs/decisions.md, "Training time").
    """
    import keras

    lr = learning_rate
    if steps_total:
        lr = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(1, steps_total), alpha=0.05)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    if sample is not None:
        x, y = sample
        model._symbolic_build(data_batch=(x[:1], y[:1], None))   # what fit does itself under a strategy


def without_autotuning(stream):
    """``stream`` with tf.data's autotuning off and a fixed prefetch of two batches.

    Deleting an autotuned iterator waits for the autotuner's sleeping thread, which sleeps
    longer the longer a stream is read; Keras wraps arrays handed to ``fit``, ``predict`` and the
    per-epoch validation in autotuned streams, so every stream of the package comes through
    here (docs/decisions.md, "Training time"). The data sits in memory: there is nothing to tune.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return stream.prefetch(2).with_options(options)


def shuffled_batches(x, y, batch_size: int, seed: int):
    """An endless stream of shuffled ``(x, y)`` batches, reshuffled every epoch, and its steps per epoch.

    ``fit`` reads it with ``steps_per_epoch`` (and ``shuffle=False``: the stream shuffles itself),
    so one iterator serves every epoch: handed arrays, Keras builds a new iterator per epoch,
    and replacing the old one stalls that epoch's first step (docs/decisions.md, "Training time").
    """
    import tensorflow as tf

    stream = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
    return without_autotuning(stream.batch(batch_size).repeat()), math.ceil(len(y) / batch_size)


def in_order(*arrays, batch_size: int):
    """One pass over ``arrays`` in order, in batches, for validation and ``predict``."""
    import tensorflow as tf

    return without_autotuning(tf.data.Dataset.from_tensor_slices(arrays if len(arrays) > 1 else arrays[0])
                               .batch(batch_size))


_STRATEGIES: dict = {}      # created once per process (MultiWorkerMirroredStrategy may only be made once)


def distribution_strategy(name: str = "default"):
    """The ``tf.distribute`` strategy for ``TrainConfig.strategy``, or None for the default path.

    ``mirrored``: synchronous data parallelism over every GPU of this machine (over the logical
    CPU devices when there is no GPU, which is how the tests run it). ``multiworker``: the same
    across machines described by the ``TF_CONFIG`` environment variable (one worker without it).
    """
    if name in (None, "default"):
        return None
    if name not in config.STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose from {', '.join(config.STRATEGIES)}")
    if name not in _STRATEGIES:
        import tensorflow as tf

        if name == "mirrored":
            devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
            _STRATEGIES[name] = tf.distribute.MirroredStrategy([d.name for d in devices])
        else:
            _STRATEGIES[name] = tf.distribute.MultiWorkerMirroredStrategy()
    return _STRATEGIES[name]


def strategy_scope(cfg: TrainConfig):
    """Where models are built and compiled: the strategy's scope, or nothing by default."""
    strategy = distribution_strategy(cfg.strategy)
    return strategy.scope() if strategy is not None else contextlib.nullcontext()
