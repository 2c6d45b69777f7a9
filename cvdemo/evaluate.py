"""Evaluation: class probabilities in batches and scikit-learn metrics for one or more models.

Knows about models only as callables on preprocessed image arrays; nothing about training.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

Progress = Callable[[int, int], None]
StageProgress = Callable[[str, int, int], None]     # (what is being done, done, total)


def predict_proba(model, images: np.ndarray, batch_size: int = 256,
                  progress: Progress | None = None) -> np.ndarray:
    """(N, S, S, C) images -> (N, n_classes) probabilities, batched, inference mode."""
    outputs = []
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        outputs.append(np.asarray(model(batch, training=False)))
        if progress:
            progress(min(start + batch_size, len(images)), len(images))
    if not outputs:
        return np.zeros((0, model.output_shape[-1]), np.float32)
    return np.concatenate(outputs).astype(np.float32)


def metrics(labels: np.ndarray, predicted: np.ndarray, class_names: list[str]) -> dict:
    """Accuracy, macro F1, per-class precision/recall/F1/support and the confusion matrix."""
    from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score

    index = list(range(len(class_names)))
    report = classification_report(labels, predicted, labels=index, target_names=class_names,
                                   output_dict=True, zero_division=0)
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "macro_f1": float(f1_score(labels, predicted, labels=index, average="macro", zero_division=0)),
        "per_class": {name: {"precision": float(report[name]["precision"]),
                             "recall": float(report[name]["recall"]),
                             "f1": float(report[name]["f1-score"]),
                             "support": int(report[name]["support"])} for name in class_names},
        "confusion_matrix": confusion_matrix(labels, predicted, labels=index).tolist(),
    }


def evaluate_model(model, images: np.ndarray, labels: np.ndarray, class_names: list[str],
                   progress: Progress | None = None) -> dict:
    """Metrics of one model on labelled images, plus its probabilities for later analysis."""
    proba = predict_proba(model, images, progress=progress)
    result = metrics(labels, proba.argmax(axis=1), class_names)
    result["probabilities"] = proba
    return result


def evaluate_folder(checkpoints: dict, folder: Path, skip_other_classes: bool = False,
                    progress: StageProgress | None = None) -> dict:
    """Every checkpoint on every image of a class-folder dataset, each input profile preprocessed once.

    Returns ``{"n_images", "classes", "models": {name: metrics}, "skipped"?: [{path, reason}]}``.
    A checkpoint trained on other classes raises DatasetError, or is left out with
    ``skip_other_classes``. ``progress(stage, done, total)`` follows preprocessing and evaluation.
    """
    from .data import DatasetError, load_arrays, scan_folder

    dataset = scan_folder(Path(folder))
    document: dict = {"n_images": len(dataset.paths), "classes": dataset.class_names, "models": {}}
    arrays_by_profile: dict = {}
    for name, checkpoint in checkpoints.items():
        if checkpoint.class_names != dataset.class_names:
            if skip_other_classes:
                continue
            raise DatasetError(f"{name} was trained on classes {checkpoint.class_names}, "
                               f"but {folder} has {dataset.class_names}")
        key = (checkpoint.profile, tuple(checkpoint.input_shape))
        if key not in arrays_by_profile:
            stage = f"preprocessing ({checkpoint.profile})"
            arrays_by_profile[key] = load_arrays(
                dataset, checkpoint.profile, (lambda d, t, s=stage: progress(s, d, t)) if progress else None)
        arrays = arrays_by_profile[key]
        stage = f"evaluating {name}"
        scores = evaluate_model(checkpoint.model, arrays.images, arrays.labels, arrays.class_names,
                                (lambda d, t, s=stage: progress(s, d, t)) if progress else None)
        scores.pop("probabilities")
        document["n_images"] = int(len(arrays.labels))
        document["models"][name] = scores
        if arrays.skipped:
            document["skipped"] = [{"path": p, "reason": r} for p, r in arrays.skipped]
    return document
