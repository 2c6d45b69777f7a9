"""``python -m cvdemo teach``: teach a model set the examples in a folder of class subfolders."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from .. import config
from .console import CliError, bar, info, print_json


def run(args) -> int:
    from ..teaching import teach

    examples, out = Path(args.examples), Path(args.out)
    if not examples.is_dir():
        raise CliError(f"--examples: {examples} is not a folder of class subfolders")
    if out.resolve() == Path(args.checkpoints).resolve():
        raise CliError("--out must differ from --checkpoints: the models taught from stay as they are")
    try:
        cfg = replace(config.TeachConfig(), epochs=config.LOCAL_LIMITS.epochs(args.epochs))
    except ValueError as err:
        raise CliError(f"--epochs: {err}") from None

    with bar(None, "teaching", "") as progress:
        def on_event(event):
            kind = event["kind"]
            if kind == "start":
                progress.reset(total=event["epochs"])
                progress.set_description(f"teaching {event['model']}")
            elif kind == "epoch":
                progress.to(event["epoch"])
            elif kind in ("warning", "phase"):
                info(event["message"])
            elif kind == "model_done":
                after = event["after"]
                info(f"{event['model']}: val_accuracy={after['val_accuracy']:.4f} examples_accuracy="
                     f"{after['examples_accuracy']:.4f} in {event['train_seconds']:.1f}s")

        results = teach(Path(args.checkpoints), examples, out, cfg, on_event=on_event, source=str(examples.resolve()))
    if args.json:
        print_json({"models": {name: {"seconds": round(r.seconds, 2), "classes": r.meta["class_names"],
                                      "val_accuracy": r.after["val_accuracy"],
                                      "examples_accuracy": r.after["examples_accuracy"],
                                      "held_out_accuracy": r.after["held_out_accuracy"],
                                      "before": r.before}
                               for name, r in results.items()}, "checkpoints": str(out)})
    return 0


def register(sub) -> None:
    """Add ``python -m cvdemo teach``."""
    p = sub.add_parser("teach", help="teach a model set new examples (new classes allowed) and save the taught set")
    p.add_argument("--examples", required=True, help="folder with one subfolder per class (e.g. 3/*.png)")
    p.add_argument("--checkpoints", default=str(config.CHECKPOINT_DIR), help="the model set taught from")
    p.add_argument("--out", required=True, help="where the taught model set is written")
    p.add_argument("--epochs", type=int, default=config.TeachConfig.epochs)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=run)
