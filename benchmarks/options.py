"""What a benchmark run measures and how often (``FULL`` and ``QUICK``), and the statistics of timings."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cvdemo import config

SECTIONS = ("train", "robustness", "novelty", "preprocess", "classify", "app", "browser", "classroom", "upkeep", "teach", "retrieval")
MODELS = ("lenet", "scratch", "finetuned")
Tick = Callable[[str], None]          # called once per finished step with what comes next


class BenchError(RuntimeError):
    """A measurement that could not be made; ``str(err)`` says why."""


@dataclass(frozen=True)
class BenchOptions:
    """What to measure and how often. ``FULL`` and ``QUICK`` are the two presets."""

    quick: bool = False
    sections: tuple[str, ...] = SECTIONS
    epochs: int = 10
    train_repeats: int = 3
    max_images_per_class: int | None = None
    classify_repeats: int = 200
    http_requests: int = 60
    concurrent_clients: int = 8
    requests_per_client: int = 10
    cold_starts: int = 3
    browser_inputs: int = 15        # strokes, and uploads, timed in Chromium
    classroom_clients: int = 30     # the classroom section: clients (REST, gradio_client) and students
    classroom_seconds: float = 60.0
    upkeep_uploads: int = 2000      # the upkeep section: distinct uploads, then training runs
    upkeep_runs: int = 20
    index_repeats: int = 3
    query_repeats: int = 200
    naive_queries: int = 3
    numpy_sizes: tuple[int, ...] = (1_000, 10_000, 100_000, 1_000_000)
    hnsw_sizes: tuple[int, ...] = (10_000, 100_000)     # HNSW build: ~80 s for 100k on 2 busy cores
    flat_sizes: tuple[int, ...] = (100_000, 1_000_000)
    milvus_sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)   # Milvus Lite: ~2 min to load 1M
    synthetic_queries: int = 50
    milvus_queries: int = 10          # Milvus Lite answers a 1M query in about a second
    checkpoints: Path = config.CHECKPOINT_DIR
    data: Path = config.SAMPLE_DATA_DIR
    database: Path = config.DATABASE_DIR
    queries: Path = config.QUERY_DIR


FULL = BenchOptions()
QUICK = BenchOptions(quick=True, epochs=2, train_repeats=1, max_images_per_class=120, classify_repeats=40,
                     http_requests=15, requests_per_client=3, cold_starts=1, browser_inputs=6,
                     classroom_clients=6, classroom_seconds=5.0, upkeep_uploads=60, upkeep_runs=3, index_repeats=1,
                     query_repeats=40, naive_queries=1, numpy_sizes=(1_000, 10_000), hnsw_sizes=(10_000,),
                     flat_sizes=(), milvus_sizes=(10_000,), synthetic_queries=20, milvus_queries=5)


def percentile(values, q: float) -> float:
    """The q-th percentile (0-100, linear interpolation) of a non-empty sequence."""
    values = np.asarray(list(values), np.float64)
    if values.size == 0:
        raise ValueError("no values")
    return float(np.percentile(values, q))


def summarize(seconds, scale: float = 1000.0, digits: int = 3) -> dict:
    """p50/p95/min/max/mean of timings in seconds, times ``scale`` (ms by default), and n."""
    values = np.asarray(list(seconds), np.float64) * scale
    if values.size == 0:
        raise ValueError("no timings")
    return {"p50": round(percentile(values, 50), digits), "p95": round(percentile(values, 95), digits),
            "min": round(float(values.min()), digits), "max": round(float(values.max()), digits),
            "mean": round(float(values.mean()), digits), "n": int(values.size)}


def _timed(fn: Callable[[], Any], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out
