"""Out-of-distribution test sets for digits 0-2, none of them ever trained on.

Each set is written in the product's layout (``<d>_digits/*``) so ``python -m cvdemo evaluate``
and the benchmark can score any model on it. Offline and deterministic; no model code here.

- ``writers``, ``fonts``, ``canvas`` (:mod:`.classic`): other writers' scans, typed fonts,
  browser-canvas strokes;
- ``styles`` (:mod:`.styles`): handwriting styles far from MNIST's (slanted, cursive-like,
  hairline and marker pens, open loops, serifed 1s, curly 2s);
- ``paper``, ``paper_table`` (:mod:`.paper`): digits written on paper and photographed by a phone,
  framing only the sheet or the sheet lying on a table.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

from .classic import draw_canvas, write_canvas, write_fonts, write_writers
from .paper import photograph, write_paper, write_paper_table
from .styles import draw_style, write_styles

SETS = ("writers", "fonts", "canvas", "styles", "paper", "paper_table")
WRITERS: dict[str, Callable[[Path], int]] = {
    "writers": write_writers, "fonts": write_fonts, "canvas": write_canvas, "styles": write_styles,
    "paper": write_paper, "paper_table": write_paper_table}
Progress = Callable[[int, int], None]

__all__ = ["SETS", "WRITERS", "draw_canvas", "draw_style", "photograph", "write_canvas", "write_fonts",
           "write_paper", "write_paper_table", "write_styles", "write_testsets", "write_writers"]


def write_testsets(out: Path, names: Iterable[str] = SETS, progress: Progress | None = None) -> dict[str, Path]:
    """Write the named sets under ``out/<name>/``; returns their folders."""
    names = list(names)
    unknown = [n for n in names if n not in WRITERS]
    if unknown:
        raise ValueError(f"unknown test set {unknown[0]!r}; expected one of {', '.join(SETS)}")
    folders = {}
    for i, name in enumerate(names):
        folders[name] = Path(out) / name
        WRITERS[name](folders[name])
        if progress:
            progress(i + 1, len(names))
    return folders
