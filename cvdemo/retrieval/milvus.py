"""The feature index's vectors in Milvus: embedded Milvus Lite on one machine, a server or a
cluster by URI, with the same client code (optional: ``pymilvus`` and ``milvus-lite``).

The manifest stays the source of truth. A collection holds one row per distinct content hash
(the sha256 is the primary key, the feature vector the only other field); ``sync`` brings it in
line with a snapshot by inserting the hashes it lacks and deleting those that are gone, so a
lost, stale or half-written collection is repaired from the manifest's features and nothing is
ever extracted again. The snapshot's digest is stored as a collection property once a sync
completes: a collection whose property or row count disagrees is diffed, never trusted.

Searches ask Milvus for candidates and rank them with :func:`search.rank_exactly` (float64
distance, ties broken by row position), so on a FLAT index the order is numpy's.
"""
from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from .search import rank_exactly, rounding_margin

if TYPE_CHECKING:
    from .snapshot import Snapshot

HNSW_MIN_VECTORS = 50_000      # FLAT (exact) below, HNSW above: the same switch as FAISS_MIN_VECTORS
MAX_TOP_K = 16_384             # Milvus refuses a larger limit
HNSW_PARAMS = {"M": 32, "efConstruction": 80}
HNSW_EF = 128
DIGEST_PROPERTY = "cvdemo.digest"
BATCH_BYTES = 8 * 1024 * 1024  # per insert request (Milvus takes at most 64 MB)
MILVUS_METRICS = {"euclidean": "L2", "cosine": "COSINE"}
log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


class MilvusError(RuntimeError):
    """Milvus is missing, unreachable or refused a request; ``str(err)`` says which, in one line."""


def milvus_available() -> bool:
    try:
        import pymilvus  # noqa: F401
    except ImportError:
        return False
    return True


def default_uri(index_dir: Path) -> str:
    """A Milvus Lite database beside the feature index (``<database>/.index/milvus.db``)."""
    return str(Path(index_dir) / "milvus.db")


def collection_family(prefix: str, extractor_key: str) -> str:
    """The start every collection of this data and extractor shares, whatever the weights."""
    name = extractor_key.split("@")[0]
    family = f"{prefix}__{re.sub(r'[^0-9A-Za-z]', '_', name)}__"
    return family if family[0].isalpha() or family[0] == "_" else f"c_{family}"


def collection_name(prefix: str, extractor_key: str, metric: str) -> str:
    """A valid Milvus name (letters, digits, underscores) naming the data, the weights and the metric."""
    version = (extractor_key.split("@") + [""])[1]
    digest = hashlib.sha256(extractor_key.encode()).hexdigest()[:12]
    return collection_family(prefix, extractor_key) + re.sub(r"[^0-9A-Za-z]", "_", f"{version[:12]}_{digest}_{metric}")


@dataclass
class SyncReport:
    """What one ``MilvusSearch.sync`` did to a collection."""

    collection: str
    inserted: int = 0
    deleted: int = 0
    created: bool = False
    checked: bool = False       # the collection was diffed against the snapshot (not trusted)
    index_type: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"collection": self.collection, "inserted": self.inserted, "deleted": self.deleted,
                "created": self.created, "checked": self.checked, "index_type": self.index_type,
                "seconds": round(self.seconds, 3)}


def index_type_for(n: int) -> str:
    return "FLAT" if n < HNSW_MIN_VECTORS else "HNSW"


