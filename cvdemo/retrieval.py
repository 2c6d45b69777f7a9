"""Image retrieval: feature extractors by name, an on-disk feature index, exact top-k search.

The index lives beside the images, in ``<database>/.index/``: ``<extractor>.json`` (the manifest:
relative path, size, mtime, sha256 and label of every file, the extractor's name and version)
and the ``.npy`` feature matrix it names. It is updated incrementally (only new or changed
content is extracted) and written atomically: the manifest is replaced last and points at a
features file that is never overwritten, so a crash leaves the previous index whole.
Every input goes through :func:`cvdemo.images.preprocess`. Knows nothing about the UI.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import config
from .checkpoints import atomic_write, sha256_file
from .images import ImageError, preprocess

INDEX_FORMAT = 1
INDEX_DIR = ".index"
METRICS = ("euclidean", "cosine")
FAISS_MIN_VECTORS = 50_000        # "auto" backend: exact numpy below, FAISS HNSW above (if installed)
BATCH = 64

Progress = Callable[[int, int], None]   # (done, total)
Extract = Callable[[np.ndarray], np.ndarray]   # (N, 28, 28, 1) float32 -> (N, D) float32


# ----------------------------------------------------------------------------- extractors

@dataclass(frozen=True)
class ExtractorSpec:
    """A named way to turn preprocessed digits into feature vectors.

    ``version(checkpoints)`` is cheap (a file hash, no model built) so an up-to-date index is
    confirmed without loading Keras; it returns None when only building can tell.
    """

    name: str
    description: str
    build: Callable[[Path], tuple[Extract, str]]     # checkpoints dir -> (extract fn, version)
    version: Callable[[Path], str | None]


def _compiled(model, shape=(config.DIGIT_SIZE, config.DIGIT_SIZE, 1)) -> Extract:
    """A traced, warmed-up inference function (safe from threads; see NOTES §7)."""
    import tensorflow as tf

    fn = tf.function(lambda x: model(x, training=False),
                     input_signature=[tf.TensorSpec((None, *shape), tf.float32)])
    fn(np.zeros((1, *shape), np.float32))

    def extract(batch: np.ndarray) -> np.ndarray:
        out = [fn(np.asarray(batch[i:i + BATCH], np.float32)).numpy() for i in range(0, len(batch), BATCH)]
        return np.concatenate(out).reshape(len(batch), -1).astype(np.float32)
    return extract


def _weights_file(backbone: str, weights: str, checkpoints: Path) -> Path:
    from .models import BACKBONES, digits_weights_path

    if weights in ("digits", "digits_all"):
        return digits_weights_path(backbone, checkpoints, weights)
    return config.KERAS_HOME / "models" / BACKBONES[backbone].imagenet_file


_DIGESTS: dict[tuple, str] = {}     # (path, size, mtime_ns) -> sha256: weights files are hashed once


def _cached_digest(path: Path) -> str | None:
    try:
        st = path.stat()
    except OSError:
        return None
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = sha256_file(path)
    return _DIGESTS[key]


def _backbone_version(backbone: str, weights: str) -> Callable[[Path], str | None]:
    def version(checkpoints: Path) -> str | None:
        digest = _cached_digest(_weights_file(backbone, weights, checkpoints))
        return f"{weights}:{digest[:16]}" if digest else None
    return version


def _backbone_extractor(backbone: str, weights: str) -> Callable[[Path], tuple[Extract, str]]:
    def build(checkpoints: Path) -> tuple[Extract, str]:
        import keras

        from .layers import BackbonePreprocess
        from .models import BACKBONES, build_backbone

        spec = BACKBONES[backbone]
        base = build_backbone(backbone, weights, checkpoints)   # WeightsUnavailable says what to do
        inputs = keras.Input((config.DIGIT_SIZE, config.DIGIT_SIZE, 1), name="image")
        x = keras.layers.Resizing(spec.input_size, spec.input_size, name="resize")(inputs)
        x = BackbonePreprocess(backbone, name="backbone_preprocess")(x)
        model = keras.Model(inputs, base(x, training=False), name=f"{backbone}_{weights}_features")
        return _compiled(model), _backbone_version(backbone, weights)(checkpoints) or weights
    return build


def _checkpoint_version(name: str) -> Callable[[Path], str | None]:
    def version(checkpoints: Path) -> str | None:
        try:
            meta = json.loads((Path(checkpoints) / f"{name}.json").read_text())
            return f"{name}:{meta['model_sha256'][:16]}"
        except (OSError, ValueError, KeyError, TypeError):
            return None
    return version


def _checkpoint_extractor(name: str, layer: str = "embedding",
                          made_by: str | None = None) -> Callable[[Path], tuple[Extract, str]]:
    """Features of a saved model: its 'embedding' layer, or its pooled conv activations.
    ``made_by``: the command that creates the checkpoint, named when it is missing."""
    def build(checkpoints: Path) -> tuple[Extract, str]:
        from . import checkpoints as ckpt
        from .models import embedding_model, pooled_model

        present = any(path.exists() for stem in (name, f"{name}.prev")
                      for path in ckpt.paths_for(Path(checkpoints), stem))
        if made_by and not present:
            raise ckpt.CheckpointError(f"The offline extractor {name}.keras is missing from {checkpoints}. "
                                       f"Create it with: {made_by}")
        checkpoint = ckpt.load(Path(checkpoints), name)
        if checkpoint.profile != "digits":
            raise ckpt.CheckpointError(f"The {name} checkpoint was trained on photos, not digits; "
                                       "it cannot index the digit database.")
        version = f"{name}:{checkpoint.meta.get('model_sha256', '')[:16]}"
        features = pooled_model if layer == "pooled" else embedding_model
        return _compiled(features(checkpoint.model), tuple(checkpoint.input_shape)), version
    return build


def _pixels(checkpoints: Path) -> tuple[Extract, str]:
    return (lambda batch: np.asarray(batch, np.float32).reshape(len(batch), -1)), "pixels"


_PRETRAINED_CNN = "pretrained_scratch_digits_all"     # models.pretrained_cnn_name(); models imports Keras

EXTRACTORS: dict[str, ExtractorSpec] = {spec.name: spec for spec in (
    ExtractorSpec("digits_all_cnn", "the scratch CNN pretrained offline on MNIST digits 0-9 (never the "
                  f"held-out queries), pooled conv activations (checkpoints/{_PRETRAINED_CNN})",
                  _checkpoint_extractor(_PRETRAINED_CNN, "pooled",
                                        "python -m cvdemo pretrain --backbone scratch --weights digits_all"),
                  _checkpoint_version(_PRETRAINED_CNN)),
    ExtractorSpec("digits_mobilenet_v2", "MobileNetV2 pretrained offline on MNIST digits 3-9, pooled features",
                  _backbone_extractor("mobilenet_v2", "digits"), _backbone_version("mobilenet_v2", "digits")),
    ExtractorSpec("digits_all_mobilenet_v2", "MobileNetV2 pretrained offline on MNIST digits 0-9 "
                  "(never the held-out queries), pooled features",
                  _backbone_extractor("mobilenet_v2", "digits_all"), _backbone_version("mobilenet_v2", "digits_all")),
    ExtractorSpec("finetuned", "the fine-tuned classifier's 'embedding' layer (checkpoints/finetuned)",
                  _checkpoint_extractor("finetuned"), _checkpoint_version("finetuned")),
    ExtractorSpec("scratch", "the scratch CNN's 'embedding' layer (checkpoints/scratch)",
                  _checkpoint_extractor("scratch"), _checkpoint_version("scratch")),
    ExtractorSpec("imagenet_mobilenet_v2", "MobileNetV2 with ImageNet weights, pooled features",
                  _backbone_extractor("mobilenet_v2", "imagenet"), _backbone_version("mobilenet_v2", "imagenet")),
    ExtractorSpec("imagenet_vgg16", "VGG16 with ImageNet weights, pooled features",
                  _backbone_extractor("vgg16", "imagenet"), _backbone_version("vgg16", "imagenet")),
    ExtractorSpec("pixels", "the preprocessed 28x28 pixels themselves (a baseline; no model)", _pixels,
                  lambda checkpoints: "pixels"),
)}
# Ranked by measurement against the shipped database, precision@4 overall / worst class, on the
# 200 held-out MNIST queries (python -m cvdemo database --no-database --no-queries --eval-queries
# DIR; python -m cvdemo retrieve --eval DIR --extractor NAME) and on queries from other sources
# (cvdemo.testsets.write_writers / write_fonts with digits=range(10)), checkpoints of 2026-11-26:
#                            held-out MNIST   UCI writers (1797)  typed fonts (840)
#   digits_all_cnn           0.990 / 0.950    0.924 / 0.790       0.918 / 0.783
#   digits_all_mobilenet_v2  0.971 / 0.925    0.854 / 0.588       0.868 / 0.384
#   finetuned (0/1/2 head)   0.931 / 0.850    0.732 / 0.540       0.876 / 0.554
#   digits_mobilenet_v2      0.916 / 0.662    0.724 / 0.341       0.806 / 0.185
#   pixels                   0.812 / 0.600    0.631 / 0.355       0.639 / 0.277
#   scratch (0/1/2 head)     0.647 / 0.475    0.370 / 0.141       0.576 / 0.196
# ImageNet weights cannot be downloaded offline, so imagenet_* could not be ranked here.
# The default is the first whose weights are present.
PREFERENCE = ("digits_all_cnn", "digits_all_mobilenet_v2", "finetuned", "digits_mobilenet_v2", "pixels")
DEFAULT_EXTRACTOR = PREFERENCE[0]


def default_extractor(checkpoints: Path = config.CHECKPOINT_DIR) -> str:
    """The best-ranked extractor whose weights are available in ``checkpoints``."""
    for name in PREFERENCE:
        if EXTRACTORS[name].version(Path(checkpoints)) is not None:
            return name
    return PREFERENCE[-1]


def extractor_key(name: str, version: str) -> str:
    """What an index records: extractor, its weights, and the preprocessing it saw."""
    return f"{name}@{version}@p{config.PREPROCESSING_VERSION}"


@dataclass
class Extractor:
    """A built extractor: ``extract`` maps (N, 28, 28, 1) to (N, D); ``version`` names its weights."""

    name: str
    version: str
    extract: Extract

    @property
    def key(self) -> str:
        return extractor_key(self.name, self.version)


def build_extractor(name: str = DEFAULT_EXTRACTOR, checkpoints: Path = config.CHECKPOINT_DIR) -> Extractor:
    """Build a registered extractor. Raises KeyError for an unknown name, WeightsUnavailable or
    CheckpointError (with what to do) when its weights cannot be had."""
    if name not in EXTRACTORS:
        raise KeyError(f"unknown extractor {name!r}; choose from {', '.join(EXTRACTORS)}")
    extract, version = EXTRACTORS[name].build(Path(checkpoints))
    return Extractor(name, version, extract)


# ----------------------------------------------------------------------------- search

@dataclass(frozen=True)
class Hit:
    rank: int
    path: Path
    label: str | None
    distance: float


def _order(distances: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k smallest distances, ties broken by position (= path order)."""
    n = len(distances)
    k = min(k, n)
    if k <= 0:
        return np.zeros(0, np.int64)
    if k < n:
        # everything that can make the cut, ties at the boundary included, then an exact sort
        kth = np.partition(distances, k - 1)[k - 1]
        candidates = np.flatnonzero(distances <= kth)
    else:
        candidates = np.arange(n)
    order = np.lexsort((candidates, distances[candidates]))
    return candidates[order[:k]]


