"""Exact top-k search in numpy, and the same contract through FAISS for large collections.

Distances are Euclidean or cosine; ties break by row position, so every backend returns the same
order. Knows nothing about files, extractors or labels beyond the ``Hit`` it returns.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

METRICS = ("euclidean", "cosine")


@dataclass(frozen=True)
class Hit:
    rank: int
    path: Path
    label: str | None
    distance: float

    def as_dict(self) -> dict:
        return {"rank": self.rank, "path": str(self.path), "label": self.label,
                "distance": round(self.distance, 6)}


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


def rounding_margin(metric: str, largest: float) -> float:
    """How far float32 distances up to ``largest`` may be off: candidates within it of the k-th
    are ranked again exactly."""
    return 1e-3 * (2.0 if metric == "cosine" else float(np.sqrt(largest ** 2 + 1.0)))


def rank_exactly(query: np.ndarray, features: np.ndarray, candidates: np.ndarray,
                 metric: str) -> tuple[np.ndarray, np.ndarray]:
    """``candidates`` (row positions) ordered by float64 distance to ``query``, ties by position:
    (positions, distances). Every backend ranks through this, so they agree where they are exact."""
    exact = _exact(query, features[candidates], metric)
    order = np.lexsort((candidates, exact))
    return candidates[order], exact[order]


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
    margin = rounding_margin(metric, float(approx.max(initial=0.0)))
    for row, (query, d) in enumerate(zip(queries, approx)):
        kth = np.partition(d, kk - 1)[kk - 1] if kk < n else np.inf
        ranked, exact = rank_exactly(query, features, np.flatnonzero(d <= kth + margin), metric)
        positions[row] = ranked[:kk]
        distances[row] = exact[:kk]
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
