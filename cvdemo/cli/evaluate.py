"""``python -m cvdemo evaluate``: every checkpoint on every image of a class-folder dataset."""
from __future__ import annotations

from pathlib import Path

from .. import config
from .console import CliError, emit, stage_bar


def run(args) -> int:
    from .. import checkpoints as ckpt
    from ..evaluate import evaluate_folder

    loaded = ckpt.load_all(Path(args.checkpoints))
    if not loaded:
        raise CliError(f"no checkpoints found in {args.checkpoints}")
    with stage_bar() as progress:
        document = evaluate_folder(loaded, Path(args.data), progress=progress)
    emit(document, args.json, (f"{name}: accuracy={scores['accuracy']:.4f} macro_f1={scores['macro_f1']:.4f} "
                                f"on {document['n_images']} images" for name, scores in document["models"].items()))
    return 0


def register(sub) -> None:
    """Add ``python -m cvdemo evaluate``."""
    p = sub.add_parser("evaluate", help="evaluate every checkpoint on every image of a class-folder dataset")
    p.add_argument("--data", required=True)
    p.add_argument("--checkpoints", default=str(config.CHECKPOINT_DIR))
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=run)
