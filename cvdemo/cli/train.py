"""``python -m cvdemo train``: train models on a class-folder dataset and save checkpoints."""
from __future__ import annotations

import os
from pathlib import Path

from .. import config
from ..backbones import BACKBONES
from .console import CliError, bar, info, print_json


def _event_printer(progress, json_mode: bool):
    def on_event(event):
        kind = event["kind"]
        if kind == "load":
            progress.set_description("preprocessing images")
            progress.to(event["done"], event["total"])
        elif kind == "data" and event["stage"] == "split":
            info(f"profile={event['profile']} train={event['n_train']} val={event['n_val']} "
                 + " ".join(f"{c}:{v['train']}+{v['val']}" for c, v in event["counts"].items()))
        elif kind == "warning":
            info(f"warning: {event['message']}")
        elif kind == "start":
            progress.reset(total=event["epochs"])
            progress.set_description(f"training {event['model']}")
            if event.get("weights"):
                info(f"{event['model']}: {event['backbone']} from {event['weights']}")
        elif kind == "epoch":
            progress.to(event["epoch"])
            logs = event["logs"]
            progress.set_postfix_str(f"loss={logs.get('loss', 0):.4f} val_acc={logs.get('val_accuracy', 0):.4f}")
            if not json_mode:
                info(f"  {event['model']} epoch {event['epoch']}/{event['total_epochs']} [{event['phase']}] "
                     + " ".join(f"{k}={v:.4f}" for k, v in logs.items() if k != "learning_rate"))
        elif kind == "model_done":
            info(f"{event['model']}: val_accuracy={event['val_accuracy']:.4f} macro_f1={event['macro_f1']:.4f} "
                 f"in {event['train_seconds']:.1f}s" + (" (stopped, not saved)" if event["stopped"] else ""))
    return on_event


def run(args) -> int:
    from ..config import FinetuneConfig, TrainConfig
    from ..data import ensure_sample_dataset
    from ..train import train

    try:
        config.LOCAL_LIMITS.epochs(args.epochs)
    except ValueError as err:
        raise CliError(f"--epochs: {err}") from None
    if args.logdir:
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None:
            raise CliError("--logdir needs TensorBoard: pip install tensorboard")
    data_dir = Path(args.data)
    if data_dir.resolve() == config.SAMPLE_DATA_DIR.resolve():
        ensure_sample_dataset(data_dir)
    names = {"all": ("scratch", "finetuned"), "both": ("scratch", "finetuned"),
             "finetune": ("finetuned",)}.get(args.model, (args.model,))
    if args.strategy == "multiworker" and os.environ.get("TF_CONFIG"):
        import json

        try:
            json.loads(os.environ["TF_CONFIG"])["cluster"]
        except (ValueError, KeyError, TypeError):
            raise CliError("TF_CONFIG must be JSON like {\"cluster\": {\"worker\": [\"host1:port\", ...]}, "
                           "\"task\": {\"type\": \"worker\", \"index\": 0}}") from None
    cfg = TrainConfig(epochs=args.epochs, seed=args.seed, profile=args.profile, strategy=args.strategy,
                      **({"batch_size": args.batch_size} if args.batch_size else {}),
                      **({"learning_rate": args.learning_rate} if args.learning_rate else {}))
    ft = FinetuneConfig(backbone=args.backbone, weights=args.weights)
    with bar(None, "loading data", "") as progress:
        results = train(data_dir, names, cfg, ft, out=Path(args.out),
                        on_event=_event_printer(progress, args.json),
                        logdir=Path(args.logdir) if args.logdir else None,
                        checkpoints=Path(args.checkpoints))
    document = {"models": {name: {"val_accuracy": r.meta["val_accuracy"], "macro_f1": r.meta["macro_f1"],
                                  "train_seconds": r.meta["train_seconds"], "epochs": r.meta["epochs_run"],
                                  "weights": r.meta["weights"], "checkpoint": str(r.checkpoint) if r.checkpoint else None}
                           for name, r in results.items()}}
    if args.json:
        print_json(document)
    return 0


def register(sub) -> None:
    """Add ``python -m cvdemo train``."""
    from ..models import MODELS

    p = sub.add_parser("train", help="train models on a class-folder dataset and save checkpoints")
    p.add_argument("--data", default=str(config.SAMPLE_DATA_DIR), help="folder with one subfolder per class")
    p.add_argument("--model", default="all", choices=[*sorted(MODELS), "finetune", "all", "both"],
                   help="all (default) = scratch and finetuned; finetune = finetuned")
    p.add_argument("--epochs", type=int, default=config.TrainConfig.epochs)
    p.add_argument("--backbone", default=config.FinetuneConfig.backbone, choices=sorted(BACKBONES))
    p.add_argument("--weights", default=config.FinetuneConfig.weights, help="imagenet | digits | none | PATH")
    p.add_argument("--profile", choices=["digits", "photo"], default=None, help="default: detected")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--learning-rate", type=float, default=None)
    p.add_argument("--seed", type=int, default=config.SEED)
    p.add_argument("--out", default=str(config.CHECKPOINT_DIR), help="where checkpoints are written")
    p.add_argument("--checkpoints", default=str(config.CHECKPOINT_DIR), help="where the digits backbone is")
    p.add_argument("--logdir", default=None, help="write TensorBoard logs here")
    p.add_argument("--strategy", default="default", choices=config.STRATEGIES,
                   help="tf.distribute: mirrored = every GPU of this machine; multiworker = several "
                        "machines described by TF_CONFIG (default: no strategy)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=run)
