"""``python -m cvdemo index``: build or update the feature index of an image folder."""
from __future__ import annotations

from pathlib import Path

from .. import config
from .console import CliError, bar, info, print_json


def run(args) -> int:
    from ..retrieval import FeatureIndex

    index = FeatureIndex(Path(args.database), args.extractor, Path(args.checkpoints))
    if not index.database.is_dir():
        raise CliError(f"{args.database} is not a folder.")
    with bar(None, f"indexing with {index.extractor_name}", "img") as progress:
        report = index.update(progress.to)
    document = {"database": str(index.database), "extractor": index.extractor_name,
                "extractor_version": index.key().split("@")[1], **report.as_dict()}
    if args.json:
        print_json(document)
    else:
        info(f"{report.total} images indexed in {report.seconds:.2f}s: {len(report.extracted)} extracted, "
             f"{report.reused} reused, {len(report.removed)} removed, {len(report.skipped)} skipped"
             + ("" if report.written else " (index already up to date)"))
        for path, reason in report.skipped:
            info(f"  skipped {path}: {reason}")
    return 0


def add_index_options(p) -> None:
    """The options ``index`` and ``retrieve`` share: which folder, extractor and weights."""
    from ..retrieval import EXTRACTORS, PREFERENCE

    p.add_argument("--database", default=str(config.DATABASE_DIR), help="image folder (default: %(default)s)")
    p.add_argument("--extractor", default=None, choices=sorted(EXTRACTORS),
                   help=f"default: the first available of {', '.join(PREFERENCE)}")
    p.add_argument("--checkpoints", default=str(config.CHECKPOINT_DIR),
                   help="where extractor weights/checkpoints are")


def register(sub) -> None:
    """Add ``python -m cvdemo index``."""
    p = sub.add_parser("index", help="build or update the feature index of an image folder")
    add_index_options(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=run)
