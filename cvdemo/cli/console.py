"""Terminal output for the CLI: progress bars on stderr, JSON on stdout, one-line failures.

Knows nothing about models; every command module uses these so all commands behave alike.
"""
from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Any, Iterator


class CliError(Exception):
    """A failure to report as one line on stderr with a non-zero exit (no traceback)."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


def print_json(document: Any) -> None:
    """The only thing a ``--json`` command writes to stdout."""
    sys.stdout.write(json.dumps(document, indent=2, default=_default) + "\n")
    sys.stdout.flush()


def _default(value):
    import numpy as np
    from pathlib import Path

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(type(value).__name__)


def info(message: str) -> None:
    """Human-readable status; stderr, so ``--json`` output stays clean."""
    print(message, file=sys.stderr, flush=True)


@contextmanager
def bar(total: int | None, desc: str, unit: str = "it") -> Iterator[Any]:
    """A tqdm bar on stderr; ``update(n)`` / ``set_postfix_str(s)`` / ``to(done)`` work on it."""
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True,
              mininterval=0.2 if sys.stderr.isatty() else 5.0, leave=True) as progress:
        def to(done: int, new_total: int | None = None) -> None:
            if new_total is not None and new_total != progress.total:
                progress.total = new_total
            progress.update(max(0, done - progress.n))
        progress.to = to
        yield progress
