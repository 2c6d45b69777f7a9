"""The shipped retrieval data: ``images_database/`` and ``query_images/``, built from MNIST.

Deterministic and offline: the database comes from the MNIST pool, the queries from the digits
reserved in :func:`cvdemo.data.mnist_partition` (never trained on, never in the database).
Knows nothing about features or indexes; see :mod:`cvdemo.retrieval` for those.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from . import config
from .data import Progress, mnist_digits, mnist_partition, mnist_to_paper
from .fsutil import staged_folder

DATABASE_PER_CLASS = 100
QUERIES_PER_CLASS = 3
QUERY_FORMATS = (".jpg", ".jpeg", ".png")

# Drawn-style queries: polylines in a 100x100 box, dark strokes on a transparent canvas, the way a
# sketchpad or a drawing app exports them.
_DRAWINGS: dict[int, list[list[tuple[int, int]]]] = {
    1: [[(38, 30), (55, 14), (55, 86)]],
    4: [[(62, 86), (62, 14), (24, 62), (78, 62)]],
    7: [[(22, 18), (78, 18), (46, 86)], [(36, 52), (66, 52)]],
}


def _save(im: Image.Image, path: Path) -> None:
    if path.suffix.lower() in (".jpg", ".jpeg"):
        im.convert("L").save(path, format="JPEG", quality=92)
    else:
        im.save(path, format="PNG", optimize=True)


def write_database(out: Path = config.DATABASE_DIR, per_class: int = DATABASE_PER_CLASS,
                   progress: Progress | None = None) -> Path:
    """Write ``out/<digit>/<digit>_<mnist index>.{jpg,png}``: ``per_class`` pool digits per class.

    100x100 dark ink on light paper, JPEG and PNG alternating. The folder is built aside and
    swapped in whole; an index cached inside the old folder (``.index/``) is carried over, so
    it is updated incrementally rather than rebuilt.
    """
    out = Path(out)
    pixels, labels = mnist_digits()
    pool = mnist_partition()["pool"]
    rng = np.random.default_rng(config.SEED + 4)
    chosen = []
    for digit in range(10):
        candidates = pool[labels[pool] == digit]
        chosen.extend(sorted(rng.choice(candidates, size=min(per_class, len(candidates)), replace=False)))
    with staged_folder(out) as tmp:
        for n, i in enumerate(chosen):
            folder = tmp / str(labels[i])
            folder.mkdir(exist_ok=True)
            suffix = ".png" if n % 2 else ".jpg"
            _save(mnist_to_paper(pixels[i]), folder / f"{labels[i]}_{i:04d}{suffix}")
            if progress:
                progress(n + 1, len(chosen))
        (tmp / ".gitignore").write_text(".index/\n")    # the feature index is rebuilt, not committed
        cache = out / ".index"
        if cache.is_dir():
            shutil.copytree(cache, tmp / ".index")
    return out


def drawn_digit(digit: int, size: int = 100, width: int = 7) -> Image.Image:
    """A digit drawn as dark strokes on a fully transparent RGBA canvas (no paper at all)."""
    im = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(im)
    scale = size / 100
    for line in _DRAWINGS[digit]:
        points = [(x * scale, y * scale) for x, y in line]
        draw.line(points, fill=(20, 20, 20, 255), width=max(1, round(width * scale)), joint="curve")
    return im


def write_queries(out: Path = config.QUERY_DIR, per_class: int = QUERIES_PER_CLASS,
                  drawn: tuple[int, ...] = (1, 7), progress: Progress | None = None) -> Path:
    """Write ``out/<digit>/query_<mnist index>.{jpg,jpeg,png}`` from the reserved MNIST digits.

    Formats cycle through jpg, jpeg and png; ``drawn`` digits add a ``drawn_<d>.png`` each
    (transparent canvas). Swapped in whole.
    """
    out = Path(out)
    pixels, labels = mnist_digits()
    reserved = mnist_partition()["query"]
    with staged_folder(out) as tmp:
        total = 10 * per_class + len(drawn)
        done = 0
        for digit in range(10):
            folder = tmp / str(digit)
            folder.mkdir()
            for n, i in enumerate(reserved[labels[reserved] == digit][:per_class]):
                suffix = QUERY_FORMATS[(digit + n) % len(QUERY_FORMATS)]
                _save(mnist_to_paper(pixels[i]), folder / f"query_{i:04d}{suffix}")
                done += 1
                if progress:
                    progress(done, total)
        for digit in drawn:
            drawn_digit(digit).save(tmp / str(digit) / f"drawn_{digit}.png", format="PNG")
            done += 1
            if progress:
                progress(done, total)
    return out


def write_eval_queries(out: Path, progress: Progress | None = None) -> Path:
    """Write every reserved MNIST digit (QUERY_RESERVE per class) as ``out/<digit>/*.png``: the
    labelled held-out set for ``python -m cvdemo retrieve --eval``."""
    out = Path(out)
    pixels, labels = mnist_digits()
    reserved = mnist_partition()["query"]
    with staged_folder(out) as tmp:
        for n, i in enumerate(reserved):
            folder = tmp / str(labels[i])
            folder.mkdir(exist_ok=True)
            _save(mnist_to_paper(pixels[i]), folder / f"heldout_{i:04d}.png")
            if progress:
                progress(n + 1, len(reserved))
    return out
