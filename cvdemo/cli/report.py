"""``python -m cvdemo report``: analyse the models into figures, report.md, metrics.json (and a bundle)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from .. import config
from .console import CliError, bar, info, print_json


def run(args) -> int:
    from .. import checkpoints as ckpt
    from ..analysis import analyze_cached, bundle, export

    folder = Path(args.checkpoints)
    loaded = ckpt.load_all(folder)
    if not loaded:
        raise CliError(f"no checkpoints found in {folder}")
    if args.data and not Path(args.data).is_dir():
        raise CliError(f"--data {args.data} is not a folder")
    loaded = dict(sorted(loaded.items(), key=lambda kv: config.display_rank(kv[0])))
    with bar(100, "analysing", "%") as progress:
        def say(fraction: float, message: str) -> None:
            progress.set_description(message[:60])
            progress.to(int(round(100 * fraction)))
        analysis = analyze_cached(loaded, Path(args.data) if args.data else None, say,
                                  cache_dir=Path(args.cache) if args.cache else config.CACHE_DIR)
    written = export(analysis, Path(args.out))
    if args.bundle:
        with bar(100, "bundling", "%") as progress:
            zip_path = bundle(analysis, loaded, Path(args.cache) if args.cache else config.CACHE_DIR,
                              lambda f, m: (progress.set_description(m[:60]), progress.to(int(100 * f))))
        shutil.copyfile(zip_path, Path(args.out) / zip_path.name)
        written.append(Path(args.out) / zip_path.name)
    if args.json:
        print_json(json.loads(analysis.metrics_json.read_text()))
    else:
        for row in analysis.comparison():
            info(f"{row['model']}: accuracy={row['accuracy']:.4f} macro_f1={row['macro_f1']:.4f} "
                 f"ece={row['ece']:.4f} latency={row['latency_ms']:.2f}ms")
        info(f"wrote {len(written)} files to {args.out} (report.md)")
    return 0


def register(sub) -> None:
    """Add ``python -m cvdemo report``."""
    p = sub.add_parser("report", help="analyse the models: figures, report.md and metrics.json")
    p.add_argument("--data", default=None, help="a labelled class-folder dataset to evaluate whole "
                   "(default: the validation split the models were trained with)")
    p.add_argument("--checkpoints", default=str(config.CHECKPOINT_DIR))
    p.add_argument("--out", required=True, help="folder for the figures, report.md and metrics.json")
    p.add_argument("--bundle", action="store_true", help="also write the zip with models and TFLite files")
    p.add_argument("--cache", default=None, help=f"cache folder (default: {config.CACHE_DIR})")
    p.add_argument("--json", action="store_true", help="print metrics.json to stdout")
    p.set_defaults(handler=run)
