"""``python -m cvdemo database``: write images_database/ and query_images/ from the bundled MNIST digits."""
from __future__ import annotations

from pathlib import Path

from .. import config
from ..database import DATABASE_PER_CLASS
from .console import bar, info, print_json


def run(args) -> int:
    from ..database import write_database, write_eval_queries, write_queries

    written = {}
    if not args.no_database:
        with bar(None, "writing images_database", "img") as progress:
            written["database"] = write_database(Path(args.out), args.per_class, progress.to)
    if not args.no_queries:
        with bar(None, "writing query_images", "img") as progress:
            written["queries"] = write_queries(Path(args.queries), progress=progress.to)
    if args.eval_queries:
        with bar(None, "writing held-out eval queries", "img") as progress:
            written["eval_queries"] = write_eval_queries(Path(args.eval_queries), progress.to)
    counts = {key: sum(1 for p in folder.rglob("*") if p.is_file() and ".index" not in p.parts)
              for key, folder in written.items()}
    if args.json:
        print_json({key: {"folder": str(folder), "images": counts[key]} for key, folder in written.items()})
    else:
        for key, folder in written.items():
            info(f"wrote {counts[key]} images to {folder}")
    return 0


def register(sub) -> None:
    """Add ``python -m cvdemo database``."""
    p = sub.add_parser("database", help="write images_database/ and query_images/ from the bundled MNIST digits")
    p.add_argument("--out", default=str(config.DATABASE_DIR), help="database folder (default: %(default)s)")
    p.add_argument("--queries", default=str(config.QUERY_DIR), help="query folder (default: %(default)s)")
    p.add_argument("--per-class", type=int, default=DATABASE_PER_CLASS)
    p.add_argument("--eval-queries", default=None, metavar="DIR",
                   help=f"also write all {config.QUERY_RESERVE} held-out digits per class here")
    p.add_argument("--no-database", action="store_true", help="do not rewrite the database")
    p.add_argument("--no-queries", action="store_true", help="do not rewrite query_images/")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=run)
