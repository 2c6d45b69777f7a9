"""Training: the scratch CNN / LeNet with augmentation, and two-phase fine-tuning of a backbone.

Reports progress as plain event dicts through a callback and stops at the next batch when a
``threading.Event`` is set. Saves nothing unless asked; a stopped run never overwrites models.
"""
from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import config
from .config import FinetuneConfig, TrainConfig
from .data import Arrays, detect_profile, fingerprint, load_arrays, scan_folder, split_indices
from .fitting import (
    compile_model,
    in_order,
    merge_history,
    progress_callbacks,
    shuffled_batches,
    strategy_scope,
    with_augmentation,
)

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

    def relative(self, i: int) -> str:
        """Image ``i``'s file as metadata names it: relative to the dataset's root, or
        ``taught/<class>/<file>`` for a taught example kept elsewhere."""
        path = Path(self.arrays.paths[i])
        if path.is_relative_to(self.root):
            return str(path.relative_to(self.root))
        return f"taught/{self.arrays.class_names[self.arrays.labels[i]]}/{path.name}"

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
    dataset = scan_folder(Path(data_dir)).first_per_class(cfg.max_images_per_class)
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
    batches, steps = shuffled_batches(prepared.x_train, prepared.y_train, cfg.batch_size, cfg.seed)
    with strategy_scope(cfg):
        model = build_model(name, arrays.images.shape[1:], len(arrays.class_names))
        trainer = with_augmentation(model, arrays.profile, cfg.seed) if cfg.augment else model
        compile_model(trainer, cfg.learning_rate, steps * cfg.epochs, sample=(prepared.x_train, prepared.y_train))
    emit({"kind": "start", "model": name, "epochs": cfg.epochs, "params": model.count_params()})
    fitted = trainer.fit(batches, steps_per_epoch=steps, shuffle=False, epochs=cfg.epochs,
                         validation_data=in_order(prepared.x_val, prepared.y_val, batch_size=cfg.batch_size),
                         verbose=0, callbacks=progress_callbacks(name, "train", cfg.epochs, steps, emit, stop, started, logdir))
    seconds = time.perf_counter() - started
    history: dict = {}
    merge_history(history, fitted.history)
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

    from .backbones import describe_weights
    from .models import build_finetuned

    emit = on_event or (lambda e: None)
    keras.utils.set_random_seed(cfg.seed)
    arrays = prepared.arrays
    started = time.perf_counter()           # like fit_classifier: building the model is training time
    with strategy_scope(cfg):
        model = build_finetuned(arrays.images.shape[1:], len(arrays.class_names), ft.backbone, ft.weights,
                                checkpoints)
    head_epochs = max(1, round(cfg.epochs * ft.head_fraction)) if cfg.epochs > 1 else cfg.epochs
    tune_epochs = cfg.epochs - head_epochs
    emit({"kind": "start", "model": name, "epochs": cfg.epochs, "params": model.count_params(),
          "weights": describe_weights(ft.weights), "backbone": ft.backbone})
    history: dict = {}

    def watch(phase: str, steps: int):
        return progress_callbacks(name, phase, cfg.epochs, steps, emit, stop, started, logdir)

    merge_history(history, _fit_head(model, prepared, cfg, ft, head_epochs, emit, watch, name))
    stopped = bool(stop is not None and stop.is_set())
    if tune_epochs > 0 and not stopped:
        merge_history(history, _fine_tune(model, prepared, cfg, ft, head_epochs, emit, watch, name))
        stopped = bool(stop is not None and stop.is_set())
    seconds = time.perf_counter() - started
    meta = _meta(name, model, prepared, cfg, history, seconds, weights=ft.weights, backbone=ft.backbone,
                 extra={"finetune": asdict(ft), "head_epochs": head_epochs, "fine_tune_epochs": tune_epochs})
    return TrainResult(name, model, meta, stopped=stopped, history=history)


