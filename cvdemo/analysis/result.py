"""What an analysis found, as data: per-model results, the views the app and report read
(comparison, per class, misclassified, suspects, metrics.json) and their files on disk.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import config
from ..fsutil import atomic_write_bytes

ANALYSIS_VERSION = 2


@dataclass
class ModelResult:
    """Everything measured for one model on the evaluation images."""

    name: str
    metrics: dict                              # evaluate.metrics + confusion_normalised
    probabilities: np.ndarray                  # (N, C)
    features: np.ndarray                       # (N, D) 'embedding' layer
    distances: np.ndarray                      # (N, C) to each class centroid
    tsne2d: np.ndarray                         # (M, 2) for result.tsne_index
    tsne3d: np.ndarray                         # (M, 3)
    ece: float
    reliability: list[dict]
    latency_ms: float
    info: dict                                 # params, train_seconds, weights, history, head_epochs, sha

    @property
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)


@dataclass
class AnalysisResult:
    key: str
    data: dict                                 # description, root, class_names, counts, paths, skipped
    labels: np.ndarray                         # (N,)
    tsne_index: np.ndarray                     # (M,) positions used for t-SNE
    duplicates: list[dict]
    models: dict[str, ModelResult]
    eval_images: np.ndarray | None = None      # (N, S, S, C) digits-profile inputs, not cached

    @property
    def class_names(self) -> list[str]:
        return list(self.data["class_names"])

    @property
    def paths(self) -> list[str]:
        return list(self.data["paths"])

    def comparison(self) -> list[dict]:
        """One row per model: accuracy, macro F1, ECE, parameters, training time, latency."""
        return [{"model": name, "accuracy": r.metrics["accuracy"], "macro_f1": r.metrics["macro_f1"],
                 "ece": r.ece, "params": r.info.get("params"), "train_seconds": r.info.get("train_seconds"),
                 "latency_ms": r.latency_ms, "weights": r.info.get("weights_label")}
                for name, r in self.models.items()]

    def per_class(self) -> list[dict]:
        """Rows of per-class precision/recall/F1/support for every model."""
        return [{"model": name, "class": cls, **scores}
                for name, r in self.models.items() for cls, scores in r.metrics["per_class"].items()]

    def misclassified(self) -> list[dict]:
        """Images that at least one model gets wrong, with every model's answer and distances.

        ``ratio`` = distance to the true class's centroid / distance to the predicted class's
        centroid, so it compares across models whose feature spaces differ in scale (> 1: the
        image sits closer to the class the model chose). ``suspect`` marks images that, in every
        model's feature space, sit closer to another class's centroid than to their own label's:
        likely mislabelled or genuinely ambiguous.
        """
        names = self.class_names
        wrong = np.zeros(len(self.labels), bool)
        for r in self.models.values():
            wrong |= r.predicted != self.labels
        rows = []
        for i in np.flatnonzero(wrong):
            true = int(self.labels[i])
            per_model, closer_elsewhere = {}, []
            for name, r in self.models.items():
                pred = int(r.predicted[i])
                d = r.distances[i]
                nearest = int(np.nanargmin(d))
                closer_elsewhere.append(nearest != true)
                per_model[name] = {"predicted": names[pred], "confidence": float(r.probabilities[i, pred]),
                                   "correct": pred == true, "d_true": float(d[true]), "d_pred": float(d[pred]),
                                   "ratio": _ratio(d[true], d[pred]),
                                   "nearest_centroid": names[nearest]}
            rows.append({"index": int(i), "path": self.paths[i], "true": names[true], "models": per_model,
                         "suspect": bool(all(closer_elsewhere))})
        # the most confusing first: wrong in most models, then by mean ratio
        return sorted(rows, key=lambda row: (-sum(not m["correct"] for m in row["models"].values()),
                                             -np.mean([m["ratio"] for m in row["models"].values()])))

    def suspects(self) -> list[dict]:
        """Images closer to another class's centroid than to their label's in every model."""
        names = self.class_names
        flags = np.ones(len(self.labels), bool)
        for r in self.models.values():
            flags &= np.nanargmin(r.distances, axis=1) != self.labels
        out = []
        for i in np.flatnonzero(flags):
            true = int(self.labels[i])
            out.append({"index": int(i), "path": self.paths[i], "true": names[true],
                        "nearest": {name: names[int(np.nanargmin(r.distances[i]))] for name, r in self.models.items()},
                        "ratio": {name: _ratio(r.distances[i, true], np.nanmin(r.distances[i]))
                                  for name, r in self.models.items()}})
        return out

    def metrics_document(self) -> dict:
        """The JSON-able summary written as metrics.json and printed by ``report --json``."""
        return {
            "analysis_version": ANALYSIS_VERSION, "key": self.key, "seed": config.SEED,
            "data": {k: v for k, v in self.data.items() if k != "paths"} | {"n_images": int(len(self.labels))},
            "comparison": self.comparison(),
            "models": {name: {**{k: v for k, v in r.metrics.items()}, "ece": r.ece, "reliability": r.reliability,
                              "latency_ms": r.latency_ms,
                              **{k: r.info.get(k) for k in ("params", "train_seconds", "weights_label",
                                                            "model_sha256", "head_epochs")}}
                       for name, r in self.models.items()},
            "duplicates": self.duplicates,
            "misclassified": self.misclassified(),
            "suspects": self.suspects(),
        }


def _ratio(d_true: float, d_other: float) -> float:
    """d_true / d_other, 1.0 when both are 0 (a lone image is its class's centroid)."""
    return float(d_true / d_other) if d_other > 0 else (1.0 if d_true == 0 else float("inf"))


_ARRAYS = ("probabilities", "features", "distances", "tsne2d", "tsne3d")


def save_result(result: AnalysisResult, folder: Path) -> None:
    """Write ``analysis.json`` + ``arrays.npz`` into ``folder`` (each file atomically)."""
    folder = Path(folder)
    arrays = {"labels": result.labels, "tsne_index": result.tsne_index}
    if result.eval_images is not None:
        arrays["eval_images"] = result.eval_images
    for name, r in result.models.items():
        for part in _ARRAYS:
            arrays[f"{name}/{part}"] = getattr(r, part)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(folder / "arrays.npz", buffer.getvalue())
    document = {"key": result.key, "data": result.data, "duplicates": result.duplicates,
                "models": {name: {"metrics": r.metrics, "ece": r.ece, "reliability": r.reliability,
                                  "latency_ms": r.latency_ms, "info": r.info}
                           for name, r in result.models.items()}}
    atomic_write_bytes(folder / "analysis.json", json.dumps(document).encode())


def load_result(folder: Path) -> AnalysisResult:
    """Read what :func:`save_result` wrote. Raises OSError/ValueError/KeyError if incomplete."""
    folder = Path(folder)
    document = json.loads((folder / "analysis.json").read_text())
    with np.load(folder / "arrays.npz") as arrays:
        models = {name: ModelResult(name, m["metrics"], *(arrays[f"{name}/{part}"] for part in _ARRAYS[:3]),
                                    arrays[f"{name}/tsne2d"], arrays[f"{name}/tsne3d"], m["ece"],
                                    m["reliability"], m["latency_ms"], m["info"])
                  for name, m in document["models"].items()}
        return AnalysisResult(document["key"], document["data"], arrays["labels"], arrays["tsne_index"],
                              document["duplicates"], models,
                              arrays["eval_images"] if "eval_images" in arrays.files else None)
