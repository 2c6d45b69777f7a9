"""Retrieval quality: precision@k and mean average precision of labelled query folders.

A hit is relevant when its database class is the query's class (compared by ``class_key``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from ..images import ImageError
from .index import FeatureIndex, scan_database
from .library import class_key
from .search import _order, pairwise_distances

Progress = Callable[[int, int], None]


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
