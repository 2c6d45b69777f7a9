"""Command line: ``python -m cvdemo <command>``, one module per command, each with ``register(sub)``.

Parses arguments into config and calls the package. Every failure is one line on stderr and a
non-zero exit.
"""
from __future__ import annotations

import argparse
import os
import sys

from . import (
    bench,
    convert,
    data,
    database,
    doctor,
    evaluate,
    explain,
    index,
    novelty,
    predict,
    pretrain,
    report,
    retrieve,
    teach,
    train,
)
from .console import CliError

COMMANDS = (data, pretrain, train, teach, evaluate, predict, explain, novelty, convert, index, retrieve, database, report, bench,
            doctor)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cvdemo", description="cvdemo: digit classification, "
                                     "transfer learning and image retrieval from the command line.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:            # every flag, --help included, belongs to the benchmark
        return _report_errors(lambda: bench.run_benchmark(argv[1:]))
    args = build_parser().parse_args(argv)
    return _report_errors(lambda: args.handler(args))


def _report_errors(run) -> int:
    from ..backbones import WeightsUnavailable
    from ..checkpoints import CheckpointError
    from ..data import DatasetError
    from ..images import ImageError
    from ..retrieval.milvus import MilvusError
    from ..teaching import ExampleError

    try:
        return int(run() or 0)
    except CliError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.code
    except (DatasetError, ImageError, CheckpointError, WeightsUnavailable, FileNotFoundError, KeyError,
            MilvusError, ExampleError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
