"""The project's benchmark targets and the pass / miss check of a result document against them."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    name: str
    path: tuple            # keys into the result document
    op: str                # "<=", ">=", "<", "==", ">"
    limit: float
    unit: str = ""
    full_only: bool = False   # a 10-epoch training figure: not comparable under --quick
    against: tuple | None = None   # compare to another figure of the document instead of ``limit``
    against_label: str = "LeNet"   # what that figure is, in the table


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
    Target("shipped scratch on styles", ("robustness", "styles", "scratch"), ">=", 0.97),
    *(Target(f"shipped {model} on {name}", ("robustness", name, model), ">=", 0.95)
      for name in ("paper", "paper_table") for model in ("scratch", "finetuned", "lenet")),
    *(Target(f"best model on {name}", ("robustness", name, "best"), ">=", 0.97) for name in ("paper", "paper_table")),
    *(Target(f"retrieval precision@4, {name} queries", ("retrieval", "precision_at_4", name, "overall"), ">=", 0.95)
      for name in ("fonts", "styles", "paper", "paper_table")),
    Target("novelty AUROC, 3-9 vs 0-2 (best model)", ("novelty", "best", "auroc_knn"), ">=", 0.97),
    Target("novelty AUROC, 3-9 vs 0-2 (the app's verdict)", ("novelty", "set", "auroc"), ">=", 0.97),
    *(Target(f"genuine 0-2 rejected, {name} (the app's verdict)", ("novelty", "set", "rejected", name), "<=", 0.03)
      for name in ("validation", "writers", "fonts", "canvas")),
    Target("3-9 rejected (the app's verdict)", ("novelty", "set", "rejected_3_9"), ">=", 0.90),
    *(Target(f"{name} rejected (the app's verdict)", ("novelty", "set", "rejected", name), ">=", 0.95)
      for name in ("letters", "scribbles", "shapes")),
    Target("looks_like right on rejected 3-9", ("novelty", "looks_like", "right"), ">=", 0.90),
    Target("probe: 2 models x 4 transforms x 25 steps p50", ("novelty", "probe_ms", "p50"), "<=", 300, "ms"),
    Target("preprocess a 12 MP phone photo p50", ("preprocess_ms", "phone_12mp", "p50"), "<=", 60, "ms"),
    Target("classify in process p50", ("classify_ms", "in_process", "p50"), "<=", 20, "ms"),
    # issue 20: decode + preprocess + every model of the set, served on LiteRT
    Target("classify in process p50, every model on LiteRT", ("classify_ms", "in_process", "p50"), "<=", 2.5, "ms"),
    Target("classify over HTTP p50", ("classify_ms", "http", "p50"), "<=", 150, "ms"),
    Target("8 concurrent clients p95", ("classify_ms", "concurrent8", "p95"), "<=", 1000, "ms"),
    Target("8 concurrent clients errors", ("classify_ms", "concurrent8", "errors"), "==", 0),
    Target("retrieval query p50 (shipped DB)", ("retrieval", "query_ms", "shipped", "p50"), "<=", 10, "ms"),
    Target("retrieval vs naive", ("retrieval", "naive_ratio"), ">=", 100, "x"),
    Target("indexing rate", ("retrieval", "index_images_per_s"), ">=", 200, "img/s"),
    Target("re-index, nothing changed", ("retrieval", "reindex_unchanged_s"), "<", 1, "s"),
    Target("retrieval precision@4 (worst class)", ("retrieval", "precision_at_4", "min_class"), ">=", 0.95),
    Target("Milvus top-4 equals numpy (shipped DB)", ("retrieval", "milvus_parity", "same_fraction"), "==", 1.0),
    Target("stroke to answer on screen, Chromium p50", ("browser", "stroke_ms", "p50"), "<=", 300, "ms"),
    Target("phone: verdict in view after a stroke", ("browser", "phone_verdict_in_view"), "==", 1.0),
    # issue 20: a classroom on 2 cores; the Gradio figures against the no-op app of the same run
    Target("REST /api/v1/classify, one client p50", ("classroom", "rest", "one_client", "p50"), "<=", 15, "ms"),
    Target("REST, 30 clients: throughput", ("classroom", "rest", "throughput_rps"), ">=", 200, "req/s", full_only=True),
    Target("REST, 30 clients: p95", ("classroom", "rest", "p95"), "<=", 300, "ms", full_only=True),
    Target("REST under load: errors", ("classroom", "rest", "errors"), "==", 0),
    Target("REST under load: mixed-up answers", ("classroom", "rest", "mixed_up"), "==", 0),
    Target("gradio_client /classify, 30 clients: throughput vs no-op", ("classroom", "gradio", "throughput_ratio"),
           ">=", 1.5, "x", full_only=True),
    Target("gradio_client /classify, 30 clients: p95 vs no-op", ("classroom", "gradio", "app", "p95"), "<=", 0,
           full_only=True, against=("classroom", "gradio", "noop", "p95"), against_label="the no-op's"),
    Target("gradio_client /classify under load: errors", ("classroom", "gradio", "app", "errors"), "==", 0),
    Target("classroom scenario, 30 students: p95", ("classroom", "classroom", "app", "p95"), "<=", 1000, "ms",
           full_only=True),
    Target("classroom scenario: errors", ("classroom", "classroom", "app", "errors"), "==", 0),
    Target("uploads then runs: disk peak within CVDEMO_CACHE_MB", ("upkeep", "disk_within_bound"), "==", True),
    Target("uploads then runs: runs/ peak within CVDEMO_MAX_RUNS", ("upkeep", "runs_peak"), "<=", 0,
           against=("upkeep", "max_runs_bound"), against_label="CVDEMO_MAX_RUNS"),
    Target("uploads: memory growth after warm-up", ("upkeep", "rss_growth_uploads_mb"), "<=", 50, "MB",
           full_only=True),
    Target("runs: memory growth once the kept model sets are loaded", ("upkeep", "rss_growth_runs_after_settling_mb"),
           "<=", 50, "MB", full_only=True),
    Target("uploads then runs: errors", ("upkeep", "errors"), "==", 0),
    Target("teach a new class from 15 examples: both models", ("teach", "seconds"), "<=", 15, "s"),
    *(t for model in ("scratch", "finetuned") for t in (
        Target(f"taught {model}: held-out 3s (worst of other hands, MNIST)", ("teach", "models", model, "held_out_min"),
               ">=", 0.9),
        Target(f"taught {model}: val accuracy on 0/1/2", ("teach", "models", model, "val_accuracy"), ">=", 0.99),
        Target(f"taught {model}: worst robustness set", ("teach", "models", model, "robustness_min"), ">=", 0.95))),
    *(t for model in ("scratch", "finetuned") for t in (
        Target(f"corrected {model}: the given misread 2s it was taught", ("teach", "correction", "models", model, "corrected_after"),
               ">=", 1.0),
        Target(f"corrected {model}: their misread neighbours gain", ("teach", "correction", "models", model,
                                                                     "neighbours_gain"), ">", 0.0),
        Target(f"corrected {model}: val accuracy on 0/1/2", ("teach", "correction", "models", model, "val_accuracy"),
               ">=", 0.995))),
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
        shown = (f"{target.op} {target.against_label}" if target.against else f"{target.op} {target.limit:g} {target.unit}".strip())
        if value is None or limit is None or not isinstance(value, (int, float)):
            status = "n/a"
        elif quick and target.full_only:
            status = "n/a (quick)"
        else:
            status = "pass" if _OPS[target.op](value, limit) else "miss"
        rows.append({"name": target.name, "value": value, "target": shown, "status": status})
    return rows