def pairwise_distances(queries: np.ndarray, features: np.ndarray, metric: str = "euclidean",
                       sq_norms: np.ndarray | None = None) -> np.ndarray:
    """(Q, D) x (N, D) -> (Q, N) Euclidean distances, or cosine distances (1 - cos)."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    q = np.asarray(queries, np.float32)
    x = np.asarray(features, np.float32)
    if metric == "cosine":
        qn = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return np.clip(1.0 - qn @ xn.T, 0.0, 2.0)
    if sq_norms is None:
        sq_norms = np.einsum("nd,nd->n", x, x)
    d2 = np.einsum("qd,qd->q", q, q)[:, None] + sq_norms[None, :] - 2.0 * (q @ x.T)
    return np.sqrt(np.maximum(d2, 0.0))


def _exact(query: np.ndarray, rows: np.ndarray, metric: str) -> np.ndarray:
    """Distances recomputed in float64 from differences (no cancellation near zero)."""
    q = query.astype(np.float64)
    x = rows.astype(np.float64)
    if metric == "cosine":
        q = q / max(float(np.linalg.norm(q)), 1e-12)
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return np.clip(1.0 - x @ q, 0.0, 2.0)
    return np.sqrt(((x - q) ** 2).sum(axis=1))


def top_k(queries: np.ndarray, features: np.ndarray, k: int, metric: str = "euclidean",
          sq_norms: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest rows of ``features`` for each query: (positions, distances), each (Q, min(k, N)).

    A fast float32 pass picks the candidates (with a margin for rounding), which are then ranked
    by float64 distances; ties are broken by row position, so the order is stable. ``k`` larger
    than N gives all N.
    """
    queries = np.atleast_2d(np.asarray(queries, np.float32))
    features = np.asarray(features, np.float32)
    approx = pairwise_distances(queries, features, metric, sq_norms)
    n = approx.shape[1]
    kk = min(max(int(k), 0), n)
    positions = np.zeros((len(queries), kk), np.int64)
    distances = np.zeros((len(queries), kk), np.float32)
    if kk == 0:
        return positions, distances
    scale = 2.0 if metric == "cosine" else float(np.sqrt(approx.max(initial=0.0) ** 2 + 1.0))
    margin = 1e-3 * scale
    for row, (query, d) in enumerate(zip(queries, approx)):
        kth = np.partition(d, kk - 1)[kk - 1] if kk < n else np.inf
        candidates = np.flatnonzero(d <= kth + margin)
        exact = _exact(query, features[candidates], metric)
        order = np.lexsort((candidates, exact))[:kk]
        positions[row] = candidates[order]
        distances[row] = exact[order]
    return positions, distances


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


