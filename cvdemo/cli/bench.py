"""``python -m cvdemo bench``: runs the benchmark of ``benchmarks/`` (beside the package) with the same flags.

The benchmark drives the product from outside (it launches the app and an HTTP client), so it
lives in its own folder; this command only hands its arguments over.
"""
from __future__ import annotations

import argparse
import importlib

from .console import CliError


def run_benchmark(argv: list[str]) -> int:
    """``benchmarks.bench.main(argv)``; a clear error where the benchmarks folder is not importable."""
    try:
        bench = importlib.import_module("benchmarks.bench")
    except ModuleNotFoundError as err:
        if err.name not in ("benchmarks", "benchmarks.bench"):
            raise
        raise CliError("the benchmark lives in benchmarks/ at the repository root: run this command "
                       "from there") from None
    return bench.main(argv)


def register(sub) -> None:
    """Add ``python -m cvdemo bench`` (its flags are the benchmark's own: ``bench --help``)."""
    p = sub.add_parser("bench", add_help=False, help="measure training, classification, retrieval and the "
                       "app on this machine (bench --help for its flags)")
    p.add_argument("argv", nargs=argparse.REMAINDER)
    p.set_defaults(handler=lambda args: run_benchmark(args.argv))
