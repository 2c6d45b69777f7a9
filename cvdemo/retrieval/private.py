"""Images a visitor adds: searchable by that visitor only, removable, gone with the session.

Each owner (a browser session) gets a folder of copies, written by the same :func:`add_files`
that adds to the database (checked like a query, never overwriting), and the copies' features,
extracted once by the database's extractor. A search merges the owner's nearest additions into
the database's hits. The database and its index are never touched. Knows nothing about the UI.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import config
from ..images import preprocess
from ..owners import PerOwner
from .library import AddReport, add_files
from .search import Hit


@dataclass(frozen=True)
class Addition:
    """One added image: ``id`` names it for removal; ``path`` is the private copy."""

    id: str
    path: Path
    label: str | None
    sha256: str

    @property
    def shown(self) -> str:
        return f"{self.label}/{self.path.name}" if self.label else self.path.name


@dataclass
class _Owned:
    additions: list[Addition] = field(default_factory=list)
    features: np.ndarray | None = None           # (len(additions), D), same row order
    used: float = field(default_factory=time.monotonic)


class PrivateAdditions(PerOwner):
    """Per-owner additions under ``root`` (one sub-folder per owner). Thread-safe."""

    def __init__(self, root: Path, per_owner: int = config.PRIVATE_ADDITIONS_PER_SESSION,
                 ttl_s: float = config.PRIVATE_ADDITIONS_TTL_S):
        super().__init__(root, ttl_s)
        self.per_owner = per_owner

    def add(self, owner: str, files: list, label: str | None, features_of, known_hashes: set[str]) -> AddReport:
        """Copy ``files`` into the owner's folder and extract their features with ``features_of``
        ((N, 28, 28, 1) -> (N, D)). Duplicates of ``known_hashes`` (the database) or of the
        owner's own additions are skipped, as are files beyond the per-owner limit."""
        self._sweep()
        with self._lock:
            owned = self._owners.setdefault(owner, _Owned())
            room = self.per_owner - len(owned.additions)
            mine = {a.sha256 for a in owned.additions}
        files = [Path(f) for f in files]
        report = add_files(self.folder(owner), files[:max(room, 0)], label, set(known_hashes) | mine)
        report.skipped += [(f.name, f"this session already holds {self.per_owner} added images; remove some first")
                           for f in files[max(room, 0):]]
        if not report.added:
            return report
        entries = []
        for path in report.added:
            data = path.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            entries.append((Addition(digest[:16], path, _label_of(path, self.folder(owner)), digest),
                            preprocess(data, "digits", name=path.name)))
        vectors = np.asarray(features_of(np.stack([image for _, image in entries])), np.float32)
        with self._lock:
            owned = self._owners.setdefault(owner, _Owned())
            owned.additions += [a for a, _ in entries]
            owned.features = vectors if owned.features is None else np.concatenate([owned.features, vectors])
            owned.used = time.monotonic()
        return report

    def list(self, owner: str | None) -> list[Addition]:
        with self._lock:
            owned = self._owners.get(owner) if owner else None
            return list(owned.additions) if owned else []

    def hits(self, owner: str | None, vector: np.ndarray, k: int) -> list[Hit]:
        """The owner's ``k`` additions nearest to ``vector`` (Euclidean, like the database's search)."""
        with self._lock:
            owned = self._owners.get(owner) if owner else None
            if not owned or owned.features is None or not owned.additions:
                return []
            owned.used = time.monotonic()
            additions, features = list(owned.additions), owned.features
        distances = np.linalg.norm(features - np.asarray(vector, np.float32)[None], axis=1)
        order = np.argsort(distances, kind="stable")[:k]
        return [Hit(0, additions[i].path, additions[i].label, float(distances[i])) for i in order]

    def remove(self, owner: str | None, addition_id: str) -> bool:
        """Remove one addition (its copy too); False when the owner has none by that id."""
        with self._lock:
            owned = self._owners.get(owner) if owner else None
            position = next((i for i, a in enumerate(owned.additions) if a.id == addition_id), None) if owned else None
            if position is None:
                return False
            gone = owned.additions.pop(position)
            owned.features = np.delete(owned.features, position, axis=0)
        gone.path.unlink(missing_ok=True)
        return True


def merge(database_hits: list[Hit], private_hits: list[Hit], k: int) -> list[Hit]:
    """One ranking of both, nearest first (the database's first on a tie), ranks 1..k."""
    both = sorted([(h.distance, 0, i, h) for i, h in enumerate(database_hits)]
                  + [(h.distance, 1, i, h) for i, h in enumerate(private_hits)], key=lambda t: t[:3])
    return [Hit(rank, h.path, h.label, h.distance) for rank, (*_, h) in enumerate(both[:k], start=1)]


def _label_of(path: Path, folder: Path) -> str | None:
    parent = path.parent
    return parent.name if parent != folder else None
