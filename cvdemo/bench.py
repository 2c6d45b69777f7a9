"""Benchmark: ``python -m cvdemo bench`` measures training, classification, retrieval and the app.

Every figure is measured on this machine in one run, as the median over repeats with min and
max, and is printed beside the project's target (from the performance issue) with pass/miss.
Runs the app as a subprocess and times it over HTTP through ``scripts/http_probe.py`` (which
uses ``gradio_client``), another subprocess: never imports Gradio or its client.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import config

SECTIONS = ("train", "robustness", "classify", "app", "retrieval")
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
    index_repeats: int = 3
    query_repeats: int = 200
    naive_queries: int = 3
    numpy_sizes: tuple[int, ...] = (1_000, 10_000, 100_000, 1_000_000)
    hnsw_sizes: tuple[int, ...] = (10_000, 100_000)     # HNSW build: ~80 s for 100k on 2 busy cores
    flat_sizes: tuple[int, ...] = (100_000, 1_000_000)
    synthetic_queries: int = 50
    checkpoints: Path = config.CHECKPOINT_DIR
    data: Path = config.SAMPLE_DATA_DIR
    database: Path = config.DATABASE_DIR
    queries: Path = config.QUERY_DIR


FULL = BenchOptions()
QUICK = BenchOptions(quick=True, epochs=2, train_repeats=1, max_images_per_class=120, classify_repeats=40,
                     http_requests=15, requests_per_client=3, cold_starts=1, index_repeats=1,
                     query_repeats=40, naive_queries=1, numpy_sizes=(1_000, 10_000), hnsw_sizes=(10_000,),
                     flat_sizes=(), synthetic_queries=20)


# ----------------------------------------------------------------------------- statistics

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


# ----------------------------------------------------------------------------- machine

def machine_info() -> dict:
    """Cores, CPU model, RAM, load, library versions and the date: where the figures came from."""
    from importlib.metadata import PackageNotFoundError, version

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gb = round(int(line.split()[1]) / 1024 ** 2, 1)
    except OSError:
        pass
    versions = {"python": platform.python_version()}
    for package in ("tensorflow-cpu", "tensorflow", "keras", "numpy", "gradio", "gradio_client",
                    "scikit-learn", "Pillow", "faiss-cpu"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": usable, "ram_gb": ram_gb,
            "platform": platform.platform(), "versions": versions,
            "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
            "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds")}


# ----------------------------------------------------------------------------- training

def bench_train(opts: BenchOptions, tick: Tick) -> dict:
    """Wall time of ``fit_*`` (build, epochs, validation) and val accuracy of each model."""
    import keras

    from .config import FinetuneConfig, TrainConfig
    from .data import ensure_sample_dataset
    from .train import fit_classifier, fit_finetuned, prepare

    data = Path(opts.data)
    if data.resolve() == config.SAMPLE_DATA_DIR.resolve():
        ensure_sample_dataset(data)
    cfg = TrainConfig(epochs=opts.epochs, max_images_per_class=opts.max_images_per_class)
    started = time.perf_counter()
    prepared = prepare(data, cfg)
    result: dict = {"_data": {"prepare_s": round(time.perf_counter() - started, 2),
                              "n_train": int(len(prepared.train_idx)), "n_val": int(len(prepared.val_idx)),
                              "epochs": opts.epochs, "repeats": opts.train_repeats}}
    for name in MODELS:
        walls, fits, accs = [], [], []
        try:
            for _ in range(opts.train_repeats):
                keras.backend.clear_session()
                t0 = time.perf_counter()
                if name == "finetuned":
                    trained = fit_finetuned(prepared, cfg, FinetuneConfig(), checkpoints=Path(opts.checkpoints))
                else:
                    trained = fit_classifier(name, prepared, cfg)
                walls.append(time.perf_counter() - t0)
                fits.append(trained.meta["train_seconds"])
                accs.append(trained.meta["val_accuracy"])
                del trained
                tick(f"training {name}")
        except Exception as err:          # e.g. no digits backbone: report it, measure the rest
            result[name] = {"error": f"{type(err).__name__}: {err}"}
            continue
        stats = summarize(walls, scale=1.0, digits=2)
        result[name] = {"seconds": stats["p50"], "min_s": stats["min"], "max_s": stats["max"],
                        "fit_seconds": round(float(np.median(fits)), 2),
                        "val_accuracy": round(float(np.median(accs)), 5),
                        "val_accuracy_min": round(float(min(accs)), 5), "epochs": opts.epochs}
    return result


def bench_robustness(checkpoints: Path, workdir: Path) -> dict:
    """Accuracy of the shipped checkpoints on the out-of-distribution sets of ``cvdemo.testsets``."""
    from . import checkpoints as ckpt
    from .data import load_arrays, scan_folder
    from .evaluate import evaluate_model
    from .testsets import write_testsets

    loaded = ckpt.load_all(Path(checkpoints))
    if not loaded:
        raise BenchError(f"no checkpoints in {checkpoints}")
    folders = write_testsets(workdir / "testsets")
    result = {}
    for set_name, folder in folders.items():
        dataset = scan_folder(folder)
        arrays_by_profile: dict = {}
        scores = {"n": len(dataset.paths)}
        for name, checkpoint in loaded.items():
            if checkpoint.class_names != dataset.class_names:
                continue
            key = (checkpoint.profile, checkpoint.input_shape)
            if key not in arrays_by_profile:
                arrays_by_profile[key] = load_arrays(dataset, checkpoint.profile)
            arrays = arrays_by_profile[key]
            scores[name] = round(evaluate_model(checkpoint.model, arrays.images, arrays.labels,
                                                arrays.class_names)["accuracy"], 5)
        result[set_name] = scores
    return result


# ----------------------------------------------------------------------------- classification

def write_sketch(path: Path, digit: int = 2, seed: int = config.SEED) -> Path:
    """One digit drawn like a sketchpad user (RGBA canvas, transparent background) as a PNG."""
    from .testsets import draw_canvas

    image = draw_canvas(digit, np.random.default_rng(seed), canvas=280, brush=18, scale=200)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def bench_classify(checkpoints: Path, image: Path, repeats: int, workdir: Path) -> dict:
    """``Service.classify`` on one file: decode -> preprocess -> every model of the shipped set."""
    from .service import Service

    service = Service(checkpoints=Path(checkpoints), runs=workdir / "runs", warm=True)
    first = service.classify(str(image))            # warm (models are traced at load already)
    per_model: dict[str, list[float]] = {name: [] for name in first.models}

    def once():
        answer = service.classify(str(image))
        for name, model_answer in answer.models.items():
            per_model[name].append(model_answer.ms / 1000)

    summary = summarize(_timed(once, repeats))
    summary["models"] = list(first.models)
    summary["per_model_p50"] = {name: summarize(v)["p50"] for name, v in per_model.items()}
    return summary


# ----------------------------------------------------------------------------- the app

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def peak_rss_mb(pid: int) -> float | None:
    """Peak resident memory (VmHWM) of a live process, in MB (Linux /proc; None elsewhere)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def _tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def _probe(url: str, image: Path, app: subprocess.Popen, log: Path, workdir: Path, requests: int = 0,
           clients: int = 0, per_client: int = 0, timeout: float = 300) -> dict:
    """Run ``scripts/http_probe.py`` against the app; its JSON document (see that script).

    Raises BenchError with the app's log when the app exits or never answers.
    """
    out, err = workdir / "probe.json", workdir / "probe.err"
    command = [sys.executable, str(config.ROOT / "scripts" / "http_probe.py"), "--url", url, "--image",
               str(image), "--timeout", str(timeout), "--requests", str(requests), "--clients", str(clients),
               "--per-client", str(per_client)]
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        probe = subprocess.Popen(command, cwd=config.ROOT, stdout=stdout, stderr=stderr)
    try:
        while probe.poll() is None:
            if app.poll() is not None:
                raise BenchError(f"app.py exited with code {app.returncode}:\n{_tail(log)}")
            time.sleep(0.1)
    finally:
        if probe.poll() is None:
            probe.kill()
            probe.wait()
    if probe.returncode != 0:
        raise BenchError(f"{_tail(err, 3)}\n{_tail(log)}")
    return json.loads(out.read_text())