class FaissSearch:
    """The same search through FAISS (optional ``faiss-cpu``): exact ``flat`` or approximate ``hnsw``.

    Cosine runs as L2 on unit vectors (|a-b|^2 = 2 - 2cos). Results are re-sorted by
    (distance, position) so ties break like the numpy search.
    """

    def __init__(self, features: np.ndarray, metric: str = "euclidean", kind: str = "hnsw"):
        import faiss

        self.metric = metric
        x = np.ascontiguousarray(features, np.float32)
        if metric == "cosine":
            x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        dim = x.shape[1]
        if kind == "flat":
            self.index = faiss.IndexFlatL2(dim)
        else:
            self.index = faiss.IndexHNSWFlat(dim, 32)
            self.index.hnsw.efConstruction = 80
            self.index.hnsw.efSearch = 128
        self.index.add(x)
        self.n = len(x)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(np.atleast_2d(queries), np.float32)
        if self.metric == "cosine":
            q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        kk = min(max(int(k), 0), self.n)
        d2, positions = self.index.search(q, kk)
        d2 = np.maximum(d2, 0.0)
        distances = d2 / 2.0 if self.metric == "cosine" else np.sqrt(d2)
        for row in range(len(q)):
            order = np.lexsort((positions[row], distances[row]))
            positions[row], distances[row] = positions[row][order], distances[row][order]
        return positions.astype(np.int64), distances.astype(np.float32)


# ----------------------------------------------------------------------------- the index

@dataclass(frozen=True)
class Entry:
    path: str            # relative to the database, POSIX separators
    size: int
    mtime_ns: int
    sha256: str

    @property
    def label(self) -> str | None:
        parts = self.path.split("/")
        return parts[0] if len(parts) > 1 else None


