"""One immutable state of a feature index (its entries and feature matrix), searched by backend name.

Backends: ``numpy`` (exact), ``faiss`` (HNSW) and ``faiss-flat`` (exact) built from the matrix on
first use, ``milvus`` through the :class:`milvus.MilvusSearch` the index attaches, and ``auto``
(numpy below ``FAISS_MIN_VECTORS``, FAISS above when installed). Every backend ranks ties by row
position, so they return the same order where they are exact.
"""
from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .search import FaissSearch, Hit, faiss_available, top_k

if TYPE_CHECKING:
    from .milvus import MilvusSearch

BACKENDS = ("auto", "numpy", "faiss", "faiss-flat", "milvus")
FAISS_MIN_VECTORS = 50_000        # "auto" backend: exact numpy below, FAISS HNSW above (if installed)


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
                 skipped: list[tuple[Entry, str]], milvus: MilvusSearch | None = None):
        self.database = database
        self.extractor_key = extractor_key
        self.entries = entries
        self.features = features          # (N, D) float32, rows in entries' (sorted-path) order
        self.features.setflags(write=False)
        self.sq_norms = np.einsum("nd,nd->n", features, features) if len(features) else np.zeros(0, np.float32)
        self.skipped = skipped
        self.milvus = milvus
        self._faiss: dict[tuple, FaissSearch] = {}
        self._faiss_lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.entries)

    @cached_property
    def rows_by_sha(self) -> dict[str, tuple[int, ...]]:
        """Content hash -> the rows holding it, in row order (equal content, equal features)."""
        rows: dict[str, list[int]] = {}
        for row, entry in enumerate(self.entries):
            rows.setdefault(entry.sha256, []).append(row)
        return {sha: tuple(r) for sha, r in rows.items()}

    @cached_property
    def content_digest(self) -> str:
        """The extractor key and the distinct content hashes: what a copy of this index must hold."""
        h = hashlib.sha256(self.extractor_key.encode())
        for sha in sorted(self.rows_by_sha):
            h.update(sha.encode())
        return h.hexdigest()

    def resolve(self, backend: str) -> str:
        """The backend ``auto`` stands for at this size; any other name as it is."""
        if backend == "auto":
            return "faiss" if len(self.entries) >= FAISS_MIN_VECTORS and faiss_available() else "numpy"
        return backend

    def search(self, query_features: np.ndarray, k: int = 4, metric: str = "euclidean",
               backend: str = "auto") -> list[list[Hit]]:
        """Top-k hits for each query vector (Q, D); ``backend`` is one of ``BACKENDS``."""
        if len(self.entries) == 0:
            return [[] for _ in np.atleast_2d(query_features)]
        backend = self.resolve(backend)
        if backend == "numpy":
            positions, distances = top_k(query_features, self.features, k, metric, self.sq_norms)
        elif backend in ("faiss", "faiss-flat"):
            kind = "flat" if backend == "faiss-flat" else "hnsw"
            with self._faiss_lock:
                if (metric, kind) not in self._faiss:
                    self._faiss[(metric, kind)] = FaissSearch(self.features, metric, kind)
                searcher = self._faiss[(metric, kind)]
            positions, distances = searcher.search(query_features, k)
        elif backend == "milvus":
            if self.milvus is None:
                raise ValueError("the milvus backend needs an index opened with backend='milvus'")
            positions, distances = self.milvus.search(self, query_features, k, metric)
        else:
            raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
        return [[Hit(rank + 1, self.database / self.entries[p].path, self.entries[p].label, float(d))
                 for rank, (p, d) in enumerate(zip(row_p, row_d)) if p >= 0]
                for row_p, row_d in zip(positions, distances)]