def _concurrent(probed: dict, clients: int, per_client: int) -> dict:
    latencies, errors, wall = probed["latencies"], probed["errors"], probed["wall"]
    result = summarize(latencies) if latencies else {"p50": None, "p95": None}
    result.update({"errors": len(errors), "clients": clients, "requests": clients * per_client,
                   "throughput_rps": round(len(latencies) / wall, 2) if wall else None})
    if errors:
        result["first_error"] = errors[0][:300]
    return result


def bench_app(opts: BenchOptions, image: Path, workdir: Path, tick: Tick) -> dict:
    """``python app.py`` in a subprocess: time to the first answered /classify, HTTP latency
    (sequential and concurrent clients, on the last start) and the process's peak RSS."""
    colds, rss, result = [], [], {}
    for attempt in range(opts.cold_starts):
        port = _free_port()
        env = dict(os.environ, GRADIO_SERVER_PORT=str(port), GRADIO_SERVER_NAME="127.0.0.1",
                   CVDEMO_CHECKPOINTS=str(Path(opts.checkpoints).resolve()), GRADIO_ANALYTICS_ENABLED="False",
                   HF_HUB_OFFLINE="1", TF_CPP_MIN_LOG_LEVEL="2")
        log = workdir / f"app-{attempt}.log"
        last = attempt == opts.cold_starts - 1
        with open(log, "wb") as out:
            started = time.time()
            proc = subprocess.Popen([sys.executable, str(config.ROOT / "app.py")], cwd=config.ROOT, env=env,
                                    stdout=out, stderr=subprocess.STDOUT)
        try:
            probed = _probe(f"http://127.0.0.1:{port}/", image, proc, log, workdir,
                            requests=opts.http_requests if last else 0,
                            clients=opts.concurrent_clients if last else 0, per_client=opts.requests_per_client)
            colds.append(probed["first_answer_at"] - started)
            tick("app started")
            if last:
                result["http"] = summarize(probed["sequential"])
                tick("HTTP latency")
                result[f"concurrent{opts.concurrent_clients}"] = _concurrent(
                    probed["concurrent"], opts.concurrent_clients, opts.requests_per_client)
                tick("concurrent clients")
            rss.append(peak_rss_mb(proc.pid))
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    cold = summarize(colds, scale=1.0, digits=2)
    rss_known = [r for r in rss if r is not None]
    result["cold_start"] = cold
    result["rss_mb"] = max(rss_known) if rss_known else None
    return result