class Snapshot:
    """An immutable view of the index: searches hold one, so an update never changes it under them."""

    def __init__(self, database: Path, extractor_key: str, entries: list[Entry], features: np.ndarray,
                 skipped: list[tuple[Entry, str]]):
        self.database = database
        self.extractor_key = extractor_key
        self.entries = entries
        self.features = features          # (N, D) float32, rows in entries' (sorted-path) order
        self.features.setflags(write=False)
        self.sq_norms = np.einsum("nd,nd->n", features, features) if len(features) else np.zeros(0, np.float32)
        self.skipped = skipped
        self._faiss: dict[tuple, FaissSearch] = {}
        self._faiss_lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.entries)

    def search(self, query_features: np.ndarray, k: int = 4, metric: str = "euclidean",
               backend: str = "auto") -> list[list[Hit]]:
        """Top-k hits for each query vector (Q, D). ``backend``: auto | numpy | faiss | faiss-flat."""
        if len(self.entries) == 0:
            return [[] for _ in np.atleast_2d(query_features)]
        if backend == "auto":
            backend = "faiss" if len(self.entries) >= FAISS_MIN_VECTORS and faiss_available() else "numpy"
        if backend == "numpy":
            positions, distances = top_k(query_features, self.features, k, metric, self.sq_norms)
        elif backend in ("faiss", "faiss-flat"):
            kind = "flat" if backend == "faiss-flat" else "hnsw"
            with self._faiss_lock:
                if (metric, kind) not in self._faiss:
                    self._faiss[(metric, kind)] = FaissSearch(self.features, metric, kind)
                searcher = self._faiss[(metric, kind)]
            positions, distances = searcher.search(query_features, k)
        else:
            raise ValueError(f"unknown backend {backend!r}; choose auto, numpy, faiss or faiss-flat")
        return [[Hit(rank + 1, self.database / self.entries[p].path, self.entries[p].label, float(d))
                 for rank, (p, d) in enumerate(zip(row_p, row_d)) if p >= 0]
                for row_p, row_d in zip(positions, distances)]


@dataclass
class UpdateReport:
    """What one ``FeatureIndex.update`` did."""

    extracted: list[str] = field(default_factory=list)      # new or changed content
    reused: int = 0
    removed: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)   # (relative path, reason)
    written: bool = False
    seconds: float = 0.0
    total: int = 0

    def as_dict(self) -> dict:
        return {"total": self.total, "extracted": len(self.extracted), "reused": self.reused,
                "removed": len(self.removed), "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
                "written": self.written, "seconds": round(self.seconds, 3)}


def scan_database(database: Path) -> dict[str, os.stat_result]:
    """Relative POSIX path -> stat of every image file under ``database`` (dot-entries skipped)."""
    found: dict[str, os.stat_result] = {}
    stack = [(Path(database), "")]
    while stack:
        folder, prefix = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            rel = prefix + entry.name
            if entry.is_dir(follow_symlinks=False):
                stack.append((Path(entry.path), rel + "/"))
            elif entry.is_file() and os.path.splitext(entry.name)[1].lower() in config.IMAGE_EXTENSIONS:
                try:
                    found[rel] = entry.stat()
                except OSError:
                    continue
    return found


