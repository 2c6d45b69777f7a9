"""Evaluation: class probabilities in batches and scikit-learn metrics for one or more models.

Knows about models only as callables on preprocessed image arrays; nothing about training.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

Progress = Callable[[int, int], None]


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


def compare(results: dict[str, dict]) -> list[dict]:
    """One row per model for a side-by-side table, best accuracy first."""
    rows = [{"model": name, "accuracy": r.get("accuracy", r.get("val_accuracy")),
             "macro_f1": r.get("macro_f1"), "train_seconds": r.get("train_seconds"),
             "params": r.get("params"), "weights": r.get("weights")} for name, r in results.items()]
    return sorted(rows, key=lambda row: -(row["accuracy"] or 0))