# ----------------------------------------------------------------------------- retrieval

SYNTHETIC_CLUSTER = 100          # vectors per cluster in the synthetic databases


def _synthetic_vectors(rng, n: int, dim: int, centres: np.ndarray) -> np.ndarray:
    """(n, dim) float32 drawn around ``centres``: clustered like real image embeddings (images of
    one kind lie close together), not uniform noise, where every neighbour is nearly as far as
    any other and no approximate index can tell them apart."""
    which = rng.integers(0, len(centres), n)
    return (centres[which] + 0.5 * rng.standard_normal((n, dim))).astype(np.float32)


def bench_synthetic(dim: int, numpy_sizes, hnsw_sizes, flat_sizes, n_queries: int,
                    tick: Tick = lambda s: None, seed: int = config.SEED) -> dict:
    """Search-only latency of the retrieval engine on random clustered (N, dim) databases:
    exact numpy ``top_k`` and FAISS (``FaissSearch``: HNSW approximate, flat exact) when installed."""
    from .retrieval import FaissSearch, faiss_available, top_k

    rng = np.random.default_rng(seed)
    sizes = sorted(set(numpy_sizes) | set(hnsw_sizes) | set(flat_sizes))
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
            del search
            tick(f"faiss {kind} {n:,}")
        del features
    return out


