"""``python -m cvdemo index``: build or update the feature index of an image folder."""
from __future__ import annotations

from pathlib import Path

from .. import config
from .console import CliError, info, print_json, stage_bar


def run(args) -> int:
    index = open_index(args)
    with stage_bar() as follow:
        report = index.update(lambda done, total: follow(f"indexing with {index.extractor_name}", done, total),
                              lambda done, total: follow("upserting into Milvus", done, total))
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
        if report.milvus is not None:
            m = report.milvus
            info(f"Milvus collection {m['collection']} ({m['index_type']}): {m['inserted']} upserted, "
                 f"{m['deleted']} deleted" + (", created" if m["created"] else "")
                 + (", checked against the manifest" if m["checked"] else ""))
    return 0


def open_index(args):
    """The FeatureIndex the options name; CliError when the folder is missing."""
    from ..retrieval import FeatureIndex

    if not Path(args.database).is_dir():
        raise CliError(f"{args.database} is not a folder.")
    return FeatureIndex(Path(args.database), args.extractor, Path(args.checkpoints),
                        backend=args.backend, milvus_uri=args.milvus_uri)


def add_index_options(p) -> None:
    """The options ``index`` and ``retrieve`` share: which folder, extractor and weights."""
    from ..retrieval import BACKENDS, EXTRACTORS, PREFERENCE

    p.add_argument("--database", default=str(config.DATABASE_DIR), help="image folder (default: %(default)s)")
    p.add_argument("--extractor", default=None, choices=sorted(EXTRACTORS),
                   help=f"default: the first available of {', '.join(PREFERENCE)}")
    p.add_argument("--checkpoints", default=str(config.CHECKPOINT_DIR),
                   help="where extractor weights/checkpoints are")
    p.add_argument("--backend", default=config.RETRIEVAL_BACKEND, choices=BACKENDS,
                   help="search backend (default: %(default)s; auto = numpy, FAISS HNSW from 50k vectors)")
    p.add_argument("--milvus-uri", default=config.MILVUS_URI, metavar="URI",
                   help="with --backend milvus: a Milvus Lite file (default <database>/.index/milvus.db) "
                        "or http://host:19530 for a Milvus server or cluster")


def register(sub) -> None:
    """Add ``python -m cvdemo index``."""
    p = sub.add_parser("index", help="build or update the feature index of an image folder")
    add_index_options(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=run)
