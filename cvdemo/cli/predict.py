"""``python -m cvdemo predict``: every model's class probabilities for each image."""
from __future__ import annotations

from pathlib import Path

from .. import config
from .console import answer_each, emit


def run(args) -> int:
    from ..images import ImageError
    from ..service import Service

    service = Service(checkpoints=Path(args.checkpoints), warm=False)
    entries, failed = answer_each(args.images, "image", lambda image: {"models": service.classify(image).as_dict()},
                                  (ImageError,))
    emit(entries, args.json, (f"{e['image']}: error: {e['error']}" if "error" in e else f"{e['image']}: " + ", ".join(
        f"{name}={m['label']} ({m['probabilities'][m['label']]:.2f})" for name, m in e["models"].items())
        for e in entries))
    return 1 if failed else 0


def register(sub) -> None:
    """Add ``python -m cvdemo predict``."""
    p = sub.add_parser("predict", help="class probabilities of every model for each image")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--checkpoints", default=str(config.CHECKPOINT_DIR))
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=run)
