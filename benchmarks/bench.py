"""The benchmark: ``python -m cvdemo bench`` (or ``python -m benchmarks``) measures training,
classification, retrieval and the app on this machine in one run.

Every figure is the median over repeats with min and max, printed beside the project's target
with pass / miss. The app runs as a subprocess timed over HTTP by ``http_probe.py``, another
subprocess, so neither this tool nor the package imports Gradio or its client.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import shutil
import sys
import tempfile
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

from cvdemo import config
from cvdemo.cli.console import CliError, bar, info, print_json
from cvdemo.fsutil import atomic_write_bytes

from .browser import bench_browser
from .classroom import bench_classroom
from .markdown import markdown
from .models import bench_classify, bench_preprocess, bench_robustness, bench_train, write_sketch
from .novelty import bench_novelty
from .options import FULL, MODELS, QUICK, SECTIONS, BenchOptions, percentile, summarize
from .retrieval import bench_retrieval, bench_synthetic
from .serving import bench_app, peak_rss_mb
from .targets import check_targets
from .teach import bench_correction, bench_teach
from .upkeep import bench_upkeep

__all__ = ["FULL", "QUICK", "SECTIONS", "BenchOptions", "bench_synthetic", "check_targets", "machine_info",
           "markdown", "percentile", "peak_rss_mb", "run", "summarize"]


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


def run(opts: BenchOptions = FULL, progress: Callable[[int, int, str], None] | None = None) -> dict:
    """Measure every section of ``opts.sections``; returns the JSON document of the issue (plus
    extra keys: min/max, robustness, targets). A section that fails is reported under ``errors``."""
    steps = _step_counts(opts)
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
                _measure(section, opts, document, workdir, sketch, tick)
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


def _step_counts(opts: BenchOptions) -> dict[str, int]:
    """How many progress ticks each section makes."""
    sizes = set(opts.numpy_sizes) | set(opts.hnsw_sizes) | set(opts.flat_sizes)
    return {"train": len(MODELS) * opts.train_repeats, "robustness": 1, "novelty": 1, "preprocess": 1, "classify": 1,
            "app": opts.cold_starts + 2, "browser": 2, "classroom": 4, "upkeep": 2, "teach": 1,
            "retrieval": (opts.index_repeats + 2 + len(sizes) + len(opts.hnsw_sizes) + len(opts.flat_sizes)
                          + len(opts.milvus_sizes) + 1)}


def _measure(section: str, opts: BenchOptions, document: dict, workdir: Path, sketch: Path, tick) -> None:
    """Run one section and put its figures into ``document``."""
    if section == "train":
        document["train"] = bench_train(opts, tick)
    elif section == "robustness":
        document["robustness"] = bench_robustness(Path(opts.checkpoints), workdir)
    elif section == "novelty":
        document["novelty"] = bench_novelty(Path(opts.checkpoints), workdir)
    elif section == "preprocess":
        document["preprocess_ms"] = bench_preprocess(workdir, opts.classify_repeats)
    elif section == "classify":
        document["classify_ms"]["in_process"] = bench_classify(
            Path(opts.checkpoints), sketch, opts.classify_repeats, workdir)
    elif section == "app":
        app = bench_app(opts, sketch, workdir, tick)
        document["classify_ms"].update({k: v for k, v in app.items() if k not in ("cold_start", "rss_mb")})
        document["cold_start_s"] = app["cold_start"]["p50"]
        document["cold_start"] = app["cold_start"]
        document["rss_mb"] = app["rss_mb"]
    elif section == "browser":
        document["browser"] = bench_browser(opts, workdir, tick)
    elif section == "classroom":
        document["classroom"] = bench_classroom(opts, workdir, tick)
    elif section == "upkeep":
        document["upkeep"] = bench_upkeep(opts, workdir, tick)
    elif section == "teach":
        document["teach"] = bench_teach(Path(opts.checkpoints), workdir)
        document["teach"]["correction"] = bench_correction(Path(opts.checkpoints), workdir)
    elif section == "retrieval":
        document["retrieval"] = bench_retrieval(opts, workdir, tick)


def _run_command(args) -> int:
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cvdemo bench", description="measure training, classification, "
                                "retrieval and the app on this machine")
    p.add_argument("--quick", action="store_true", help="a CI smoke run under ~2 minutes (fewer repeats, "
                   "2 epochs on 120 images per class, small synthetic databases)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--out", default=None, metavar="FILE", help="also write the Markdown table here (BENCHMARKS.md)")
    p.add_argument("--only", default=None, metavar="SECTIONS", help=f"comma-separated subset of {','.join(SECTIONS)}")
    p.add_argument("--repeats", type=int, default=None, help="override training/cold-start/indexing repeats")
    p.add_argument("--checkpoints", default=str(config.CHECKPOINT_DIR), help="the models to serve and evaluate")
    p.add_argument("--data", default=str(config.SAMPLE_DATA_DIR), help="the training dataset")
    p.add_argument("--database", default=str(config.DATABASE_DIR), help="the retrieval database")
    return p


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks`` (and ``python -m cvdemo bench``): one line of reason on failure."""
    args = build_parser().parse_args(argv)
    try:
        return _run_command(args)
    except CliError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
