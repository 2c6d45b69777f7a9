"""Teaching: a model set learns a visitor's examples, starting from its current weights.

Each model replays its own training split (rebuilt from its metadata) with the examples
oversampled and augmented as in training; a class the models do not know widens their output
layer, the old classes' weights kept. The from-scratch models (``scratch``, ``lenet``) train end to
end at a low rate; the fine-tuned model trains its backbone's last block and its head on the cached
activations of the frozen layers below (``BackboneSpec.teach_from``). Before and after, every model is scored on the old
validation split, on the examples and on the examples held out of teaching. Knows nothing about
sessions or the UI.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from .. import config
from ..config import TeachConfig, TrainConfig
from ..data import Arrays, DatasetError
from ..images import ImageError, preprocess
from .examples import ExampleError, class_name, example_files
from .frozen import Remembered, lower_of, teach_from

OnEvent = Callable[[dict], None]
END_TO_END = ("scratch", "lenet")


@dataclass
class Examples:
    """The examples as model inputs, in the taught class order; ``held`` marks those kept aside."""

    images: np.ndarray
    labels: np.ndarray
    paths: list[Path]
    held: np.ndarray
    new_classes: list[str]
    counts: dict[str, int]
    skipped: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Taught:
    """One taught model: the inference model, its checkpoint metadata, and before/after scores."""

    name: str
    model: object
    meta: dict
    before: dict
    after: dict
    seconds: float
    stopped: bool = False


def check_examples(counts: dict[str, int], known: list[str], cfg: TeachConfig = TeachConfig()) -> None:
    """Refuse what cannot be taught, with the visitor's message: no examples, or a new class
    with fewer than ``cfg.min_new_class`` examples."""
    if not counts:
        raise ExampleError("Add some examples first: correct an answer under Classify, or upload a zip of examples.")
    short = {name: cfg.min_new_class - n for name, n in counts.items() if name not in known and n < cfg.min_new_class}
    if short:
        said = "; ".join(f"'{config.class_display_name(name)}' has {counts[name]}, add {missing} more"
                         for name, missing in sorted(short.items()))
        raise ExampleError(f"A new class needs at least {cfg.min_new_class} examples: {said}.")


def load_examples(folder: Path, known: list[str], profile: str, cfg: TeachConfig = TeachConfig()) -> Examples:
    """Preprocess a folder of class subfolders (the one path) into examples of the known classes
    and new ones (appended in name order). Unreadable files are skipped and listed."""
    files = [(path, class_name(label, known, cfg.max_class_chars)) for path, label in example_files(folder)]
    counts: dict[str, int] = {}
    images, labels, paths, skipped = [], [], [], []
    new = sorted({label for _, label in files if label not in known})
    classes = [*known, *new]
    for path, label in files:
        try:
            images.append(preprocess(path, profile))
        except ImageError as err:
            skipped.append((f"{label}/{path.name}", str(err)))
            continue
        labels.append(classes.index(label))
        paths.append(path)
        counts[label] = counts.get(label, 0) + 1
    check_examples(counts, known, cfg)
    labels = np.asarray(labels, np.int64)
    held = np.zeros(len(labels), bool)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) >= cfg.holdout_from:
            held[members[cfg.holdout_every - 1::cfg.holdout_every]] = True
    return Examples(np.stack(images).astype(np.float32), labels, paths, held, new, counts, skipped)


@lru_cache(maxsize=2)
def _replay(root: str, val_fraction: float, seed: int, profile: str, changed: float):
    from ..train import prepare

    return prepare(Path(root), TrainConfig(val_fraction=val_fraction, seed=seed, profile=profile))


def replay_split(meta: dict):
    """The training split a checkpoint was trained on, rebuilt from its metadata (cached per
    folder). Raises DatasetError when its data is not on this machine."""
    root = Path(meta["data"]["root"])
    root = root if root.is_absolute() else config.ROOT / root
    if root.resolve() == Path(config.SAMPLE_DATA_DIR).resolve():
        from ..data import ensure_sample_dataset

        ensure_sample_dataset(root)          # a fresh checkout ships the models, not their data
    if not root.is_dir():
        raise DatasetError(f"The models' training data ({meta['data']['root']}) is not on this machine; teaching "
                           "replays it so that the classes they know are kept.")
    split = meta.get("split", {})
    prepared = _replay(str(root), split.get("val_fraction", 0.2), split.get("seed", config.SEED),
                       meta.get("profile", "digits"), root.stat().st_mtime)
    if meta["data"].get("fingerprint") not in (None, prepared.fingerprint):
        raise DatasetError(f"The images in {meta['data']['root']} are not the ones these models were trained on.")
    return prepared


def combined(prepared, examples: Examples, classes: list[str]):
    """The replayed split with the examples added: taught ones to training, held-out ones to validation."""
    from ..train import Prepared

    base = prepared.arrays
    offset = len(base.labels)
    arrays = Arrays(np.concatenate([base.images, examples.images]), np.concatenate([base.labels, examples.labels]),
                    [*base.paths, *examples.paths], classes, base.profile, list(base.skipped))
    taught, held = np.flatnonzero(~examples.held) + offset, np.flatnonzero(examples.held) + offset
    return Prepared(arrays, np.concatenate([prepared.train_idx, taught]), np.concatenate([prepared.val_idx, held]),
                    prepared.fingerprint, prepared.root)


def widen(model, n_classes: int, seed: int = config.SEED):
    """``model`` with an output layer of ``n_classes``: the old classes' weights kept, the new
    ones starting small, so that before any step the old classes answer exactly as before
    (the new ones are never the argmax of an image the model was sure of)."""
    import keras

    old = model.get_layer("probabilities")
    kernel, bias = old.get_weights()
    extra = n_classes - kernel.shape[1]
    if extra <= 0:
        return model
    rng = np.random.default_rng(seed)
    layer = keras.layers.Dense(n_classes, activation="softmax", name="probabilities")
    wider = keras.Model(model.input, layer(old.input), name=model.name)
    layer.set_weights([np.concatenate([kernel, 0.01 * rng.standard_normal((kernel.shape[0], extra))], 1).astype(np.float32),
                       np.concatenate([bias, np.full(extra, bias.min() - 4.0)]).astype(np.float32)])
    return wider


def scores(model, prepared, examples: Examples, base_val: np.ndarray | None) -> dict:
    """Accuracy on the old validation split (``base_val``; None: not scored), on the taught examples and on the held-out ones."""
    from ..evaluate import predict_proba

    def accuracy(images, labels):
        if not len(labels):
            return None
        return float((predict_proba(model, images).argmax(1) == labels).mean())

    taught = ~examples.held
    return {"val_accuracy": None if base_val is None else accuracy(prepared.arrays.images[base_val],
                                                                    prepared.arrays.labels[base_val]),
            "examples_accuracy": accuracy(examples.images[taught], examples.labels[taught]),
            "held_out_accuracy": accuracy(examples.images[examples.held], examples.labels[examples.held]),
            "held_out": int(examples.held.sum())}


def _oversampled(prepared, offset: int, n_old: int, cfg: TeachConfig) -> tuple[np.ndarray, np.ndarray]:
    """The training rows: the replayed split once, each taught class's examples (rows from
    ``offset`` on) repeated so that the class weighs at least ``example_share`` of an old class."""
    x, y = prepared.x_train, prepared.y_train
    from_examples = prepared.train_idx >= offset
    per_class = cfg.example_share * int((~from_examples).sum()) / max(1, n_old)
    parts_x, parts_y = [x], [y]
    for c in np.unique(y[from_examples]):
        rows = np.flatnonzero(from_examples & (y == c))
        repeat = max(0, math.ceil(per_class / len(rows)) - 1)
        parts_x += [x[rows]] * repeat
        parts_y += [y[rows]] * repeat
    return np.concatenate(parts_x), np.concatenate(parts_y)


def _end_to_end(model, name: str, x, y, prepared, cfg: TeachConfig, watch) -> dict:
    """Every layer trains, augmented, at a low rate (BatchNorm statistics follow the new mix)."""
    from ..fitting import compile_model, in_order, shuffled_batches, with_augmentation

    batches, steps = shuffled_batches(x, y, TrainConfig.batch_size, cfg.seed)
    trainer = with_augmentation(model, prepared.arrays.profile, cfg.seed)
    compile_model(trainer, cfg.learning_rate, steps * cfg.epochs, sample=(x, y))
    return trainer.fit(batches, steps_per_epoch=steps, shuffle=False, epochs=cfg.epochs, verbose=0,
                       validation_data=in_order(prepared.x_val, prepared.y_val, batch_size=TrainConfig.batch_size),
                       callbacks=watch("teach", steps)).history


class Fast:
    """A taught model's probabilities (called like a model) and ``embed`` from traced functions:
    the end-to-end ones whole, the fine-tuned one as its remembered lower layers (``lower``, up
    to ``at``) and then the rest."""

    def __init__(self, model, lower: Callable[[np.ndarray], np.ndarray] | None = None, at: str | None = None):
        from ..models import batched, compiled_inference, finetuned_tail, with_embedding

        if lower is None:
            self._both = compiled_inference(with_embedding(model), tuple(model.input.shape[1:]))
        else:
            tail = finetuned_tail(model, at)
            upper = compiled_inference(tail, tuple(tail.input.shape[1:]))
            self._both = lambda x: upper(lower(x))
        self._proba = batched(lambda x: self._both(x)[0])
        self.embed = batched(lambda x: self._both(x)[1])
        self.output_shape = model.output_shape

    def __call__(self, batch: np.ndarray, training: bool = False) -> np.ndarray:
        return self._proba(batch)


def _top(model, name: str, prepared, offset: int, lower: Remembered,
         at: str, cfg: TeachConfig, watch, emit: OnEvent) -> dict:
    """The lower layers frozen (``lower``, remembering per image: :mod:`.frozen`): their
    activations of the replayed split, of the taught examples and of augmented views of each;
    the layers from ``at`` up fitted on them (``top_passes`` passes per reported epoch). The
    head alone cannot move the features a new digit needs (docs/decisions.md)."""
    from ..data import make_augmenter
    from ..fitting import compile_model, in_order, shuffled_batches
    from ..models import split_finetuned

    _, upper = split_finetuned(model, at)
    from_examples = prepared.train_idx >= offset
    replay_y, example_rows = prepared.y_train[~from_examples], np.flatnonzero(from_examples)
    replayed = prepared.x_train[~from_examples]
    unseen = lower.unseen(replayed)
    if unseen:
        emit({"kind": "phase", "model": name, "phase": "features",
              "message": f"computing the frozen layers' activations once for {unseen} training images"})
    a_replay = lower(replayed)
    x_ex, y_ex = prepared.x_train[example_rows], prepared.y_train[example_rows]
    per_class = cfg.top_example_share * len(replay_y) / max(1, int(replay_y.max()) + 1)
    augment = make_augmenter(prepared.arrays.profile, cfg.seed)
    views, labels = [x_ex], [y_ex]
    for c in np.unique(y_ex):             # augmented views, not copies, make up each class's share
        rows = np.flatnonzero(y_ex == c)
        for _ in range(max(0, math.ceil(per_class / len(rows)) - 1)):
            views.append(np.asarray(augment(x_ex[rows], training=True)))
            labels.append(y_ex[rows])
    found = lower(np.concatenate([*views, prepared.x_val]))
    y_all = np.concatenate([replay_y, *labels])
    a_train = np.concatenate([a_replay, found[:len(y_all) - len(replay_y)]])
    a_val = found[len(y_all) - len(replay_y):]
    batches, steps = shuffled_batches(a_train, y_all, TrainConfig.batch_size, cfg.seed)
    steps *= cfg.top_passes
    compile_model(upper, cfg.top_learning_rate, steps * cfg.epochs, sample=(a_train, y_all))
    return upper.fit(batches, steps_per_epoch=steps, shuffle=False, epochs=cfg.epochs, verbose=0,
                     validation_data=in_order(a_val, prepared.y_val, batch_size=TrainConfig.batch_size),
                     callbacks=watch("top layers", steps)).history


def warm(base: Path) -> None:
    """Do now what the first teaching of the set in ``base`` does before it trains: rebuild each
    model's replayed split and compute the fine-tuned models' frozen activations of it, so that
    a visitor's first teaching takes as long as a later one. Raises what teaching would."""
    from .. import checkpoints as ckpt

    for name in ckpt.list_names(base):
        checkpoint = ckpt.load(base, name)
        replayed = replay_split(checkpoint.meta)
        if checkpoint.meta.get("model", name) not in END_TO_END:
            lower = lower_of(checkpoint.model, teach_from(checkpoint.meta))
            lower(replayed.x_train)
            lower(replayed.x_val)


