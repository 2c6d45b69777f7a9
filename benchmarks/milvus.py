"""Benchmark of the Milvus backend (embedded Milvus Lite): build time, query time and recall@4 on
the synthetic clustered databases beside numpy and FAISS, and top-4 parity with numpy on the
shipped database. Skipped, with the reason, when pymilvus and milvus-lite are not installed."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .options import Tick, _timed, summarize

SKIPPED = "pymilvus and milvus-lite are not installed (requirements-dev.txt)"


def milvus_synthetic(features: np.ndarray, queries: np.ndarray, workdir: Path, n_queries: int) -> dict:
    """One synthetic database through ``MilvusSearch`` as the app uses it: sync (upsert + index
    build), then single-query searches with the exact re-rank; recall@4 against exact numpy."""
    from cvdemo.retrieval import MilvusSearch, Snapshot, top_k
    from cvdemo.retrieval.snapshot import Entry

    n = len(features)
    entries = [Entry(f"{i % 10}/{i:08d}.png", 1, 1, f"{i:064x}") for i in range(n)]
    search = MilvusSearch(str(workdir / f"milvus-synthetic-{n}.db"))
    snap = Snapshot(workdir, f"synthetic@{n}@p0", entries, features, [], search)
    started = time.perf_counter()
    report = search.sync(snap)
    build = time.perf_counter() - started
    it = iter(range(10 ** 9))
    entry = {**summarize(_timed(lambda: search.search(snap, queries[next(it) % len(queries)][None], 4), n_queries)),
             "backend": f"milvus lite {report.index_type.lower()}", "vectors": n, "build_s": round(build, 2)}
    sample = queries[: min(10, len(queries))]
    exact, _ = top_k(sample, features, 4)
    found, _ = search.search(snap, sample, 4)
    entry["recall_at_4"] = round(float(np.mean([len(set(a) & set(b)) / 4 for a, b in zip(exact, found)])), 3)
    # released, not dropped: Milvus Lite takes minutes to drop a 1M collection, and can race its
    # own compaction doing it; the folder goes with the bench's working directory
    search.client.release_collection(report.collection)
    search.close()
    return entry


def milvus_parity(index, query_paths: list[Path], workdir: Path, tick: Tick) -> dict:
    """The shipped database on Milvus Lite: does every query get numpy's top 4, in numpy's order?"""
    from cvdemo.retrieval import MilvusSearch, Snapshot, milvus_available

    if not milvus_available():
        return {"skipped": SKIPPED}
    snap = index.snapshot
    search = MilvusSearch(str(workdir / "milvus-shipped.db"))
    on_milvus = Snapshot(snap.database, snap.extractor_key, snap.entries, snap.features, [], search)
    started = time.perf_counter()
    report = search.sync(on_milvus)
    build = time.perf_counter() - started
    same, differ, seconds = 0, [], []
    for path in query_paths:
        _, vector = index.query_features(path)
        t0 = time.perf_counter()
        got = on_milvus.search(vector[None], 4, backend="milvus")[0]
        seconds.append(time.perf_counter() - t0)
        want = snap.search(vector[None], 4, backend="numpy")[0]
        if [h.path for h in got] == [h.path for h in want]:
            same += 1
        else:
            differ.append(str(path))
    tick("milvus parity")
    search.close()
    return {"n_queries": len(query_paths), "same_top4": same, "same_fraction": round(same / max(1, len(query_paths)), 4),
            "differ": differ[:10], "index_type": report.index_type, "build_s": round(build, 2),
            "query_ms": summarize(seconds), "vectors": len(snap)}
