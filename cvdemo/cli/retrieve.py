"""``python -m cvdemo retrieve``: the k most similar database images per query, or --eval a folder."""
from __future__ import annotations

from pathlib import Path

from .. import config
from .console import CliError, answer_each, bar, emit, info, print_json
from .index import add_index_options, open_index


def run(args) -> int:
    from ..images import ImageError
    from ..retrieval import evaluate

    try:
        config.LOCAL_LIMITS.k(args.k)
    except ValueError as err:
        raise CliError(f"--k: {err}") from None
    index = open_index(args)
    if args.eval:
        if args.queries:
            raise CliError("give either --eval QUERY_DIR or query images, not both")
        with bar(None, "indexing", "img") as progress:
            index.update(progress.to)
        with bar(None, "evaluating", "query") as progress:
            result = evaluate(index, Path(args.eval), args.k, args.metric, progress.to)
        overall = result["overall"]
        emit(result, args.json, [
            *(f"class {label}: precision@{args.k}={scores['precision_at_k']:.3f} mAP={scores['map']:.3f} "
              f"({scores['n']} queries)" for label, scores in result["per_class"].items()),
            f"overall: precision@{args.k}={overall['precision_at_k']:.3f} mAP={overall['map']:.3f} "
            f"({result['n_queries']} queries, {result['database_size']} database images, {index.extractor_name})",
            *(f"error: {error['error']}" for error in result.get("errors", []))])
        return 1 if result.get("errors") else 0
    if not args.queries:
        raise CliError("give at least one query image, or --eval QUERY_DIR")
    report = index.update()
    for path, reason in report.skipped:
        info(f"skipped database file {path}: {reason}")
    entries, failed = answer_each(args.queries, "query", lambda query: {"results": [
        h.as_dict() for h in index.search(query, args.k, args.metric, name=query, max_age=3600)[1]]}, (ImageError,))
    if args.json:
        print_json(entries)
    else:
        for entry in entries:
            if "error" in entry:
                info(f"error: {entry['error']}")
                continue
            print(entry["query"])
            for hit in entry["results"]:
                print(f"  {hit['rank']}. {hit['path']}  class={hit['label']}  distance={hit['distance']:.4f}")
    return 1 if failed else 0


def register(sub) -> None:
    """Add ``python -m cvdemo retrieve``."""
    from ..retrieval import METRICS

    p = sub.add_parser("retrieve", help="the k most similar database images for each query (or --eval a folder)")
    p.add_argument("queries", nargs="*", metavar="QUERY")
    add_index_options(p)
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--metric", choices=METRICS, default="euclidean")
    p.add_argument("--eval", default=None, metavar="QUERY_DIR",
                   help="report precision@k and mAP for a labelled folder (one subfolder per class)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=run)
