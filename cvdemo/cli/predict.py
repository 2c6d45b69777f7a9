"""``python -m cvdemo predict``: every model's class probabilities for each image."""
from __future__ import annotations

from pathlib import Path

from .. import config
from .console import info, print_json


def run(args) -> int:
    from ..images import ImageError
    from ..service import Service

    service = Service(checkpoints=Path(args.checkpoints), warm=False)
    entries, failed = [], 0
    for image in args.images:
        try:
            result = service.classify(image)
            entries.append({"image": image, "models": {name: {"label": r.label, "probabilities": r.probabilities}
                                                       for name, r in result.models.items()}})
        except ImageError as err:
            failed += 1
            entries.append({"image": image, "error": str(err)})
    if args.json:
        print_json(entries)
    else:
        for entry in entries:
            if "error" in entry:
                info(f"{entry['image']}: error: {entry['error']}")
            else:
                info(f"{entry['image']}: " + ", ".join(
                    f"{name}={m['label']} ({m['probabilities'][m['label']]:.2f})" for name, m in entry["models"].items()))
    return 1 if failed else 0


def register(sub) -> None:
    """Add ``python -m cvdemo predict``."""
    p = sub.add_parser("predict", help="class probabilities of every model for each image")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--checkpoints", default=str(config.CHECKPOINT_DIR))
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=run)
