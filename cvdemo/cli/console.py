"""Terminal output for the CLI: progress bars on stderr, JSON on stdout, one-line failures.

Knows nothing about models; every command module uses these so all commands behave alike.
"""
from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator

from ..fsutil import to_json


class CliError(Exception):
    """A failure to report as one line on stderr with a non-zero exit (no traceback)."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


def print_json(document: Any) -> None:
    """The only thing a ``--json`` command writes to stdout."""
    sys.stdout.write(to_json(document) + "\n")
    sys.stdout.flush()


def answer_each(inputs, key: str, answer: Callable[[str], dict], errors: tuple) -> tuple[list[dict], int]:
    """One entry per input, ``{key: input, **answer(input)}`` or ``{key: input, "error": message}``
    when ``answer`` raises one of ``errors``; and how many failed."""
    entries, failed = [], 0
    for item in inputs:
        try:
            entries.append({key: item, **answer(item)})
        except errors as err:
            failed += 1
            entries.append({key: item, "error": str(err)})
    return entries, failed


def emit(document: Any, as_json: bool, lines: Iterable[str] = ()) -> None:
    """``document`` as JSON on stdout with ``--json``, else the human ``lines`` on stderr."""
    if as_json:
        print_json(document)
    else:
        for line in lines:
            info(line)


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


@contextmanager
def stage_bar(unit: str = "img") -> Iterator[Callable[[str, int, int], None]]:
    """One bar for work in stages: ``progress(stage, done, total)`` restarts it when the stage changes."""
    with bar(None, "starting", unit) as progress:
        current = [None]

        def follow(stage: str, done: int, total: int) -> None:
            if stage != current[0]:
                current[0] = stage
                progress.reset(total=total)
                progress.set_description(stage)
            progress.to(done, total)
        yield follow
