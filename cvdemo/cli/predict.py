"""``python -m cvdemo predict``: every model's class probabilities for each image."""
from __future__ import annotations

from pathlib import Path

from .. import config
from .console import answer_each, emit


def _write_steps(result, image: Path, folder: Path) -> str | None:
    """The photo steps picture as ``<folder>/<stem>_steps.png``; None when the input was no photo."""
    from PIL import Image

    from ..fsutil import atomic_write

    picture = result.steps_picture()
    if picture is None:
        return None
    path = folder / f"{image.stem}_steps.png"
    atomic_write(path, lambda f: Image.fromarray(picture).save(f, "PNG"))
    return str(path)


def run(args) -> int:
    from ..images import ImageError
    from ..service import Service

    service = Service(checkpoints=Path(args.checkpoints), warm=False)
    steps_dir = Path(args.steps) if args.steps else None

    def answer(image: str) -> dict:
        result = service.classify(image)
        entry = {"models": result.as_dict(), "looks_like": result.looks_like.label if result.looks_like else None}
        if steps_dir is not None:
            entry["photo_steps"] = _write_steps(result, Path(image), steps_dir)
        return entry

    entries, failed = answer_each(args.images, "image", answer, (ImageError,))
    emit(entries, args.json, (f"{e['image']}: error: {e['error']}" if "error" in e else f"{e['image']}: " + ", ".join(
        f"{name}={m['label']} ({m['probabilities'][m['label']]:.2f})" for name, m in e["models"].items())
        + (f"; not one of the known classes, looks like {e['looks_like']}" if e.get("looks_like") else "")
        + (f"; photo steps: {e['photo_steps']}" if e.get("photo_steps") else "")
        for e in entries))
    return 1 if failed else 0


def register(sub) -> None:
    """Add ``python -m cvdemo predict``."""
    p = sub.add_parser("predict", help="class probabilities of every model for each image")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--checkpoints", default=str(config.CHECKPOINT_DIR))
    p.add_argument("--steps", metavar="DIR", help="write how each photo of paper was read (background, lines, "
                   "the digit's strokes) as DIR/<image>_steps.png")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=run)