class MilvusSearch:
    """Top-k search of snapshots through one Milvus endpoint; thread-safe."""

    def __init__(self, uri: str, prefix: str = "cvdemo", timeout: float = 30.0):
        if not milvus_available():
            raise MilvusError("the milvus backend needs pymilvus and milvus-lite "
                              "(pip install pymilvus milvus-lite); numpy and faiss need neither")
        from pymilvus import MilvusClient

        # pymilvus logs a warning per query iterator against Milvus Lite (no server timestamp)
        logging.getLogger("pymilvus").setLevel(logging.ERROR)
        self.uri = str(uri)
        self.prefix = re.sub(r"[^0-9A-Za-z]", "_", prefix)[:64] or "cvdemo"   # names stay under 255
        options = {}
        if not self.uri.startswith(("http://", "https://", "tcp://", "unix:")):
            Path(self.uri).parent.mkdir(parents=True, exist_ok=True)
            # Milvus Lite serves in this process: pymilvus's keepalive ping every 10 s during a
            # call of minutes (an HNSW build) only earns "too_many_pings" GOAWAYs from its server
            options["grpc_options"] = {"grpc.keepalive_time_ms": 300_000, "grpc.keepalive_permit_without_calls": 0}
        try:
            self.client = MilvusClient(uri=self.uri, timeout=timeout, **options)
        except Exception as err:          # pymilvus raises its own and grpc errors alike
            raise MilvusError(f"cannot reach Milvus at {self.uri}: {_reason(err)}") from None
        self._lock = threading.Lock()
        self._synced: dict[str, Snapshot] = {}     # collection -> the snapshot this process last wrote there
        self._index_types: dict[str, str] = {}

    # ------------------------------------------------------------------ sync
    def sync(self, snapshot: Snapshot, metric: str = "euclidean", progress: Progress | None = None) -> SyncReport:
        """Make the collection for (snapshot's extractor, metric) hold exactly the snapshot's vectors."""
        _milvus_metric(metric)
        name = collection_name(self.prefix, snapshot.extractor_key, metric)
        started = time.perf_counter()
        if len(snapshot.entries) == 0:      # nothing to search, and no vector to size a collection by
            return SyncReport(name)
        with self._lock:
            last = self._synced.get(name)
            if last is not None and last.content_digest == snapshot.content_digest:
                return SyncReport(name, index_type=self._index_types.get(name, ""))
            try:
                report = self._sync(name, snapshot, metric, last, progress)
            except MilvusError:
                raise
            except Exception as err:
                raise MilvusError(f"Milvus at {self.uri} refused the update of {name}: {_reason(err)}") from None
            self._synced[name] = snapshot
        report.seconds = time.perf_counter() - started
        return report

    def _sync(self, name: str, snapshot: Snapshot, metric: str, last: Snapshot | None,
              progress: Progress | None) -> SyncReport:
        """Diff against the snapshot this process last synced when the collection still holds it
        (its digest property says so), else against the keys Milvus lists; then delete and upsert."""
        first = {sha: rows[0] for sha, rows in snapshot.rows_by_sha.items()}
        report = SyncReport(name, index_type=index_type_for(len(first)))
        c = self.client
        if c.has_collection(name):
            c.load_collection(name)          # a collection another process wrote starts released
            held = (c.describe_collection(name).get("properties", {}) or {}).get(DIGEST_PROPERTY)
            count = int(c.get_collection_stats(name).get("row_count", -1))
            if held == snapshot.content_digest and count == len(first):
                self._ensure_index(name, metric, report.index_type)
                return report
            if last is not None and held == last.content_digest:
                present = set(last.rows_by_sha)
            else:
                present, report.checked = self._all_keys(name), True
        else:
            self._create(name, snapshot.features.shape[1], metric, report.index_type)
            present, report.created = set(), True
        # from here until the new digest is written the collection is in between: say so first, so a
        # sync cut short (a killed process) is diffed by the next one instead of trusted
        c.alter_collection_properties(name, properties={DIGEST_PROPERTY: ""})
        missing = [sha for sha in first if sha not in present]
        gone = sorted(present - set(first))
        for start in range(0, len(gone), 1000):
            c.delete(name, ids=gone[start:start + 1000])
        report.deleted = len(gone)
        per_batch = max(1, BATCH_BYTES // (4 * max(1, snapshot.features.shape[1]) + 64))
        for start in range(0, len(missing), per_batch):
            chunk = missing[start:start + per_batch]
            # upsert, not insert: a sync cut short may have written part of this chunk already
            c.upsert(name, [{"sha": sha, "vec": snapshot.features[first[sha]]} for sha in chunk])
            if progress:
                progress(min(start + per_batch, len(missing)), len(missing))
        report.inserted = len(missing)
        if missing or gone:
            c.flush(name)
        self._ensure_index(name, metric, report.index_type)
        c.alter_collection_properties(name, properties={DIGEST_PROPERTY: snapshot.content_digest})   # the commit
        self._drop_stale(name, collection_family(self.prefix, snapshot.extractor_key), metric)
        return report

    def _create(self, name: str, dim: int, metric: str, index_type: str) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("sha", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("vec", DataType.FLOAT_VECTOR, dim=dim)
        self.client.create_collection(name, schema=schema, index_params=self._index_params(metric, index_type))

    def _index_params(self, metric: str, index_type: str):
        params = self.client.prepare_index_params()
        params.add_index(field_name="vec", index_type=index_type, metric_type=MILVUS_METRICS[metric],
                         params=HNSW_PARAMS if index_type == "HNSW" else {})
        return params

    def _ensure_index(self, name: str, metric: str, index_type: str) -> None:
        """Rebuild the vector index when the collection has grown past (or shrunk below) the switch."""
        c = self.client
        current = (c.describe_index(name, "vec") or {}).get("index_type")
        if current != index_type:
            c.release_collection(name)
            if current:
                c.drop_index(name, "vec")
            c.create_index(name, self._index_params(metric, index_type))
        c.load_collection(name)
        self._index_types[name] = index_type

    def _all_keys(self, name: str) -> set[str]:
        it = self.client.query_iterator(name, batch_size=10_000, output_fields=["sha"])
        keys: set[str] = set()
        try:
            while batch := it.next():
                keys.update(row["sha"] for row in batch)
        finally:
            it.close()
        return keys

    def _drop_stale(self, name: str, family: str, metric: str) -> None:
        """Collections of the same data and extractor under other weights can never be searched
        again; dropping them is housekeeping, so a failure is logged and the sync stands."""
        for other in self.client.list_collections():
            if other != name and other.startswith(family) and other.endswith(f"_{metric}"):
                try:
                    self.client.drop_collection(other)
                except Exception as err:
                    log.warning("could not drop the stale Milvus collection %s: %s", other, _reason(err))

    # ------------------------------------------------------------------ search
    def search(self, snapshot: Snapshot, queries: np.ndarray, k: int,
               metric: str = "euclidean") -> tuple[np.ndarray, np.ndarray]:
        """(positions, distances), each (Q, min(k, N)), ranked like :func:`search.top_k`."""
        self.sync(snapshot, metric)
        queries = np.atleast_2d(np.asarray(queries, np.float32))
        n = len(snapshot.entries)
        kk = min(max(int(k), 0), n)
        if kk > MAX_TOP_K:
            raise MilvusError(f"Milvus returns at most {MAX_TOP_K:,} results; ask for fewer (k={k})")
        positions = np.zeros((len(queries), kk), np.int64)
        distances = np.zeros((len(queries), kk), np.float32)
        if kk == 0:
            return positions, distances
        rows_of = snapshot.rows_by_sha
        name = collection_name(self.prefix, snapshot.extractor_key, metric)
        for row, query in enumerate(queries):
            positions[row], distances[row] = self._one(name, snapshot, rows_of, query, kk, metric)
        return positions, distances

    def _one(self, name: str, snapshot: Snapshot, rows_of: dict, query: np.ndarray, k: int,
             metric: str) -> tuple[np.ndarray, np.ndarray]:
        """Ask for more candidates than k until the k-th exact distance is clear of the last one
        returned: what Milvus did not return is then farther, and ties at the cut are all in."""
        distinct = len(rows_of)
        limit = min(distinct, MAX_TOP_K, 2 * k + 16)
        while True:
            try:
                hits = self.client.search(name, data=[query], limit=limit, anns_field="vec", output_fields=["sha"],
                                          search_params=self._search_params(name, metric, limit))[0]
            except Exception as err:
                raise MilvusError(f"Milvus at {self.uri} refused a search of {name}: {_reason(err)}") from None
            candidates = np.array([p for hit in hits for p in rows_of.get(hit.id, ())], np.int64)
            ranked, exact = rank_exactly(query, snapshot.features, candidates, metric)
            if limit >= min(distinct, MAX_TOP_K) or len(ranked) < k:
                break
            if exact[-1] > exact[k - 1] + rounding_margin(metric, float(exact[-1])):
                break
            limit = min(distinct, MAX_TOP_K, limit * 4)
        return ranked[:k], exact[:k].astype(np.float32)

    def _search_params(self, name: str, metric: str, limit: int) -> dict:
        params = {"ef": max(HNSW_EF, limit)} if self._index_types.get(name) == "HNSW" else {}
        return {"metric_type": MILVUS_METRICS[metric], "params": params}

    def close(self) -> None:
        self.client.close()


def _milvus_metric(metric: str) -> str:
    if metric not in MILVUS_METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from {', '.join(MILVUS_METRICS)}")
    return MILVUS_METRICS[metric]


def _reason(err: Exception) -> str:
    text = str(getattr(err, "message", "") or err).strip().splitlines()
    return text[0] if text else type(err).__name__
