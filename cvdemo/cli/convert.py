"""``python -m cvdemo convert``: convert a folder's checkpoints to LiteRT, check each against its
Keras model, and write the conversions beside them (``<folder>/litert/``), where a fresh start of
the app reads them instead of converting (17–23 s for the shipped set on 2 cores).

A model whose conversion is refused or does not answer like Keras is reported with the reason and
is served on Keras; the command then exits non-zero.
"""
from __future__ import annotations

from pathlib import Path

from .. import config
from .console import emit, stage_bar


def run(args) -> int:
    from ..service import SHIPPED, Service
    from ..service.sets import ship_conversions

    folder = Path(args.checkpoints)
    with stage_bar("model") as progress:
        progress("converting and checking against Keras", 0, 1)
        service = Service(checkpoints=folder, warm=False, runs=folder / ".no-runs")
        reports = ship_conversions(service.model_set(SHIPPED))
        progress("done", 1, 1)
    emit(reports, args.json, (f"{r['model']}: {r['runtime']}" + (f" -> {r['file']}" if r["file"] else f" ({r['reason']})")
                              for r in reports))
    return 0 if all(r["runtime"] == "litert" for r in reports) else 1


def register(sub) -> None:
    """Add ``python -m cvdemo convert``."""
    p = sub.add_parser("convert", help="convert checkpoints to LiteRT and write them beside the checkpoints")
    p.add_argument("--checkpoints", default=str(config.CHECKPOINT_DIR), help="the folder of checkpoints")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=run)