class FeatureIndex:
    """The features of every image under ``database`` for one extractor, cached on disk.

    ``snapshot`` is what searches read; ``update()`` brings it in line with the files (serialised
    by a lock) and swaps in a new snapshot. Thread-safe.
    """

    def __init__(self, database: Path = config.DATABASE_DIR, extractor: str | None = None,
                 checkpoints: Path = config.CHECKPOINT_DIR, index_dir: Path | None = None):
        extractor = extractor or default_extractor(checkpoints)
        if extractor not in EXTRACTORS:
            raise KeyError(f"unknown extractor {extractor!r}; choose from {', '.join(EXTRACTORS)}")
        self.database = Path(database)
        self.extractor_name = extractor
        self.checkpoints = Path(checkpoints)
        self.index_dir = Path(index_dir) if index_dir else self.database / INDEX_DIR
        self.manifest_path = self.index_dir / f"{extractor}.json"
        self._extractor: Extractor | None = None
        self._build_lock = threading.Lock()
        self._update_lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._scanned_at = 0.0

    # ------------------------------------------------------------------ extractor
    @property
    def extractor(self) -> Extractor:
        if self._extractor is None:
            with self._build_lock:
                if self._extractor is None:
                    self._extractor = build_extractor(self.extractor_name, self.checkpoints)
        return self._extractor

    @property
    def built(self) -> bool:
        return self._extractor is not None

    def key(self) -> str:
        """The extractor key, from file hashes when possible (no model built)."""
        if self._extractor is None:
            version = EXTRACTORS[self.extractor_name].version(self.checkpoints)
            if version is not None:
                return extractor_key(self.extractor_name, version)
        return self.extractor.key

    def features_of(self, images: np.ndarray) -> np.ndarray:
        """(N, 28, 28, 1) preprocessed images -> (N, D) features."""
        return self.extractor.extract(np.asarray(images, np.float32))

    def query_features(self, source: Any, name: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Any image input -> (preprocessed (28, 28, 1), features (D,)). Raises ImageError."""
        image = preprocess(source, "digits", name=name)
        return image, self.features_of(image[None])[0]

    # ------------------------------------------------------------------ on disk
    def _read(self) -> tuple[dict | None, np.ndarray | None]:
        """The manifest and features on disk, or (None, None) when absent or unusable."""
        try:
            manifest = json.loads(self.manifest_path.read_text())
            if manifest.get("format") != INDEX_FORMAT:
                return None, None
            features = np.load(self.index_dir / manifest["features_file"], allow_pickle=False)
            if features.shape[0] != len(manifest["entries"]):
                return None, None
            return manifest, features.astype(np.float32, copy=False)
        except (OSError, ValueError, KeyError, TypeError):
            return None, None

    def _write(self, key: str, entries: list[Entry], features: np.ndarray, skipped: list[tuple[Entry, str]]) -> None:
        self.index_dir.mkdir(parents=True, exist_ok=True)
        features_file = f"{self.extractor_name}-{uuid.uuid4().hex[:12]}.npy"
        atomic_write(self.index_dir / features_file, lambda f: np.save(f, features, allow_pickle=False))
        manifest = {
            "format": INDEX_FORMAT, "extractor": self.extractor_name,
            "extractor_version": key.split("@")[1], "extractor_key": key,
            "preprocessing_version": config.PREPROCESSING_VERSION, "features_file": features_file,
            "dim": int(features.shape[1]) if features.ndim == 2 else 0,
            "entries": [vars(e) | {"label": e.label} for e in entries],
            "skipped": [vars(e) | {"reason": reason} for e, reason in skipped],
        }
        data = json.dumps(manifest, indent=0).encode()
        atomic_write(self.manifest_path, lambda f: f.write(data))   # the commit point
        # only now is the previous features file unreferenced
        for stale in self.index_dir.glob(f"{self.extractor_name}-*.npy"):
            if stale.name != features_file:
                stale.unlink(missing_ok=True)

    # ------------------------------------------------------------------ update
    def update(self, progress: Progress | None = None) -> UpdateReport:
        """Bring the index in line with the files: extract only new or changed content.

        A file whose size and mtime match the manifest is trusted; otherwise it is hashed, and
        only a changed hash means extraction (a fresh ``git clone`` changes every mtime, not the
        content). Unreadable files are skipped, reported and remembered until they change.
        """
        started = time.perf_counter()
        with self._update_lock:
            report = UpdateReport()
            files = scan_database(self.database) if self.database.is_dir() else {}
            key = self.key()
            snap = self._snapshot
            if snap is not None and snap.extractor_key == key:      # no need to re-read our own index
                manifest = {"entries": [vars(e) for e in snap.entries],
                            "skipped": [vars(e) | {"reason": r} for e, r in snap.skipped], "extractor_key": key}
                features = snap.features
            else:
                manifest, features = self._read()
            if manifest is not None and manifest.get("extractor_key") != key:
                manifest, features = None, None         # other weights or preprocessing: start over
            old_rows: dict[str, tuple[Entry, int]] = {}
            by_hash: dict[str, int] = {}
            old_skipped: dict[str, tuple[Entry, str]] = {}
            if manifest is not None:
                for row, raw in enumerate(manifest["entries"]):
                    entry = Entry(raw["path"], raw["size"], raw["mtime_ns"], raw["sha256"])
                    old_rows[entry.path] = (entry, row)
                    by_hash.setdefault(entry.sha256, row)
                for raw in manifest.get("skipped", []):
                    old_skipped[raw["path"]] = (Entry(raw["path"], raw["size"], raw["mtime_ns"], raw["sha256"]),
                                                raw["reason"])
            changed = manifest is None
            entries: list[Entry] = []
            rows: list[int | None] = []          # row in the old features, or None: extract
            skipped: list[tuple[Entry, str]] = []
            for rel in sorted(files):
                st = files[rel]
                old = old_rows.get(rel) or old_skipped.get(rel)
                old_entry = old[0] if old else None
                if old_entry and (old_entry.size, old_entry.mtime_ns) == (st.st_size, st.st_mtime_ns):
                    entry, sha = old_entry, old_entry.sha256
                else:
                    try:
                        sha = sha256_file(self.database / rel)
                    except OSError as err:
                        skipped.append((Entry(rel, st.st_size, st.st_mtime_ns, ""), f"cannot be read ({err.strerror})"))
                        changed = True
                        continue
                    entry = Entry(rel, st.st_size, st.st_mtime_ns, sha)
                    changed = True       # at least the mtime moved: rewrite the manifest
                if rel in old_skipped and old_skipped[rel][0].sha256 == sha:
                    skipped.append((entry, old_skipped[rel][1]))
                    continue
                entries.append(entry)
                if rel in old_rows and old_rows[rel][0].sha256 == sha:
                    rows.append(old_rows[rel][1])
                elif sha in by_hash:             # same content under another name (a move or a copy)
                    rows.append(by_hash[sha])
                    changed = True
                else:
                    rows.append(None)
                    changed = True
            report.removed = sorted(set(old_rows) - set(files))
            changed = changed or bool(report.removed) or set(old_skipped) - set(files) != set()

            todo = [i for i, row in enumerate(rows) if row is None]
            new_features: dict[int, np.ndarray] = {}
            if todo:
                ok, failed = self._extract([entries[i].path for i in todo], progress)
                for i, vector in zip(todo, ok):
                    if vector is not None:
                        new_features[i] = vector
                for i, reason in zip(todo, failed):
                    if reason is not None:
                        skipped.append((entries[i], reason))
            keep = [i for i in range(len(entries)) if rows[i] is not None or i in new_features]
            dim = (features.shape[1] if features is not None and len(features) else
                   next(iter(new_features.values())).shape[0] if new_features else 0)
            matrix = np.zeros((len(keep), dim), np.float32)
            for out_row, i in enumerate(keep):
                matrix[out_row] = features[rows[i]] if rows[i] is not None else new_features[i]
            final_entries = [entries[i] for i in keep]
            skipped.sort(key=lambda item: item[0].path)
            if changed:
                if self.built:
                    key = self.extractor.key      # authoritative once the model is loaded
                self._write(key, final_entries, matrix, skipped)
                report.written = True
            report.extracted = [entries[i].path for i in todo if i in new_features]
            report.reused = len(keep) - len(report.extracted)
            report.skipped = [(e.path, reason) for e, reason in skipped]
            report.total = len(final_entries)
            self._snapshot = Snapshot(self.database, key, final_entries, matrix, skipped)
            self._scanned_at = time.monotonic()
        report.seconds = time.perf_counter() - started
        return report

    def _extract(self, paths: list[str], progress: Progress | None) -> tuple[list, list]:
        """Preprocess (in threads: Pillow and scipy release the GIL) and extract in batches."""
        from concurrent.futures import ThreadPoolExecutor

        vectors: list[np.ndarray | None] = [None] * len(paths)
        failures: list[str | None] = [None] * len(paths)

        def load(rel: str):
            try:
                return preprocess(self.database / rel, "digits", name=rel), None
            except ImageError as err:
                return None, str(err)

        workers = max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2))
        step = BATCH * 4
        with ThreadPoolExecutor(workers) as pool:
            for start in range(0, len(paths), step):
                chunk = list(pool.map(load, paths[start:start + step]))
                good = [j for j, (image, _) in enumerate(chunk) if image is not None]
                for j, (_, reason) in enumerate(chunk):
                    failures[start + j] = reason
                if good:
                    out = self.features_of(np.stack([chunk[j][0] for j in good]))
                    for j, vector in zip(good, out):
                        vectors[start + j] = vector
                if progress:
                    progress(min(start + step, len(paths)), len(paths))
        return vectors, failures

    # ------------------------------------------------------------------ reading
    @property
    def snapshot(self) -> Snapshot:
        """The current index (loaded or brought up to date on first use)."""
        snap = self._snapshot
        if snap is None:
            self.update()
            snap = self._snapshot
        return snap

    def ensure_fresh(self, max_age: float = 2.0) -> Snapshot:
        """The snapshot, after re-checking the files if the last check is older than ``max_age`` s."""
        if self._snapshot is None or time.monotonic() - self._scanned_at > max_age:
            self.update()
        return self._snapshot

    def search(self, source: Any, k: int = 4, metric: str = "euclidean", name: str | None = None,
               backend: str = "auto", max_age: float = 2.0) -> tuple[np.ndarray, list[Hit]]:
        """Preprocess ``source``, extract its features and return (model input, top-k hits)."""
        image, vector = self.query_features(source, name=name)
        return image, self.ensure_fresh(max_age).search(vector[None], k, metric, backend)[0]


# ----------------------------------------------------------------------------- answers and additions

def class_key(label: str | None) -> str | None:
    """A class name normalised for comparison: database folders say ``2``, classifiers ``2_digits``.

    Case-insensitive, a trailing ``_digits`` dropped; None stays None.
    """
    if label is None:
        return None
    key = str(label).strip().casefold()
    return key[:-len("_digits")] if key.endswith("_digits") and len(key) > len("_digits") else key


def same_class(a: str | None, b: str | None) -> bool:
    """True when two class names mean the same class (see :func:`class_key`); None matches nothing."""
    return a is not None and b is not None and class_key(a) == class_key(b)


@dataclass
class RetrievalAnswer:
    """One query's result: ranked hits, what the extractor saw, and how long it took."""

    hits: list[Hit]
    query_input: np.ndarray        # (28, 28, 1) float32, the preprocessed query
    extractor: str
    ms: float
    database: Path | None = None   # the searched folder, to show hit paths relative to it

    @property
    def majority(self) -> str | None:
        """The most common label among the hits (ties: the better-ranked one), or None."""
        labels = [h.label for h in self.hits if h.label is not None]
        if not labels:
            return None
        return max(labels, key=lambda label: (labels.count(label), -labels.index(label)))

    def shown_path(self, hit: Hit) -> str:
        """A hit's path for clients: ``<database folder name>/<relative path>``, never absolute."""
        if self.database is not None:
            try:
                return (Path(self.database.name) / Path(hit.path).relative_to(self.database)).as_posix()
            except ValueError:
                pass
        return Path(hit.path).name

    def as_list(self) -> list[dict]:
        """The hits as ``{rank, path, label, distance}`` dicts, paths as :meth:`shown_path` gives them."""
        return [{**_hit_dict(h), "path": self.shown_path(h)} for h in self.hits]


@dataclass
class AddReport:
    added: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)    # (file name, reason)