def _fit_head(model, prepared: Prepared, cfg: TrainConfig, ft: FinetuneConfig, epochs: int, emit: OnEvent,
              watch, name: str) -> dict:
    """Phase 1: the frozen backbone's features computed once, the head fitted on them; its history."""
    from .data import make_augmenter
    from .models import split_finetuned

    with strategy_scope(cfg):
        features, head = split_finetuned(model)
    x_train, y_train = prepared.x_train, prepared.y_train
    views, labels = [x_train], [y_train]
    if cfg.augment:
        augment = make_augmenter(prepared.arrays.profile, cfg.seed)
        for _ in range(ft.augmented_copies):
            views.append(np.concatenate([np.asarray(augment(x_train[i:i + 256], training=True))
                                         for i in range(0, len(x_train), 256)]))
            labels.append(y_train)
    emit({"kind": "phase", "model": name, "phase": "features",
          "message": f"computing frozen {ft.backbone} features once for {sum(map(len, views))} images"})
    # one call for the training views and the validation images: a second predict would retrace
    # the backbone for its own last-batch shape
    f_all = features.predict(in_order(np.concatenate([*views, prepared.x_val]), batch_size=128), verbose=0)
    y_all = np.concatenate(labels)
    f_train, f_val = f_all[:len(y_all)], f_all[len(y_all):]
    batches, steps = shuffled_batches(f_train, y_all, cfg.batch_size, cfg.seed)
    with strategy_scope(cfg):
        compile_model(head, ft.head_learning_rate, steps * epochs, sample=(f_train, y_all))
    return head.fit(batches, steps_per_epoch=steps, shuffle=False, epochs=epochs,
                    validation_data=in_order(f_val, prepared.y_val, batch_size=cfg.batch_size), verbose=0,
                    callbacks=watch("head", steps)).history


def _fine_tune(model, prepared: Prepared, cfg: TrainConfig, ft: FinetuneConfig, head_epochs: int, emit: OnEvent,
               watch, name: str) -> dict:
    """Phase 2: the backbone's top unfrozen (BatchNorm statistics kept), end to end at a low rate."""
    import keras

    from .backbones import BACKBONES

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
    x_train, y_train = prepared.x_train, prepared.y_train
    batches, steps = shuffled_batches(x_train, y_train, cfg.batch_size, cfg.seed + 7)
    with strategy_scope(cfg):
        trainer = with_augmentation(model, prepared.arrays.profile, cfg.seed + 7) if cfg.augment else model
        compile_model(trainer, ft.fine_tune_learning_rate, steps * (cfg.epochs - head_epochs),
                      sample=(x_train, y_train))
    return trainer.fit(batches, steps_per_epoch=steps, shuffle=False, epochs=cfg.epochs, initial_epoch=head_epochs,
                       validation_data=in_order(prepared.x_val, prepared.y_val, batch_size=cfg.batch_size),
                       verbose=0, callbacks=watch("fine-tune", steps)).history


def _meta(name, model, prepared: Prepared, cfg: TrainConfig, history: dict, seconds: float,
          weights: str | None, backbone: str | None, extra: dict | None = None, fast=None,
          novelty_images: np.ndarray | None = None) -> dict:
    """The checkpoint metadata of a trained model: its scores on the validation split and its
    novelty. ``fast``: a faster callable of the model (probabilities of a batch) with an
    ``embed`` method, when the caller has one (teaching's); ``novelty_images``: the images the
    novelty bank is drawn from (default: the training split)."""
    from .backbones import describe_weights
    from .evaluate import evaluate_model
    from .explain.calibrate import fit_model

    arrays = prepared.arrays
    scores = evaluate_model(fast or model, prepared.x_val, prepared.y_val, arrays.class_names)
    scores.pop("probabilities")
    family = name if name in ("scratch", "lenet") else "finetuned"
    # fitted on this run's split: the bank from training images, the threshold from validation
    val_files = [prepared.relative(i) for i in prepared.val_idx]
    bank_from = prepared.x_train if novelty_images is None else novelty_images
    novelty = fit_model(model, family, arrays.profile, bank_from, prepared.x_val, val_files,
                        embed=fast.embed if fast is not None else None)
    return {
        "model": family,
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
                 "val_files": val_files},
        "split": {"val_fraction": cfg.val_fraction, "seed": cfg.seed},
        "train_config": asdict(cfg),
        "val_accuracy": scores["accuracy"],
        "macro_f1": scores["macro_f1"],
        "metrics": scores,
        "history": history,
        "novelty": novelty.to_meta(),
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
