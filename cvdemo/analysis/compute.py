"""The numbers of an analysis: metrics, calibration, centroid distances, t-SNE, the leakage check
and latency of every model on the evaluation images.

Computes arrays only, seeded; pictures come from ``figures``, files from ``cache``.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .. import config
from .result import ANALYSIS_VERSION, AnalysisResult, ModelResult
from .selection import select_data

TSNE_MAX_POINTS = 1500            # t-SNE beyond this many images is slow on 2 cores; seeded subsample
# Per-pixel RMS difference of preprocessed images that counts as "the same picture": a JPEG
# re-save lands well below it, distinct digits of one class well above (docs/decisions.md).
DUPLICATE_RMS = 0.02
CALIBRATION_BINS = 10

Progress = Callable[[float, str], None]   # (fraction done in [0, 1], what is happening)


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
    return duplicates_and_closest(train_images, eval_images, max_rms)[0]


def duplicates_and_closest(train_images: np.ndarray, eval_images: np.ndarray,
                           max_rms: float = DUPLICATE_RMS) -> tuple[list[tuple[int, int, float]], float | None]:
    """``near_duplicates`` and the RMS difference of the closest pair of all (None without images)."""
    if len(train_images) == 0 or len(eval_images) == 0:
        return [], None
    nearest, rms = nearest_training_image(train_images, eval_images)
    found = [(int(i), int(nearest[i]), float(rms[i])) for i in np.flatnonzero(rms <= max_rms)]
    return sorted(found, key=lambda t: t[2]), float(rms.min())


def measure_latency(model, input_shape, repeats: int = 7) -> float:
    """Median milliseconds of one single-image call, the way the app serves (``litert.fast_inference``)."""
    from ..litert import fast_inference

    served = fast_inference(model, tuple(input_shape))
    served.ready.wait()                 # a conversion in the background: time what serves after it
    infer = served.infer
    x = np.random.default_rng(0).random((1, *input_shape), dtype=np.float32)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        infer(x)
        times.append((time.perf_counter() - started) * 1000)
    return float(np.median(times))


def batched(fn, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """``evaluate.predict_proba`` (any model's outputs, in batches, inference mode), quietly."""
    import warnings

    from ..evaluate import predict_proba

    with warnings.catch_warnings():   # Keras warns that a bare tensor is not the dict {'image': ...}
        warnings.simplefilter("ignore", UserWarning)
        return predict_proba(fn, images, batch_size)


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
    from ..data import DatasetError

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
    arrays = _preprocess(checkpoints, data, say)
    reference = arrays[(first.profile, tuple(first.input_shape))]
    labels = reference.labels
    paths = [str(p) for p in reference.paths]
    if any(len(a.labels) != len(labels) for a in arrays.values()):
        raise DatasetError("The models' input profiles disagree on which images are readable.")
    duplicates, closest_rms = _leakage(data, first.profile, reference, say)
    rng = np.random.default_rng(seed)
    tsne_index = np.arange(len(labels))
    if len(tsne_index) > TSNE_MAX_POINTS:
        tsne_index = np.sort(rng.choice(tsne_index, TSNE_MAX_POINTS, replace=False))
    results = {}
    for m, (name, ckpt) in enumerate(checkpoints.items()):
        base, step = 0.3 + 0.7 * m / len(checkpoints), 0.7 / len(checkpoints)
        images = arrays[(ckpt.profile, tuple(ckpt.input_shape))].images
        results[name] = _analyse_model(name, ckpt, images, labels, tsne_index, seed,
                                       lambda f, message, base=base, step=step: say(base + f * step, message))
    fingerprints = {r.info["data_fingerprint"] for r in results.values()}
    summary = {"description": data.description, "root": str(data.root), "class_names": class_names,
               "counts": data.counts(), "train_counts": data.train_counts, "external": data.external,
               "paths": paths, "skipped": [list(s) for s in reference.skipped],
               "n_train_checked": len(data.train_paths) if closest_rms is not None else 0,
               "closest_train_rms": closest_rms, "duplicate_rms": DUPLICATE_RMS,
               "same_training_data": len(fingerprints) <= 1}
    say(1.0, "analysis done")
    return AnalysisResult(key, summary, labels, tsne_index, duplicates, results, eval_images=reference.images)


def _preprocess(checkpoints: dict, data, say: Progress) -> dict:
    """The evaluation images once per input kind (the one preprocessing path): {(profile, shape): Arrays}."""
    from ..data import Dataset, load_arrays

    first = next(iter(checkpoints.values()))
    dataset = Dataset(data.root, first.class_names, data.paths, data.labels, list(data.skipped))
    kinds = sorted({(c.profile, tuple(c.input_shape)) for c in checkpoints.values()})
    arrays = {}
    for k, (profile, shape) in enumerate(kinds):
        arrays[(profile, shape)] = load_arrays(dataset, profile, progress=lambda d, n, k=k, profile=profile: say(
            0.25 * (k + d / max(1, n)) / len(kinds), f"preprocessing {n} images ({profile})"))
    return arrays


def _leakage(data, profile: str, reference, say: Progress) -> tuple[list[dict], float | None]:
    """Evaluated images that are (almost) copies of training images, and the closest pair's RMS."""
    from ..data import Dataset, DatasetError, load_arrays

    if not data.train_paths:
        return [], None
    class_names = data.class_names
    say(0.27, f"checking {len(reference.labels)} images against {len(data.train_paths)} training images "
              "for duplicates")
    train_labels = [class_names.index(Path(p).relative_to(data.train_root).parts[0]) for p in data.train_paths]
    train_set = Dataset(data.train_root, class_names, data.train_paths, np.asarray(train_labels, np.int64))
    try:
        train_arrays = load_arrays(train_set, profile)
    except DatasetError:
        return [], None        # training folder unreadable now: no leakage check, said in the report
    found, closest = duplicates_and_closest(train_arrays.images, reference.images)
    return [{"path": str(reference.paths[i]), "train_path": str(train_arrays.paths[j]), "rms": rms,
             "label": class_names[int(reference.labels[i])],
             "train_label": class_names[int(train_arrays.labels[j])]} for i, j, rms in found], closest


def _analyse_model(name: str, ckpt, images: np.ndarray, labels: np.ndarray, tsne_index: np.ndarray, seed: int,
                   say: Progress) -> ModelResult:
    """Everything measured for one model: metrics, calibration, centroid distances, t-SNE, latency."""
    import keras

    from ..evaluate import metrics
    from ..models import embedding_model

    class_names = ckpt.class_names
    say(0.0, f"{name}: predicting {len(images)} images")
    keras.utils.set_random_seed(seed)
    probabilities = batched(ckpt.model, images)
    features = batched(embedding_model(ckpt.model), images)
    scores = metrics(labels, probabilities.argmax(axis=1), class_names)
    scores["confusion_normalised"] = confusion_normalised(np.asarray(scores["confusion_matrix"])).tolist()
    ece, bins = calibration(probabilities, labels)
    distances = centroid_distances(features, class_centroids(features, labels, len(class_names)))
    say(0.3, f"{name}: t-SNE 2D of {len(tsne_index)} feature vectors")
    tsne2d = embed_tsne(features[tsne_index], 2, seed)
    say(0.6, f"{name}: t-SNE 3D")
    tsne3d = embed_tsne(features[tsne_index], 3, seed)
    say(0.9, f"{name}: timing single-image inference")
    latency = measure_latency(ckpt.model, tuple(ckpt.input_shape))
    meta = ckpt.meta
    info = {"params": meta.get("params", int(ckpt.model.count_params())),
            "train_seconds": meta.get("train_seconds"), "weights_label": meta.get("weights_label"),
            "history": meta.get("history", {}), "head_epochs": meta.get("head_epochs"),
            "model_sha256": meta.get("model_sha256"), "backbone": meta.get("backbone"),
            "data_fingerprint": meta.get("data", {}).get("fingerprint")}
    return ModelResult(name, scores, probabilities, features, distances, tsne2d, tsne3d, ece, bins, latency, info)