_FORMAT_SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp"}
_SAFE = re.compile(r"[^A-Za-z0-9_-]+")


def safe_label(label: str | None) -> str | None:
    """A class folder name from user text: letters, digits, '-' and '_' only (None stays None)."""
    if label is None or not str(label).strip():
        return None
    cleaned = _SAFE.sub("_", str(label).strip()).strip("_")[:40]
    if not cleaned:
        raise ValueError(f"{label!r} cannot be used as a class name (use letters, digits, - or _).")
    return cleaned


def add_files(database: Path, files: list[Path | str], label: str | None = None,
              known_hashes: set[str] | frozenset = frozenset()) -> AddReport:
    """Copy image files into ``database/<label>/`` (or the top folder), never overwriting.

    Each file is checked with the same decoder and preprocessing as a query (non-images and blank
    images are refused with the reason), named from its sanitised stem and its *decoded* format,
    written to a hidden temp file and hard-linked into place (``os.link`` fails rather than
    replace an existing name; the next free ``-N`` suffix is taken). Content already in
    ``known_hashes`` is skipped as a duplicate.
    """
    from .images import decode

    database = Path(database)
    folder_name = safe_label(label)
    target = database / folder_name if folder_name else database
    target.mkdir(parents=True, exist_ok=True)
    if not target.resolve().is_relative_to(database.resolve()):
        raise ValueError("The class folder must lie inside the database.")
    report = AddReport()
    seen = set(known_hashes)
    for source in files:
        source = Path(source)
        shown = source.name or "file"
        try:
            data = source.read_bytes()
        except OSError as err:
            report.skipped.append((shown, f"cannot be read ({err.strerror or type(err).__name__})"))
            continue
        try:
            decoded = decode(data, name=shown)
            preprocess(decoded.image, "digits", name=shown)      # refuses blank images too
        except ImageError as err:
            report.skipped.append((shown, str(err)))
            continue
        digest = hashlib.sha256(data).hexdigest()
        if digest in seen:
            report.skipped.append((shown, "the same image is already in the database"))
            continue
        suffix = _FORMAT_SUFFIX.get(decoded.source_format or "", ".png")
        stem = _SAFE.sub("_", source.stem).strip("_.")[:60] or "image"
        fd, tmp = tempfile.mkstemp(prefix=".add-", suffix=suffix, dir=target)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            for n in range(10_000):
                final = target / (f"{stem}{suffix}" if n == 0 else f"{stem}-{n}{suffix}")
                try:
                    os.link(tmp, final)          # atomic, and never replaces an existing file
                    break
                except FileExistsError:
                    continue
                except OSError:                  # no hard links here: exclusive create instead
                    try:
                        with open(final, "xb") as out:
                            out.write(data)
                        break
                    except FileExistsError:
                        continue
            else:
                report.skipped.append((shown, "no free file name"))
                continue
            report.added.append(final)
            seen.add(digest)
        finally:
            Path(tmp).unlink(missing_ok=True)
    return report