def bench_retrieval(opts: BenchOptions, workdir: Path, tick: Tick) -> dict:
    """Indexing rate on the shipped database into temporary indexes, query latency end to end
    and search-only, precision@4 on the held-out queries, the naive way, synthetic scaling."""
    from .images import preprocess
    from .retrieval import FeatureIndex, evaluate, labelled_queries, top_k

    database = Path(opts.database)
    if not database.is_dir():
        raise BenchError(f"no retrieval database at {database} (python -m cvdemo database writes it)")
    rates, reindex = [], []
    index = None
    for attempt in range(opts.index_repeats):
        index = FeatureIndex(database, None, Path(opts.checkpoints), index_dir=workdir / f"index-{attempt}")
        index.extractor                      # build and trace outside the timing
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
    # the target figure: all 20 held-out MNIST digits per class (never in any training set or
    # the database); the shipped query_images/ (3 per class + drawn ones) is reported beside it
    from .database import write_eval_queries

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
    # queries from other sources than the database's MNIST: other writers' scans, typed fonts
    from .testsets import write_fonts, write_writers

    for name, write in (("writers", write_writers), ("fonts", write_fonts)):
        folder = workdir / f"queries_{name}"
        write(folder, digits=range(10))
        other = evaluate(index, folder, 4)
        worst = min(other["per_class"], key=lambda c: other["per_class"][c]["precision_at_k"])
        precision[name] = {"overall": round(other["overall"]["precision_at_k"], 4),
                           "min_class": round(other["overall"]["min_class_precision_at_k"], 4),
                           "worst_class": worst, "n_queries": other["n_queries"]}

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
    query_ms.update(bench_synthetic(dim, opts.numpy_sizes, opts.hnsw_sizes, opts.flat_sizes,
                                    opts.synthetic_queries, tick))
    rate = summarize(rates, scale=1.0, digits=1)
    return {"extractor": index.extractor_name, "dim": dim, "database_size": len(snap),
            "query_ms": query_ms,
            "index_images_per_s": rate["p50"], "index_images_per_s_min": rate["min"],
            "index_images_per_s_max": rate["max"],
            "reindex_unchanged_s": summarize(reindex, scale=1.0, digits=4)["p50"],
            "naive_query_ms": naive_ms,
            "naive_ratio": round(naive_ms["p50"] / end_to_end["p50"], 1),
            "precision_at_4": precision}


# ----------------------------------------------------------------------------- targets

@dataclass(frozen=True)
class Target:
    name: str
    path: tuple            # keys into the result document
    op: str                # "<=", ">=", "<", "==", ">"
    limit: float
    unit: str = ""
    full_only: bool = False   # a 10-epoch training figure: not comparable under --quick
    against: tuple | None = None   # compare to another figure of the document instead of ``limit``


TARGETS = (
    Target("scratch: 10 epochs", ("train", "scratch", "seconds"), "<=", 20, "s", full_only=True),
    Target("scratch: val accuracy", ("train", "scratch", "val_accuracy"), ">=", 0.995, full_only=True),
    Target("scratch beats LeNet", ("train", "scratch", "val_accuracy"), ">", 0,
           full_only=True, against=("train", "lenet", "val_accuracy")),
    Target("fine-tuned: 10 epochs", ("train", "finetuned", "seconds"), "<=", 60, "s", full_only=True),
    Target("fine-tuned: val accuracy", ("train", "finetuned", "val_accuracy"), ">=", 0.995, full_only=True),
    Target("fine-tuned beats LeNet", ("train", "finetuned", "val_accuracy"), ">", 0,
           full_only=True, against=("train", "lenet", "val_accuracy")),
    *(Target(f"shipped {model} on {name}", ("robustness", name, model), ">=", 0.97)
      for name in ("writers", "fonts", "canvas") for model in ("scratch", "finetuned")),
    Target("classify in process p50", ("classify_ms", "in_process", "p50"), "<=", 20, "ms"),
    Target("classify over HTTP p50", ("classify_ms", "http", "p50"), "<=", 150, "ms"),
    Target("8 concurrent clients p95", ("classify_ms", "concurrent8", "p95"), "<=", 1000, "ms"),
    Target("8 concurrent clients errors", ("classify_ms", "concurrent8", "errors"), "==", 0),
    Target("retrieval query p50 (shipped DB)", ("retrieval", "query_ms", "shipped", "p50"), "<=", 10, "ms"),
    Target("retrieval vs naive", ("retrieval", "naive_ratio"), ">=", 100, "x"),
    Target("indexing rate", ("retrieval", "index_images_per_s"), ">=", 200, "img/s"),
    Target("re-index, nothing changed", ("retrieval", "reindex_unchanged_s"), "<", 1, "s"),
    Target("retrieval precision@4 (worst class)", ("retrieval", "precision_at_4", "min_class"), ">=", 0.95),
    Target("cold start", ("cold_start_s",), "<=", 20, "s"),
    Target("app peak memory", ("rss_mb",), "<=", 1536, "MB"),
)

