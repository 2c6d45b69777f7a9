"""Analysis of trained classifiers on labelled images: metrics, calibration, t-SNE, centroid
distances of misclassified images, near-duplicate (leakage) check and latency.

Computes numbers and arrays only, seeded and cached on disk by checkpoint hash and data
fingerprint; figures and files for people are made by :mod:`cvdemo.report`. Never imports Gradio.
"""
from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import config

ANALYSIS_VERSION = 1
TSNE_MAX_POINTS = 1500            # t-SNE beyond this many images is slow on 2 cores; seeded subsample
# Per-pixel RMS difference of preprocessed images that counts as "the same picture": a JPEG
# re-save of one sample digit lands at ~0.002 (median), while distinct MNIST "1"s come as close as ~0.035.
DUPLICATE_RMS = 0.02
CALIBRATION_BINS = 10

Progress = Callable[[float, str], None]   # (fraction done in [0, 1], what is happening)


# ----------------------------------------------------------------------------- pure computations

def confusion_normalised(confusion: np.ndarray) -> np.ndarray:
    """Row-normalised confusion matrix (each true class sums to 1; empty rows stay 0)."""
    counts = np.asarray(confusion, dtype=np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def calibration(probabilities: np.ndarray, labels: np.ndarray,
                n_bins: int = CALIBRATION_BINS) -> tuple[float, list[dict]]:
    """Expected calibration error and the reliability-diagram bins.

    Top-1 confidence is binned into ``n_bins`` equal-width bins over [0, 1]; ECE is the
    support-weighted mean |accuracy - confidence| over the bins (Guo et al. 2017).

    Returns:
        (ece, bins) where each bin is {"low", "high", "count", "confidence", "accuracy"}
        (confidence/accuracy are None for an empty bin).
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # right-closed bins so a confidence of exactly 1.0 lands in the last one
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    bins, ece, n = [], 0.0, max(1, len(labels))
    for b in range(n_bins):
        mask = which == b
        count = int(mask.sum())
        conf = float(confidence[mask].mean()) if count else None
        acc = float(correct[mask].mean()) if count else None
        if count:
            ece += count / n * abs(acc - conf)
        bins.append({"low": float(edges[b]), "high": float(edges[b + 1]), "count": count,
                     "confidence": conf, "accuracy": acc})
    return float(ece), bins


def class_centroids(features: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, D) mean feature vector of each class; a class without images gets a NaN row."""
    features = np.asarray(features, dtype=np.float64)
    out = np.full((n_classes, features.shape[1]), np.nan)
    for c in range(n_classes):
        members = features[labels == c]
        if len(members):
            out[c] = members.mean(axis=0)
    return out


def centroid_distances(features: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """(N, C) Euclidean distance of every feature vector to every class centroid (NaN if absent)."""
    from sklearn.metrics import pairwise_distances

    features = np.asarray(features, dtype=np.float64)
    present = ~np.isnan(centroids).any(axis=1)
    out = np.full((len(features), len(centroids)), np.nan)
    if present.any() and len(features):
        out[:, present] = pairwise_distances(features, centroids[present], metric="euclidean")
    return out


def embed_tsne(features: np.ndarray, dims: int, seed: int = config.SEED) -> np.ndarray:
    """Seeded t-SNE of (N, D) features to (N, dims); perplexity adapted to small N."""
    from sklearn.manifold import TSNE

    features = np.asarray(features, dtype=np.float64)
    n = len(features)
    if n < 3:   # t-SNE needs perplexity < n; place so few points on a line instead
        out = np.zeros((n, dims))
        out[:, 0] = np.arange(n)
        return out
    perplexity = float(min(30.0, max(1.0, (n - 1) / 3)))
    tsne = TSNE(n_components=dims, perplexity=perplexity, init="pca", learning_rate="auto",
                random_state=seed, max_iter=1000)
    return tsne.fit_transform(features).astype(np.float32)


def nearest_training_image(train_images: np.ndarray, eval_images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each evaluation image: the index of its nearest training image and their RMS pixel distance."""
    from sklearn.neighbors import NearestNeighbors

    train_flat = np.asarray(train_images, np.float32).reshape(len(train_images), -1)
    eval_flat = np.asarray(eval_images, np.float32).reshape(len(eval_images), -1)
    distance, nearest = NearestNeighbors(n_neighbors=1).fit(train_flat).kneighbors(eval_flat)
    return nearest[:, 0], distance[:, 0] / np.sqrt(train_flat.shape[1])


def near_duplicates(train_images: np.ndarray, eval_images: np.ndarray,
                    max_rms: float = DUPLICATE_RMS) -> list[tuple[int, int, float]]:
    """Evaluation images whose nearest training image is (almost) the same picture (leakage).

    Compares preprocessed images pixel by pixel (nearest neighbour, Euclidean) and reports the
    pairs whose root-mean-square pixel difference is at most ``max_rms``.

    Returns:
        (eval index, train index, rms distance) triples, closest first.
    """
    if len(train_images) == 0 or len(eval_images) == 0:
        return []
    nearest, rms = nearest_training_image(train_images, eval_images)
    found = [(int(i), int(nearest[i]), float(rms[i])) for i in np.flatnonzero(rms <= max_rms)]
    return sorted(found, key=lambda t: t[2])


def measure_latency(model, input_shape, repeats: int = 7) -> float:
    """Median milliseconds of one single-image call, the way the app serves (compiled, warmed)."""
    import tensorflow as tf

    fn = tf.function(lambda x: model(x, training=False),
                     input_signature=[tf.TensorSpec((None, *input_shape), tf.float32)])
    x = np.random.default_rng(0).random((1, *input_shape), dtype=np.float32)
    fn(x)   # trace once, outside the timing
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        np.asarray(fn(x))
        times.append((time.perf_counter() - started) * 1000)
    return float(np.median(times))


def batched(fn, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """``evaluate.predict_proba`` (any model's outputs, in batches, inference mode), quietly."""
    import warnings

    from .evaluate import predict_proba

    with warnings.catch_warnings():   # Keras warns that a bare tensor is not the dict {'image': ...}
        warnings.simplefilter("ignore", UserWarning)
        return predict_proba(fn, images, batch_size)


# ----------------------------------------------------------------------------- which images

@dataclass
class EvalData:
    """The labelled images the models are analysed on (plus, when known, the training images)."""

    description: str
    root: Path
    class_names: list[str]
    paths: list[Path]
    labels: np.ndarray                        # (N,) int64
    fingerprint: str
    train_counts: dict[str, int] | None
    train_paths: list[Path] = field(default_factory=list)
    train_root: Path | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    external: bool = False

    def counts(self) -> dict[str, int]:
        found = np.bincount(self.labels, minlength=len(self.class_names))
        return {name: int(found[i]) for i, name in enumerate(self.class_names)}


def training_root(meta: dict) -> Path | None:
    """The folder a checkpoint was trained on, here; the sample dataset is rebuilt if needed."""
    from .data import ensure_sample_dataset

    root = Path(meta.get("data", {}).get("root", ""))
    if root.name == config.SAMPLE_DATA_DIR.name and (
            not root.is_dir() or root.resolve() == config.SAMPLE_DATA_DIR.resolve()):
        return ensure_sample_dataset(config.SAMPLE_DATA_DIR)
    return root if str(root) and root.is_dir() else None


def _training_files(meta: dict, root: Path) -> tuple[list[Path], list[int], list[Path]]:
    """(val paths, val labels, train paths) of the checkpoint's split, rebuilt from its metadata."""
    from .data import DatasetError, scan_folder

    dataset = scan_folder(root)
    if list(dataset.class_names) != list(meta["class_names"]):
        raise DatasetError(f"{root} now has classes {dataset.class_names}, but the model was trained "
                           f"on {meta['class_names']}.")
    limit = (meta.get("train_config") or {}).get("max_images_per_class")
    paths = dataset.paths
    if limit:
        keep = set(np.concatenate([np.flatnonzero(dataset.labels == c)[:limit]
                                   for c in range(len(dataset.class_names))]).tolist())
        paths = [p for i, p in enumerate(paths) if i in keep]
    val_names = set(meta["data"].get("val_files", []))
    by_name = {str(p.relative_to(root)): p for p in paths}
    missing = sorted(val_names - set(by_name))
    if missing:
        raise DatasetError(f"{len(missing)} validation file(s) of the model are gone from {root} "
                           f"(e.g. {missing[0]}); pass --data DIR to analyse another folder.")
    label_of = {p: dataset.class_names.index(Path(name).parts[0]) for name, p in by_name.items()}
    val = [by_name[n] for n in sorted(val_names)]
    train = [p for n, p in sorted(by_name.items()) if n not in val_names]
    return val, [label_of[p] for p in val], train


def select_data(meta: dict, data_dir: Path | None = None) -> EvalData:
    """The checkpoint's own validation split, or every image of an external labelled folder."""
    from .data import DatasetError, fingerprint, scan_folder

    class_names = list(meta["class_names"])
    train_counts = {c: int(v["train"]) for c, v in meta.get("data", {}).get("counts", {}).items()} or None
    root = training_root(meta)
    if data_dir is not None:
        dataset = scan_folder(Path(data_dir))
        if list(dataset.class_names) != class_names:
            raise DatasetError(f"The models were trained on classes {class_names}, but {Path(data_dir).name} "
                               f"has {dataset.class_names}.")
        train_paths = []
        if root is not None:
            try:
                train_paths = _training_files(meta, root)[2]
            except DatasetError:
                train_paths = []
        return EvalData(f"every image of {Path(data_dir)}", Path(data_dir), class_names, list(dataset.paths),
                        dataset.labels, fingerprint(dataset.paths, dataset.root), train_counts, train_paths,
                        root, list(dataset.skipped), external=True)
    if root is None:
        raise DatasetError(f"The training data of this model ({meta.get('data', {}).get('root')}) is not on "
                           "this machine; pass --data DIR to analyse a labelled folder instead.")
    val, labels, train = _training_files(meta, root)
    digest = hashlib.sha256(json.dumps([meta["data"].get("fingerprint"), sorted(meta["data"]["val_files"])])
                            .encode()).hexdigest()[:16]
    return EvalData(f"validation split of {root.name} ({len(val)} images)", root, class_names, val,
                    np.asarray(labels, np.int64), digest, train_counts, train, root)


# ----------------------------------------------------------------------------- the analysis

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


def cache_key(metas: dict[str, dict], data_fingerprint: str) -> str:
    """Names one analysis: the exact model files, the exact images and this code's version."""
    parts = [ANALYSIS_VERSION, config.SEED, data_fingerprint,
             sorted((name, meta.get("model_sha256")) for name, meta in metas.items())]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:20]


def analyze(checkpoints: dict, data_dir: Path | None = None, progress: Progress | None = None,
            seed: int = config.SEED) -> AnalysisResult:
    """Run every model of ``checkpoints`` ({name: Checkpoint}) on the evaluation images.

    The images are the first model's validation split (its metadata names the files) or, with
    ``data_dir``, every image of that labelled folder. Seeded: the same inputs give the same
    numbers (latency aside).
    """
    import keras

    from .data import DatasetError, Dataset, load_arrays
    from .evaluate import metrics
    from .models import embedding_model

    say = progress or (lambda fraction, message: None)
    if not checkpoints:
        raise DatasetError("There are no models to analyse.")
    first = next(iter(checkpoints.values()))
    class_names = first.class_names
    for name, ckpt in checkpoints.items():
        if ckpt.class_names != class_names:
            raise DatasetError(f"{name} has classes {ckpt.class_names}, {first.name} has {class_names}; "
                               "models can only be compared on the same classes.")
    say(0.0, "finding the evaluation images")
    data = select_data(first.meta, data_dir)
    key = cache_key({n: c.meta for n, c in checkpoints.items()}, data.fingerprint)

    # preprocess once per input kind (the one preprocessing path)
    arrays = {}
    dataset = Dataset(data.root, class_names, data.paths, data.labels, list(data.skipped))
    kinds = {(c.profile, tuple(c.input_shape)) for c in checkpoints.values()}
    for k, (profile, shape) in enumerate(sorted(kinds)):
        arrays[(profile, shape)] = load_arrays(dataset, profile, progress=lambda d, n: say(
            0.25 * (k + d / max(1, n)) / len(kinds), f"preprocessing {n} images ({profile})"))
    reference = arrays[(first.profile, tuple(first.input_shape))]
    labels = reference.labels
    paths = [str(p) for p in reference.paths]
    if any(len(a.labels) != len(labels) for a in arrays.values()):
        raise DatasetError("The models' input profiles disagree on which images are readable.")

    duplicates, closest_rms = [], None
    if data.train_paths:
        say(0.27, f"checking {len(labels)} images against {len(data.train_paths)} training images for duplicates")
        train_labels = [class_names.index(Path(p).relative_to(data.train_root).parts[0])
                        for p in data.train_paths]
        train_set = Dataset(data.train_root, class_names, data.train_paths, np.asarray(train_labels, np.int64))
        try:
            train_arrays = load_arrays(train_set, first.profile)
            nearest, rms_all = nearest_training_image(train_arrays.images, reference.images)
            closest_rms = float(rms_all.min())
            for i in np.argsort(rms_all, kind="stable")[:int((rms_all <= DUPLICATE_RMS).sum())]:
                j, rms = int(nearest[i]), float(rms_all[i])
                duplicates.append({"path": paths[i], "train_path": str(train_arrays.paths[j]), "rms": rms,
                                   "label": class_names[int(labels[i])],
                                   "train_label": class_names[int(train_arrays.labels[j])]})
        except DatasetError:
            pass   # training folder unreadable now: no leakage check, said in the report

    rng = np.random.default_rng(seed)
    tsne_index = np.arange(len(labels))
    if len(tsne_index) > TSNE_MAX_POINTS:
        tsne_index = np.sort(rng.choice(tsne_index, TSNE_MAX_POINTS, replace=False))

    results = {}
    n_models = len(checkpoints)
    for m, (name, ckpt) in enumerate(checkpoints.items()):
        base = 0.3 + 0.7 * m / n_models
        step = 0.7 / n_models
        images = arrays[(ckpt.profile, tuple(ckpt.input_shape))].images
        say(base, f"{name}: predicting {len(images)} images")
        keras.utils.set_random_seed(seed)
        probabilities = batched(ckpt.model, images)
        features = batched(embedding_model(ckpt.model), images)
        scores = metrics(labels, probabilities.argmax(axis=1), class_names)
        scores["confusion_normalised"] = confusion_normalised(np.asarray(scores["confusion_matrix"])).tolist()
        ece, bins = calibration(probabilities, labels)
        distances = centroid_distances(features, class_centroids(features, labels, len(class_names)))
        say(base + 0.3 * step, f"{name}: t-SNE 2D of {len(tsne_index)} feature vectors")
        tsne2d = embed_tsne(features[tsne_index], 2, seed)
        say(base + 0.6 * step, f"{name}: t-SNE 3D")
        tsne3d = embed_tsne(features[tsne_index], 3, seed)
        say(base + 0.9 * step, f"{name}: timing single-image inference")
        latency = measure_latency(ckpt.model, tuple(ckpt.input_shape))
        meta = ckpt.meta
        info = {"params": meta.get("params", int(ckpt.model.count_params())),
                "train_seconds": meta.get("train_seconds"), "weights_label": meta.get("weights_label"),
                "history": meta.get("history", {}), "head_epochs": meta.get("head_epochs"),
                "model_sha256": meta.get("model_sha256"), "backbone": meta.get("backbone"),
                "data_fingerprint": meta.get("data", {}).get("fingerprint")}
        results[name] = ModelResult(name, scores, probabilities, features, distances, tsne2d, tsne3d,
                                    ece, bins, latency, info)
    fingerprints = {r.info["data_fingerprint"] for r in results.values()}
    summary = {"description": data.description, "root": str(data.root), "class_names": class_names,
               "counts": data.counts(), "train_counts": data.train_counts, "external": data.external,
               "paths": paths, "skipped": [list(s) for s in reference.skipped],
               "n_train_checked": len(data.train_paths) if closest_rms is not None else 0,
               "closest_train_rms": closest_rms, "duplicate_rms": DUPLICATE_RMS,
               "same_training_data": len(fingerprints) <= 1}
    say(1.0, "analysis done")
    return AnalysisResult(key, summary, labels, tsne_index, duplicates, results, eval_images=reference.images)


# ----------------------------------------------------------------------------- cache

_ARRAYS = ("probabilities", "features", "distances", "tsne2d", "tsne3d")


def save_result(result: AnalysisResult, folder: Path) -> None:
    """Write ``analysis.json`` + ``arrays.npz`` into ``folder`` (each file atomically)."""
    from .checkpoints import atomic_write_bytes

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