def thumbnail(path: Path, side: int = 160):
    """A database image, decoded safely and reduced to fit ``side`` pixels, for showing (PIL image)."""
    from .images import decode, flatten

    im = flatten(decode(path).image, background=255)
    im.thumbnail((side, side))
    return im


# ----------------------------------------------------------------------------- evaluation

def labelled_queries(folder: Path) -> list[tuple[Path, str]]:
    """(path, class) for every image in ``folder/<class>/``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder.")
    found = [(folder / rel, rel.split("/")[0]) for rel in sorted(scan_database(folder)) if "/" in rel]
    if not found:
        raise FileNotFoundError(f"{folder} has no images in class subfolders (<class>/<image>).")
    return found


def evaluate(index: FeatureIndex, query_dir: Path, k: int = 4, metric: str = "euclidean",
             progress: Progress | None = None) -> dict:
    """precision@k and mean average precision (over the full ranking) per class and overall.

    A hit is relevant when its database class is the query's class folder (compared by
    :func:`class_key`, so a ``3_digits/`` query folder matches the database's ``3/``).
    """
    queries = labelled_queries(query_dir)
    snap = index.snapshot
    db_labels = np.array([class_key(e.label) for e in snap.entries], dtype=object)
    per_class: dict[str, dict[str, list[float]]] = {}
    errors = []
    for n, (path, label) in enumerate(queries):
        try:
            _, vector = index.query_features(path)
        except ImageError as err:
            errors.append({"query": str(path), "error": str(err)})
            continue
        distances = pairwise_distances(vector[None], snap.features, metric, snap.sq_norms)[0]
        order = _order(distances, len(distances))
        relevant = (db_labels[order] == class_key(label)).astype(np.float64)
        hits = np.cumsum(relevant)
        ap = float((hits / np.arange(1, len(hits) + 1) * relevant).sum() / max(1.0, relevant.sum()))
        scores = per_class.setdefault(label, {"p": [], "ap": []})
        scores["p"].append(float(relevant[:k].mean()) if k else 0.0)
        scores["ap"].append(ap)
        if progress:
            progress(n + 1, len(queries))
    result = {"k": k, "metric": metric, "extractor": index.extractor_name,
              "database_size": len(snap), "n_queries": sum(len(s["p"]) for s in per_class.values()),
              "per_class": {c: {"n": len(s["p"]), "precision_at_k": float(np.mean(s["p"])), "map": float(np.mean(s["ap"]))}
                            for c, s in sorted(per_class.items())}}
    all_p = [p for s in per_class.values() for p in s["p"]]
    all_ap = [a for s in per_class.values() for a in s["ap"]]
    result["overall"] = {"precision_at_k": float(np.mean(all_p)) if all_p else 0.0,
                         "map": float(np.mean(all_ap)) if all_ap else 0.0,
                         "min_class_precision_at_k": min((c["precision_at_k"] for c in result["per_class"].values()),
                                                         default=0.0)}
    if errors:
        result["errors"] = errors
    return result


def measure(database: Path = config.DATABASE_DIR, extractor: str | None = None,
            queries: list[Path] | None = None, checkpoints: Path = config.CHECKPOINT_DIR,
            index_dir: Path | None = None, repeats: int = 50, naive_queries: int = 2) -> dict:
    """Benchmark figures for the retrieval targets, measured in one run.

    Cold indexing into a fresh temporary index (images/s), a second no-change update (s), one
    query end to end and search-only (median ms), and the naive way (re-extract every database
    image per query) with the speed ratio.
    """
    import shutil

    database = Path(database)
    scratch = Path(tempfile.mkdtemp(prefix="cvdemo-retrieval-bench-"))
    try:
        index = FeatureIndex(database, extractor, checkpoints, index_dir=index_dir or scratch)
        index.extractor  # build (and trace) outside the timings
        cold = index.update()
        warm = index.update()
        snap = index.snapshot
        queries = [Path(q) for q in (queries or [database / e.path for e in snap.entries[:: max(1, len(snap) // 10)]])]
        vectors = [index.query_features(q)[1] for q in queries]
        end_to_end, search_only = [], []
        for i in range(repeats):
            q = queries[i % len(queries)]
            t0 = time.perf_counter()
            index.search(q, 4, max_age=3600)
            end_to_end.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            snap.search(vectors[i % len(vectors)][None], 4)
            search_only.append(time.perf_counter() - t0)
        naive = []
        for q in queries[:naive_queries]:
            t0 = time.perf_counter()
            _, vector = index.query_features(q)
            images = np.stack([preprocess(database / e.path) for e in snap.entries])
            top_k(vector[None], index.features_of(images), 4)
            naive.append(time.perf_counter() - t0)
        query_ms = float(np.median(end_to_end) * 1000)
        return {
            "extractor": index.extractor_name, "extractor_version": index.extractor.version, "database_size": len(snap),
            "index_seconds": round(cold.seconds, 3),
            "index_images_per_s": round(cold.total / cold.seconds, 1) if cold.seconds else None,
            "second_index_seconds": round(warm.seconds, 4),
            "query_ms_p50": round(query_ms, 2),
            "search_only_ms_p50": round(float(np.median(search_only) * 1000), 3),
            "naive_query_ms": round(float(np.median(naive) * 1000), 1),
            "speedup_vs_naive": round(float(np.median(naive) * 1000) / query_ms, 1),
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# ----------------------------------------------------------------------------- CLI

def _hit_dict(hit: Hit) -> dict:
    return {"rank": hit.rank, "path": str(hit.path), "label": hit.label, "distance": round(hit.distance, 6)}


def cmd_index(args) -> int:
    from .console import bar, info, print_json

    index = FeatureIndex(Path(args.database), args.extractor, Path(args.checkpoints))
    if not index.database.is_dir():
        from .console import CliError
        raise CliError(f"{args.database} is not a folder.")
    with bar(None, f"indexing with {index.extractor_name}", "img") as progress:
        report = index.update(progress.to)
    document = {"database": str(index.database), "extractor": index.extractor_name,
                "extractor_version": index.key().split("@")[1], **report.as_dict()}
    if args.json:
        print_json(document)
    else:
        info(f"{report.total} images indexed in {report.seconds:.2f}s: {len(report.extracted)} extracted, "
             f"{report.reused} reused, {len(report.removed)} removed, {len(report.skipped)} skipped"
             + ("" if report.written else " (index already up to date)"))
        for path, reason in report.skipped:
            info(f"  skipped {path}: {reason}")
    return 0


def cmd_retrieve(args) -> int:
    from .console import CliError, bar, info, print_json

    if args.k < 1:
        raise CliError("--k must be at least 1")
    index = FeatureIndex(Path(args.database), args.extractor, Path(args.checkpoints))
    if not index.database.is_dir():
        raise CliError(f"{args.database} is not a folder.")
    if args.eval:
        if args.queries:
            raise CliError("give either --eval QUERY_DIR or query images, not both")
        with bar(None, "indexing", "img") as progress:
            index.update(progress.to)
        with bar(None, "evaluating", "query") as progress:
            result = evaluate(index, Path(args.eval), args.k, args.metric, progress.to)
        if args.json:
            print_json(result)
        else:
            for label, scores in result["per_class"].items():
                info(f"class {label}: precision@{args.k}={scores['precision_at_k']:.3f} "
                     f"mAP={scores['map']:.3f} ({scores['n']} queries)")
            overall = result["overall"]
            info(f"overall: precision@{args.k}={overall['precision_at_k']:.3f} mAP={overall['map']:.3f} "
                 f"({result['n_queries']} queries, {result['database_size']} database images, {index.extractor_name})")
            for error in result.get("errors", []):
                info(f"error: {error['error']}")
        return 1 if result.get("errors") else 0
    if not args.queries:
        raise CliError("give at least one query image, or --eval QUERY_DIR")
    report = index.update()
    for path, reason in report.skipped:
        info(f"skipped database file {path}: {reason}")
    entries, failed = [], 0
    for query in args.queries:
        try:
            _, hits = index.search(query, args.k, args.metric, name=query, max_age=3600)
            entries.append({"query": query, "results": [_hit_dict(h) for h in hits]})
        except ImageError as err:
            failed += 1
            entries.append({"query": query, "error": str(err)})
    if args.json:
        print_json(entries)
    else:
        for entry in entries:
            if "error" in entry:
                print(f"error: {entry['error']}", file=__import__("sys").stderr)
                continue
            print(entry["query"])
            for hit in entry["results"]:
                print(f"  {hit['rank']}. {hit['path']}  class={hit['label']}  distance={hit['distance']:.4f}")
    return 1 if failed else 0


def add_cli(sub) -> None:
    """Register ``python -m cvdemo index`` and ``python -m cvdemo retrieve``."""
    common = dict(database=("--database", dict(default=str(config.DATABASE_DIR), help="image folder (default: %(default)s)")),
                  extractor=("--extractor", dict(default=None, choices=sorted(EXTRACTORS),
                                                 help=f"default: the first available of {', '.join(PREFERENCE)}")),
                  checkpoints=("--checkpoints", dict(default=str(config.CHECKPOINT_DIR),
                                                     help="where extractor weights/checkpoints are")))
    p = sub.add_parser("index", help="build or update the feature index of an image folder")
    for flag, kwargs in common.values():
        p.add_argument(flag, **kwargs)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_index)

    p = sub.add_parser("retrieve", help="the k most similar database images for each query (or --eval a folder)")
    p.add_argument("queries", nargs="*", metavar="QUERY")
    for flag, kwargs in common.values():
        p.add_argument(flag, **kwargs)
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--metric", choices=METRICS, default="euclidean")
    p.add_argument("--eval", default=None, metavar="QUERY_DIR",
                   help="report precision@k and mAP for a labelled folder (one subfolder per class)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_retrieve)
