"""The on-disk feature index of an image folder, updated incrementally, read through snapshots.

The index lives beside the images, in ``<database>/.index/``: ``<extractor>.json`` (the manifest:
relative path, size, mtime, sha256 and label of every file, the extractor's name and version)
and the ``.npy`` feature matrix it names. Only new or changed content is extracted, and the
manifest is replaced last and points at a features file that is never overwritten, so a crash
leaves the previous index whole. Every input goes through :func:`cvdemo.images.preprocess`.
"""
from __future__ import annotations

import json
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import config
from ..fsutil import atomic_write, atomic_write_bytes, sha256_file
from ..images import ImageError, preprocess
from .extractors import BATCH, EXTRACTORS, Extractor, build_extractor, default_extractor, extractor_key
from .search import Hit
from .snapshot import BACKENDS, Entry, Snapshot

INDEX_FORMAT = 1
INDEX_DIR = ".index"

Progress = Callable[[int, int], None]   # (done, total)


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
    milvus: dict | None = None          # what the sync to Milvus did (backend "milvus" only)

    def as_dict(self) -> dict:
        return {"total": self.total, "extracted": len(self.extracted), "reused": self.reused,
                "removed": len(self.removed), "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
                "written": self.written, "seconds": round(self.seconds, 3)} | (
                    {"milvus": self.milvus} if self.milvus is not None else {})


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
                 checkpoints: Path = config.CHECKPOINT_DIR, index_dir: Path | None = None,
                 backend: str = "auto", milvus_uri: str | None = None):
        extractor = extractor or default_extractor(checkpoints)
        if extractor not in EXTRACTORS:
            raise KeyError(f"unknown extractor {extractor!r}; choose from {', '.join(EXTRACTORS)}")
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
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
        self.backend = backend
        self.milvus = None
        if backend == "milvus":             # raises MilvusError when the package or server is missing
            from .milvus import MilvusSearch, default_uri

            self.milvus = MilvusSearch(milvus_uri or default_uri(self.index_dir),
                                       prefix=f"cvdemo_{self.database.resolve().name}")

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
        atomic_write_bytes(self.manifest_path, data)   # the commit point
        # only now is the previous features file unreferenced
        for stale in self.index_dir.glob(f"{self.extractor_name}-*.npy"):
            if stale.name != features_file:
                stale.unlink(missing_ok=True)

    # ------------------------------------------------------------------ update
    def update(self, progress: Progress | None = None, sync_progress: Progress | None = None) -> UpdateReport:
        """Bring the index in line with the files: extract only new or changed content, then (backend
        ``milvus``) bring the Milvus copy in line with the manifest (``sync_progress``: its upserts).

        A file whose size and mtime match the manifest is trusted; otherwise it is hashed, and
        only a changed hash means extraction (a fresh ``git clone`` changes every mtime, not the
        content). Unreadable files are skipped, reported and remembered until they change.
        """
        started = time.perf_counter()
        with self._update_lock:
            files = scan_database(self.database) if self.database.is_dir() else {}
            key = self.key()
            manifest, features = self._previous(key)
            plan = _Plan.of(files, manifest, self.database)
            todo = [i for i, row in enumerate(plan.rows) if row is None]
            new_features: dict[int, np.ndarray] = {}
            if todo:
                ok, failed = self._extract([plan.entries[i].path for i in todo], progress)
                new_features = {i: vector for i, vector in zip(todo, ok) if vector is not None}
                plan.skipped += [(plan.entries[i], reason) for i, reason in zip(todo, failed) if reason is not None]
            keep = [i for i in range(len(plan.entries)) if plan.rows[i] is not None or i in new_features]
            dim = (features.shape[1] if features is not None and len(features) else
                   next(iter(new_features.values())).shape[0] if new_features else 0)
            matrix = np.zeros((len(keep), dim), np.float32)
            for out_row, i in enumerate(keep):
                matrix[out_row] = features[plan.rows[i]] if plan.rows[i] is not None else new_features[i]
            final_entries = [plan.entries[i] for i in keep]
            plan.skipped.sort(key=lambda item: item[0].path)
            report = UpdateReport(removed=plan.removed)
            if plan.changed:
                if self.built:
                    key = self.extractor.key      # authoritative once the model is loaded
                self._write(key, final_entries, matrix, plan.skipped)
                report.written = True
            report.extracted = [plan.entries[i].path for i in todo if i in new_features]
            report.reused = len(keep) - len(report.extracted)
            report.skipped = [(e.path, reason) for e, reason in plan.skipped]
            report.total = len(final_entries)
            self._snapshot = Snapshot(self.database, key, final_entries, matrix, plan.skipped, self.milvus)
            if self.milvus is not None:          # the manifest first, then its copy in Milvus
                report.milvus = self.milvus.sync(self._snapshot, progress=sync_progress).as_dict()
            self._scanned_at = time.monotonic()
        report.seconds = time.perf_counter() - started
        return report

    def _previous(self, key: str) -> tuple[dict | None, np.ndarray | None]:
        """The index as it stands (our own snapshot, else the files), or (None, None) to start over."""
        snap = self._snapshot
        if snap is not None and snap.extractor_key == key:      # no need to re-read our own index
            return ({"entries": [vars(e) for e in snap.entries],
                     "skipped": [vars(e) | {"reason": r} for e, r in snap.skipped], "extractor_key": key},
                    snap.features)
        manifest, features = self._read()
        if manifest is not None and manifest.get("extractor_key") != key:
            return None, None                   # other weights or preprocessing: start over
        return manifest, features

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
               backend: str | None = None, max_age: float = 2.0) -> tuple[np.ndarray, list[Hit]]:
        """Preprocess ``source``, extract its features and return (model input, top-k hits) from
        ``backend`` (default: the one the index was opened with)."""
        image, vector = self.query_features(source, name=name)
        return image, self.search_features(vector, k, metric, backend, max_age)

    def search_features(self, vector: np.ndarray, k: int = 4, metric: str = "euclidean",
                        backend: str | None = None, max_age: float = 2.0) -> list[Hit]:
        """The top-k hits of one feature vector (D,) from the fresh snapshot (see :meth:`search`)."""
        return self.ensure_fresh(max_age).search(np.asarray(vector)[None], k, metric, backend or self.backend)[0]


