"""``python -m cvdemo data``: write the sample dataset (MNIST digits 0-2 as 100x100 JPEGs)."""
from __future__ import annotations

from pathlib import Path

from .. import config
from .console import bar, info, print_json


def run(args) -> int:
    from ..data import write_sample_dataset

    with bar(None, "writing sample dataset", "img") as progress:
        out = write_sample_dataset(Path(args.out), progress=progress.to)
    counts = {p.name: len(list(p.glob("*.jpg"))) for p in sorted(out.iterdir()) if p.is_dir()}
    if args.json:
        print_json({"out": str(out), "counts": counts})
    else:
        info(f"wrote {sum(counts.values())} images to {out}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    return 0


def register(sub) -> None:
    """Add ``python -m cvdemo data``."""
    p = sub.add_parser("data", help="write the sample dataset (MNIST digits 0-2, 100x100 JPEGs)")
    p.add_argument("--out", default=str(config.SAMPLE_DATA_DIR), help="output folder (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(handler=run)
