"""Benchmark section on retrieval: indexing rate, query latency, precision@4 on held-out and
other-source queries, the naive way, Milvus parity, and search scaling on synthetic clustered vectors."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from cvdemo import config

from .milvus import milvus_parity
from .options import BenchError, BenchOptions, Tick, _timed, summarize

SYNTHETIC_CLUSTER = 100          # vectors per cluster in the synthetic databases


def _synthetic_vectors(rng, n: int, dim: int, centres: np.ndarray) -> np.ndarray:
    """(n, dim) float32 drawn around ``centres``: clustered like real image embeddings (images of
    one kind lie close together), not uniform noise, where every neighbour is nearly as far as
    any other and no approximate index can tell them apart."""
    which = rng.integers(0, len(centres), n)
    return (centres[which] + 0.5 * rng.standard_normal((n, dim))).astype(np.float32)


def bench_synthetic(dim: int, numpy_sizes, hnsw_sizes, flat_sizes, n_queries: int,
                    tick: Tick = lambda s: None, seed: int = config.SEED, milvus_sizes=(),
                    milvus_queries: int = 10, workdir: Path | None = None) -> dict:
    """Search-only latency of the retrieval engine on random clustered (N, dim) databases:
    exact numpy ``top_k``, FAISS (``FaissSearch``: HNSW approximate, flat exact) and Milvus Lite
    (``MilvusSearch``, in ``workdir``) when installed."""
    from cvdemo.retrieval import FaissSearch, faiss_available, milvus_available, top_k

    from .milvus import SKIPPED, milvus_synthetic

    rng = np.random.default_rng(seed)
    sizes = sorted(set(numpy_sizes) | set(hnsw_sizes) | set(flat_sizes) | set(milvus_sizes))
    out: dict = {}
    for n in sizes:
        centres = rng.standard_normal((max(1, n // SYNTHETIC_CLUSTER), dim))
        features = _synthetic_vectors(rng, n, dim, centres)
        queries = _synthetic_vectors(rng, n_queries, dim, centres)   # new points, not database rows
        if n in numpy_sizes:
            sq = np.einsum("nd,nd->n", features, features)
            it = iter(range(10 ** 9))
            out[str(n)] = {**summarize(_timed(lambda: top_k(queries[next(it) % n_queries], features, 4,
                                                             sq_norms=sq), n_queries)),
                           "backend": "numpy exact", "vectors": n}
            tick(f"numpy {n:,}")
        for kind, wanted in (("hnsw", hnsw_sizes), ("flat", flat_sizes)):
            if n not in wanted:
                continue
            if not faiss_available():
                out[f"faiss_{kind}_{n}"] = {"skipped": "faiss-cpu is not installed"}
                continue
            t0 = time.perf_counter()
            search = FaissSearch(features, "euclidean", kind)
            build = time.perf_counter() - t0
            it = iter(range(10 ** 9))
            entry = {**summarize(_timed(lambda: search.search(queries[next(it) % n_queries][None], 4), n_queries)),
                     "backend": f"faiss {kind}", "vectors": n, "build_s": round(build, 2)}
            if kind == "hnsw":          # approximate: how many of the exact top 4 it finds
                sample = queries[: min(10, n_queries)]
                exact, _ = top_k(sample, features, 4)
                found, _ = search.search(sample, 4)
                entry["recall_at_4"] = round(float(np.mean([len(set(a) & set(b)) / 4
                                                            for a, b in zip(exact, found)])), 3)
            out[f"faiss_{kind}_{n}"] = entry
            search = None
            tick(f"faiss {kind} {n:,}")
        if n in milvus_sizes:
            if not milvus_available() or workdir is None:
                out[f"milvus_{n}"] = {"skipped": SKIPPED if workdir is not None else "no working folder"}
            else:
                try:
                    out[f"milvus_{n}"] = milvus_synthetic(features, queries, workdir, milvus_queries)
                except Exception as err:      # one engine failing leaves the other figures standing
                    out[f"milvus_{n}"] = {"skipped": f"Milvus Lite failed: {type(err).__name__}: {err}"[:300]}
                tick(f"milvus lite {n:,}")
        features = None         # free a large matrix before the next size
    return out


def bench_retrieval(opts: BenchOptions, workdir: Path, tick: Tick) -> dict:
    """Indexing rate on the shipped database into temporary indexes, query latency end to end
    and search-only, precision@4 on the held-out queries, the naive way, synthetic scaling."""
    from cvdemo.images import preprocess
    from cvdemo.retrieval import FeatureIndex, labelled_queries, top_k

    database = Path(opts.database)
    if not database.is_dir():
        raise BenchError(f"no retrieval database at {database} (python -m cvdemo database writes it)")
    rates, reindex = [], []
    index = None
    for attempt in range(opts.index_repeats):
        index = FeatureIndex(database, None, Path(opts.checkpoints), index_dir=workdir / f"index-{attempt}")
        _ = index.extractor                  # build and trace outside the timing
        cold = index.update()
        if not cold.total:
            raise BenchError(f"{database} has no readable images")
        rates.append(cold.total / cold.seconds)
        reindex.append(index.update().seconds)
        tick("indexing")
    snap = index.snapshot
    try:
        queries = [path for path, _ in labelled_queries(Path(opts.queries))]
    except FileNotFoundError:
        queries = [database / e.path for e in snap.entries[:: max(1, len(snap) // 20)]]
    vectors = [index.query_features(q)[1] for q in queries[:50]]
    it = iter(range(10 ** 9))
    end_to_end = summarize(_timed(lambda: index.search(queries[next(it) % len(queries)], 4, max_age=3600),
                                  opts.query_repeats))
    it = iter(range(10 ** 9))
    search_only = summarize(_timed(lambda: snap.search(vectors[next(it) % len(vectors)][None], 4),
                                   opts.query_repeats))
    tick("queries")
    precision = _precision(index, opts, workdir)

    def naive(query):
        _, vector = index.query_features(query)
        images = np.stack([preprocess(database / e.path, "digits") for e in snap.entries])
        top_k(vector[None], index.features_of(images), 4)

    it = iter(range(10 ** 9))
    naive_ms = summarize(_timed(lambda: naive(queries[next(it) % len(queries)]), opts.naive_queries))
    tick("naive retrieval")
    dim = int(snap.features.shape[1])
    query_ms = {"shipped": {**end_to_end, "vectors": len(snap), "what": "end to end: preprocess + extract + search"},
                "shipped_search_only": {**search_only, "vectors": len(snap)}}
    parity_queries = list(queries) + [path for path, _ in labelled_queries(workdir / "eval_queries")]
    milvus = milvus_parity(index, parity_queries, workdir, tick)
    query_ms.update(bench_synthetic(dim, opts.numpy_sizes, opts.hnsw_sizes, opts.flat_sizes,
                                    opts.synthetic_queries, tick, milvus_sizes=opts.milvus_sizes,
                                    milvus_queries=opts.milvus_queries, workdir=workdir))
    rate = summarize(rates, scale=1.0, digits=1)
    return {"extractor": index.extractor_name, "dim": dim, "database_size": len(snap),
            "query_ms": query_ms,
            "index_images_per_s": rate["p50"], "index_images_per_s_min": rate["min"],
            "index_images_per_s_max": rate["max"],
            "reindex_unchanged_s": summarize(reindex, scale=1.0, digits=4)["p50"],
            "naive_query_ms": naive_ms,
            "naive_ratio": round(naive_ms["p50"] / end_to_end["p50"], 1),
            "precision_at_4": precision, "milvus_parity": milvus}


def _precision(index, opts: BenchOptions, workdir: Path) -> dict:
    """precision@4 on every held-out MNIST digit (the target figure), on the shipped query_images/,
    and on queries from other sources than the database's MNIST (other writers, typed fonts)."""
    from cvdemo.database import write_eval_queries
    from cvdemo.retrieval import evaluate
    from cvdemo.testsets import write_fonts, write_paper, write_paper_table, write_styles, write_writers

    held_out = write_eval_queries(workdir / "eval_queries")
    scores = evaluate(index, held_out, 4)
    precision = {"overall": round(scores["overall"]["precision_at_k"], 4),
                 "min_class": round(scores["overall"]["min_class_precision_at_k"], 4),
                 "n_queries": scores["n_queries"], "queries": "held-out MNIST (mnist_partition()['query'])"}
    if Path(opts.queries).is_dir():
        shipped = evaluate(index, Path(opts.queries), 4)
        precision["query_images"] = {"overall": round(shipped["overall"]["precision_at_k"], 4),
                                     "min_class": round(shipped["overall"]["min_class_precision_at_k"], 4),
                                     "n_queries": shipped["n_queries"]}
    queries = (("writers", write_writers, range(10)), ("fonts", write_fonts, range(10)),
               ("styles", write_styles, config.SAMPLE_CLASSES),
               ("paper", lambda f, digits: write_paper(f, digits, per_class=config.QUERY_RESERVE), range(10)),
               ("paper_table", lambda f, digits: write_paper_table(f, digits, per_class=config.QUERY_RESERVE), range(10)))
    for name, write, digits in queries:
        folder = workdir / f"queries_{name}"
        write(folder, digits=digits)
        other = evaluate(index, folder, 4)
        worst = min(other["per_class"], key=lambda c: other["per_class"][c]["precision_at_k"])
        precision[name] = {"overall": round(other["overall"]["precision_at_k"], 4),
                           "min_class": round(other["overall"]["min_class_precision_at_k"], 4),
                           "worst_class": worst, "n_queries": other["n_queries"]}
    return precision