@dataclass
class _Plan:
    """What an update keeps, moves and extracts: every entry with its row in the old features
    (None: extract it), the files skipped with their reason, and whether anything changed."""

    entries: list[Entry] = field(default_factory=list)
    rows: list[int | None] = field(default_factory=list)
    skipped: list[tuple[Entry, str]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: bool = False

    @classmethod
    def of(cls, files: dict[str, os.stat_result], manifest: dict | None, database: Path) -> _Plan:
        old_rows: dict[str, tuple[Entry, int]] = {}
        by_hash: dict[str, int] = {}
        old_skipped: dict[str, tuple[Entry, str]] = {}
        for row, raw in enumerate((manifest or {}).get("entries", [])):
            entry = Entry(raw["path"], raw["size"], raw["mtime_ns"], raw["sha256"])
            old_rows[entry.path] = (entry, row)
            by_hash.setdefault(entry.sha256, row)
        for raw in (manifest or {}).get("skipped", []):
            old_skipped[raw["path"]] = (Entry(raw["path"], raw["size"], raw["mtime_ns"], raw["sha256"]), raw["reason"])
        plan = cls(changed=manifest is None)
        for rel in sorted(files):
            st = files[rel]
            old = old_rows.get(rel) or old_skipped.get(rel)
            old_entry = old[0] if old else None
            if old_entry and (old_entry.size, old_entry.mtime_ns) == (st.st_size, st.st_mtime_ns):
                entry, sha = old_entry, old_entry.sha256
            else:
                plan.changed = True          # at least the mtime moved: rewrite the manifest
                try:
                    sha = sha256_file(database / rel)
                except OSError as err:
                    plan.skipped.append((Entry(rel, st.st_size, st.st_mtime_ns, ""), f"cannot be read ({err.strerror})"))
                    continue
                entry = Entry(rel, st.st_size, st.st_mtime_ns, sha)
            if rel in old_skipped and old_skipped[rel][0].sha256 == sha:
                plan.skipped.append((entry, old_skipped[rel][1]))
                continue
            plan.entries.append(entry)
            if rel in old_rows and old_rows[rel][0].sha256 == sha:
                plan.rows.append(old_rows[rel][1])
            else:                            # new content, or the same content under another name
                plan.rows.append(by_hash.get(sha))
                plan.changed = True
        plan.removed = sorted(set(old_rows) - set(files))
        plan.changed = plan.changed or bool(plan.removed) or bool(set(old_skipped) - set(files))
        return plan