def teach(base: Path, examples_dir: Path, out: Path | None = None, cfg: TeachConfig = TeachConfig(),
          models: tuple[str, ...] | None = None, on_event: OnEvent | None = None,
          stop: threading.Event | None = None, source: str = "examples folder") -> dict[str, Taught]:
    """Teach the models of the set in ``base`` the examples in ``examples_dir`` (class
    subfolders; new class names allowed); save each finished one to ``out``. ``models``: which
    (default: every classifier of the set). A stopped model is returned unsaved.
    """
    import keras

    from .. import checkpoints as ckpt
    from ..fitting import merge_history, progress_callbacks
    from ..train import _meta

    emit = on_event or (lambda e: None)
    names = [n for n in ckpt.list_names(base) if models is None or n in models]
    if not names:
        raise ckpt.CheckpointError(f"No models to teach in {base}.")
    loaded = {name: ckpt.load(base, name) for name in names}
    first = loaded[names[0]]
    known = first.class_names
    if any(c.class_names != known or c.profile != first.profile for c in loaded.values()):
        raise ckpt.CheckpointError("The models of that set do not share their classes; teach them one by one.")
    found = load_examples(examples_dir, known, first.profile, cfg)
    if found.skipped:
        emit({"kind": "warning", "message": f"Skipped {len(found.skipped)} unreadable example(s): " +
              "; ".join(f"{p} ({why})" for p, why in found.skipped[:10])})
    classes = [*known, *found.new_classes]
    emit({"kind": "data", "stage": "scan", "classes": classes, "counts": found.counts, "profile": first.profile})
    results: dict[str, Taught] = {}
    for name, checkpoint in loaded.items():
        if stop is not None and stop.is_set():
            break
        replayed = replay_split(checkpoint.meta)
        prepared = combined(replayed, found, classes)
        offset, base_val = len(replayed.arrays.labels), replayed.val_idx
        emit({"kind": "data", "stage": "split", "counts": prepared.counts(), "profile": first.profile,
              "n_train": len(prepared.train_idx), "n_val": len(prepared.val_idx)})
        keras.utils.set_random_seed(cfg.seed)
        started = time.perf_counter()
        family = checkpoint.meta.get("model", name)
        fit = _end_to_end if family in END_TO_END else None
        at = None if fit else teach_from(checkpoint.meta)
        lower = None if fit else lower_of(checkpoint.model, at)
        before = scores(Fast(checkpoint.model, lower, at), prepared, found, None)
        before["val_accuracy"] = checkpoint.meta.get("val_accuracy")    # on this very split, when trained
        model = widen(checkpoint.model, len(classes), cfg.seed)
        emit({"kind": "start", "model": name, "epochs": cfg.epochs, "params": model.count_params()})

        def watch(phase: str, steps: int, name=name, started=started):
            return progress_callbacks(name, phase, cfg.epochs, steps, emit, stop, started, None)

        history: dict = {}
        # the novelty bank too: a handful of examples among 2,000 views would leave a taught
        # class's drawings farther than the 10th neighbour, "unlike anything taught"
        x_over, y_over = _oversampled(prepared, offset, len(known), cfg)
        if fit:
            merge_history(history, fit(model, name, x_over, y_over, prepared, cfg, watch))
        else:
            merge_history(history, _top(model, name, prepared, offset, lower, at, cfg, watch, emit))
        seconds = time.perf_counter() - started
        stopped = bool(stop is not None and stop.is_set())
        fast = Fast(model, lower, at)
        after = scores(fast, prepared, found, base_val)
        taught = {"base": str(base), "from": source, "new_classes": found.new_classes, "counts": found.counts,
                  "examples": [prepared.relative(i) for i in range(offset, offset + len(found.labels))],
                  "held_out": [prepared.relative(offset + i) for i in np.flatnonzero(found.held)],
                  "before": before, "after": after, "config": {"epochs": cfg.epochs, "recipe":
                  "end to end" if fit else f"{at} and up, on the frozen layers' activations"},
                  "previous": checkpoint.meta.get("taught")}
        base_meta = checkpoint.meta
        meta = _meta(family, model, prepared, TrainConfig(epochs=cfg.epochs),
                     history, seconds, weights=base_meta.get("weights") if base_meta.get("backbone") else None,
                     backbone=base_meta.get("backbone"),
                     extra={"taught": taught, **{k: base_meta[k] for k in ("finetune",) if k in base_meta}}, fast=fast,
                     novelty_images=x_over)
        result = Taught(name, model, meta, before, after, seconds, stopped)
        if out is not None and not stopped:
            ckpt.save(model, meta, out, name)
        results[name] = result
        emit({"kind": "model_done", "model": name, "stopped": stopped, "val_accuracy": meta["val_accuracy"],
              "macro_f1": meta["macro_f1"], "train_seconds": round(seconds, 2), "params": meta["params"],
              "before": before, "after": after, "checkpoint": str(Path(out) / f"{name}.keras") if out and not stopped else None})
    emit({"kind": "done", "stopped": bool(stop is not None and stop.is_set())})
    return results