_OPS = {"<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b,
        ">": lambda a, b: a > b, "==": lambda a, b: a == b}


def _get(document: dict, path: tuple):
    value = document
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def check_targets(document: dict, quick: bool = False) -> list[dict]:
    """Each target with the measured value and ``status``: pass | miss | n/a (not measured, or
    a 10-epoch figure under --quick)."""
    rows = []
    for target in TARGETS:
        value = _get(document, target.path)
        limit = _get(document, target.against) if target.against else target.limit
        shown = (f"{target.op} LeNet" if target.against else f"{target.op} {target.limit:g} {target.unit}".strip())
        if value is None or limit is None or not isinstance(value, (int, float)):
            status = "n/a"
        elif quick and target.full_only:
            status = "n/a (quick)"
        else:
            status = "pass" if _OPS[target.op](value, limit) else "miss"
        rows.append({"name": target.name, "value": value, "target": shown, "status": status})
    return rows


# ----------------------------------------------------------------------------- the run

def run(opts: BenchOptions = FULL, progress: Callable[[int, int, str], None] | None = None) -> dict:
    """Measure every section of ``opts.sections``; returns the JSON document of the issue (plus
    extra keys: min/max, robustness, targets). A section that fails is reported under ``errors``."""
    steps = {"train": len(MODELS) * opts.train_repeats, "robustness": 1, "classify": 1,
             "app": opts.cold_starts + 2,
             "retrieval": opts.index_repeats + 2 + len(set(opts.numpy_sizes) | set(opts.hnsw_sizes)
                                                        | set(opts.flat_sizes)) + len(opts.hnsw_sizes)
             + len(opts.flat_sizes)}
    total = sum(steps[s] for s in opts.sections)
    done = [0]

    def tick(message: str) -> None:
        done[0] += 1
        if progress:
            progress(min(done[0], total), total, message)

    document: dict = {"machine": machine_info(), "quick": opts.quick,
                      "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()},
                      "train": {}, "classify_ms": {}, "retrieval": {}, "cold_start_s": None, "rss_mb": None}
    errors = {}
    workdir = Path(tempfile.mkdtemp(prefix="cvdemo-bench-"))
    try:
        sketch = write_sketch(workdir / "sketch.png")
        for section in opts.sections:
            before = done[0]
            if progress:
                progress(done[0], total, section)
            try:
                if section == "train":
                    document["train"] = bench_train(opts, tick)
                elif section == "robustness":
                    document["robustness"] = bench_robustness(Path(opts.checkpoints), workdir)
                elif section == "classify":
                    document["classify_ms"]["in_process"] = bench_classify(
                        Path(opts.checkpoints), sketch, opts.classify_repeats, workdir)
                elif section == "app":
                    app = bench_app(opts, sketch, workdir, tick)
                    document["classify_ms"].update({k: v for k, v in app.items() if k not in ("cold_start", "rss_mb")})
                    document["cold_start_s"] = app["cold_start"]["p50"]
                    document["cold_start"] = app["cold_start"]
                    document["rss_mb"] = app["rss_mb"]
                elif section == "retrieval":
                    document["retrieval"] = bench_retrieval(opts, workdir, tick)
            except Exception as err:    # one broken section must not hide the others' figures
                errors[section] = f"{type(err).__name__}: {err}"
            done[0] = before + steps[section]
            if progress:
                progress(done[0], total, section)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    document["machine"]["load_average_end"] = (
        [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None)
    if errors:
        document["errors"] = errors
    document["targets"] = check_targets(document, opts.quick)
    return document


# ----------------------------------------------------------------------------- report

def _fmt(value, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _spread(entry: dict | None, key_lo="min", key_hi="max", digits=1) -> str:
    if not entry or entry.get(key_lo) is None:
        return ""
    return f"{_fmt(entry[key_lo], digits)}–{_fmt(entry[key_hi], digits)}"


def _status(document: dict, name: str) -> str:
    for row in document.get("targets", []):
        if row["name"] == name:
            mark = {"pass": "✅ pass", "miss": "❌ miss"}.get(row["status"], row["status"])
            return f"{row['target']} {mark}"
    return ""


def markdown(document: dict) -> str:
    """The benchmark as Markdown: the machine, then one table of figures with targets."""
    m = document["machine"]
    v = m.get("versions", {})
    lines = ["# cvdemo benchmark", "",
             f"Measured {m['date']} with `python -m cvdemo bench{' --quick' if document.get('quick') else ''}`"
             f" on {m['cpu']}, {m['usable_cores']} usable cores of {m['cores']}, {m['ram_gb']} GB RAM, "
             f"{m['platform']}; Python {v.get('python')}, TensorFlow {v.get('tensorflow-cpu') or v.get('tensorflow')}, "
             f"Keras {v.get('keras')}, Gradio {v.get('gradio')}, FAISS {v.get('faiss-cpu', 'not installed')}. "
             f"Load average {m.get('load_average')} at the start, {m.get('load_average_end')} at the end "
             "(a load above the core count means other work shared the CPU and the timings are pessimistic). "
             f"Models from `{document['options']['checkpoints']}`.", ""]
    if document.get("quick"):
        lines += ["**Quick run** (`--quick`): fewer repeats, "
                  f"{document['options']['epochs']} epochs on at most "
                  f"{document['options']['max_images_per_class']} images per class, small synthetic databases. "
                  "Training figures are not comparable with the 10-epoch targets.", ""]
    lines += ["| Figure | Median | Min–max | Target |", "|---|---:|---:|---|"]
    train = document.get("train", {})
    data = train.get("_data", {})
    for name in MODELS:
        entry = train.get(name)
        if not entry:
            continue
        if "error" in entry:
            lines.append(f"| Train {name} | error: {entry['error']} | | |")
            continue
        title = {"lenet": "LeNet", "scratch": "scratch", "finetuned": "fine-tuned"}[name]
        lines.append(f"| Train {title}, {entry['epochs']} epochs ({data.get('n_train')} train images), s "
                     f"| {_fmt(entry['seconds'])} | {_fmt(entry['min_s'])}–{_fmt(entry['max_s'])} "
                     f"| {_status(document, f'{title}: 10 epochs')} |")
        lines.append(f"| {title} validation accuracy ({data.get('n_val')} images) | {entry['val_accuracy']:.2%} "
                     f"| ≥ {entry['val_accuracy_min']:.2%} | {_status(document, f'{title}: val accuracy')} "
                     f"{_status(document, f'{title} beats LeNet')} |")
    for set_name, scores in document.get("robustness", {}).items():
        for model in ("scratch", "finetuned", "lenet"):
            if model in scores:
                lines.append(f"| Shipped {model} on unseen {set_name} ({scores['n']} images) | {scores[model]:.2%} | "
                             f"| {_status(document, f'shipped {model} on {set_name}')} |")
    c = document.get("classify_ms", {})
    if "in_process" in c:
        e = c["in_process"]
        lines.append(f"| Classify one sketch in process ({' + '.join(e['models'])}), p50 / p95 ms | "
                     f"{_fmt(e['p50'])} / {_fmt(e['p95'])} | {_spread(e)} | "
                     f"{_status(document, 'classify in process p50')} |")
    if "http" in c:
        e = c["http"]
        lines.append(f"| Classify over HTTP (gradio_client, /classify), p50 / p95 ms | "
                     f"{_fmt(e['p50'])} / {_fmt(e['p95'])} | {_spread(e)} | "
                     f"{_status(document, 'classify over HTTP p50')} |")
    if "concurrent8" in c:
        e = c["concurrent8"]
        lines.append(f"| {e['clients']} concurrent clients, p50 / p95 ms, errors, throughput | "
                     f"{_fmt(e['p50'])} / {_fmt(e['p95'])}, {e['errors']} errors, {_fmt(e['throughput_rps'])} req/s "
                     f"| {_spread(e)} | {_status(document, '8 concurrent clients p95')} "
                     f"{_status(document, '8 concurrent clients errors')} |")
    if document.get("cold_start"):
        e = document["cold_start"]
        lines.append(f"| Cold start `python app.py` → first /classify answer, s | {_fmt(e['p50'])} | "
                     f"{_spread(e)} | {_status(document, 'cold start')} |")
    if document.get("rss_mb") is not None:
        lines.append(f"| App peak memory (VmHWM), MB | {_fmt(document['rss_mb'], 0)} | | "
                     f"{_status(document, 'app peak memory')} |")
    r = document.get("retrieval", {})
    if r:
        q = r["query_ms"]
        lines.append(f"| Indexing the shipped database ({r['database_size']} images, {r['extractor']}), img/s | "
                     f"{_fmt(r['index_images_per_s'])} | {_fmt(r['index_images_per_s_min'])}–"
                     f"{_fmt(r['index_images_per_s_max'])} | {_status(document, 'indexing rate')} |")
        lines.append(f"| Re-index with nothing changed, s | {_fmt(r['reindex_unchanged_s'], 3)} | | "
                     f"{_status(document, 're-index, nothing changed')} |")
        s = q["shipped"]
        lines.append(f"| Retrieval query, shipped DB, end to end, p50 / p95 ms | {_fmt(s['p50'], 2)} / "
                     f"{_fmt(s['p95'], 2)} | {_spread(s, digits=2)} | "
                     f"{_status(document, 'retrieval query p50 (shipped DB)')} |")
        s = q["shipped_search_only"]
        lines.append(f"| … of which the search, p50 ms | {_fmt(s['p50'], 3)} | {_spread(s, digits=3)} | |")
        n = r["naive_query_ms"]
        lines.append(f"| Naive query (re-extract the whole DB), ms; speed-up | {_fmt(n['p50'], 0)}; "
                     f"{_fmt(r['naive_ratio'])}× | {_spread(n, digits=0)} | {_status(document, 'retrieval vs naive')} |")
        if r.get("precision_at_4"):
            p = r["precision_at_4"]
            lines.append(f"| Retrieval precision@4 ({p['n_queries']} held-out queries), overall / worst class | "
                         f"{p['overall']:.3f} / {p['min_class']:.3f} | | "
                         f"{_status(document, 'retrieval precision@4 (worst class)')} |")
            if p.get("query_images"):
                shipped = p["query_images"]
                lines.append(f"| … on the shipped query_images/ ({shipped['n_queries']} queries, drawn ones "
                             f"included), overall / worst class | {shipped['overall']:.3f} / "
                             f"{shipped['min_class']:.3f} | | |")
            for name, what in (("writers", "other writers (UCI scans)"), ("fonts", "typed fonts")):
                if p.get(name):
                    other = p[name]
                    lines.append(f"| … queries from {what}, {other['n_queries']}, overall / worst class | "
                                 f"{other['overall']:.3f} / {other['min_class']:.3f} "
                                 f"({other['worst_class'].removesuffix('_digits')}) | | |")
        lines += ["", "## Retrieval scaling (search only, one query, k = 4, "
                  f"{r['dim']}-d vectors; synthetic databases: Gaussian clusters of {SYNTHETIC_CLUSTER})", "",
                  "| Database | Backend | p50 ms | p95 ms | Build s | Recall@4 |", "|---:|---|---:|---:|---:|---:|"]
        rows = [(v2["vectors"], v2.get("backend", "numpy exact") if k != "shipped_search_only"
                 else "numpy exact (shipped)", v2) for k, v2 in q.items() if k != "shipped" and "vectors" in v2]
        for vectors, backend, e in sorted(rows, key=lambda row: (row[1], row[0])):
            lines.append(f"| {vectors:,} | {backend} | {_fmt(e['p50'], 3)} | {_fmt(e['p95'], 3)} | "
                         f"{_fmt(e.get('build_s'))} | {_fmt(e.get('recall_at_4'), 3)} |")
        for k, e in q.items():
            if "skipped" in e:
                lines.append(f"| {k} | skipped: {e['skipped']} | | | | |")
    if document.get("errors"):
        lines += ["", "## Sections that failed", ""]
        lines += [f"- {section}: {message}" for section, message in document["errors"].items()]
    misses = [row["name"] for row in document.get("targets", []) if row["status"] == "miss"]
    lines += ["", f"Targets: {sum(row['status'] == 'pass' for row in document.get('targets', []))} pass, "
              f"{len(misses)} miss" + (f" ({', '.join(misses)})" if misses else "") + "."]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- CLI

def cmd_bench(args) -> int:
    from .checkpoints import atomic_write_bytes
    from .console import CliError, bar, info, print_json

    opts = QUICK if args.quick else FULL
    sections = tuple(s.strip() for s in args.only.split(",")) if args.only else SECTIONS
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        raise CliError(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    opts = replace(opts, sections=sections, checkpoints=Path(args.checkpoints), database=Path(args.database),
                   data=Path(args.data))
    if args.repeats is not None and args.repeats < 1:
        raise CliError("--repeats must be at least 1")
    if args.repeats:
        opts = replace(opts, train_repeats=args.repeats, cold_starts=args.repeats, index_repeats=args.repeats)
    if not Path(opts.checkpoints).is_dir():
        raise CliError(f"{opts.checkpoints} is not a folder of checkpoints")
    with bar(None, "benchmark", "step") as progress:
        def report(done, total, message):
            progress.set_description(f"bench: {message}")
            progress.to(done, total)
        document = run(opts, report)
    text = markdown(document)
    if args.out:
        atomic_write_bytes(Path(args.out), text.encode())
        info(f"wrote {args.out}")
    if args.json:
        print_json(document)
    else:
        sys.stdout.write(text)
    for section, message in document.get("errors", {}).items():
        info(f"error in {section}: {message}")
    return 1 if document.get("errors") else 0


def add_cli(sub) -> None:
    """Register ``python -m cvdemo bench``."""
    p = sub.add_parser("bench", help="measure training, classification, retrieval and the app on this machine")
    p.add_argument("--quick", action="store_true", help="a CI smoke run under ~2 minutes (fewer repeats, "
                   "2 epochs on 120 images per class, small synthetic databases)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--out", default=None, metavar="FILE", help="also write the Markdown table here (BENCHMARKS.md)")
    p.add_argument("--only", default=None, metavar="SECTIONS", help=f"comma-separated subset of {','.join(SECTIONS)}")
    p.add_argument("--repeats", type=int, default=None, help="override training/cold-start/indexing repeats")
    p.add_argument("--checkpoints", default=str(config.CHECKPOINT_DIR), help="the models to serve and evaluate")
    p.add_argument("--data", default=str(config.SAMPLE_DATA_DIR), help="the training dataset")
    p.add_argument("--database", default=str(config.DATABASE_DIR), help="the retrieval database")
    p.set_defaults(handler=cmd_bench)
