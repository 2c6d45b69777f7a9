"""Command line: ``python -m cvdemo <command>``. Parses arguments into config and calls the package.

Core commands live here; the retrieval, report and bench modules register their own commands
through ``add_cli(subparsers)``. Every failure is one line on stderr and a non-zero exit.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from . import config
from .console import CliError, bar, info, print_json

_EXTENSIONS = ("cvdemo.retrieval", "cvdemo.database", "cvdemo.report", "cvdemo.bench")


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")


# ----------------------------------------------------------------------------- data

def cmd_data(args) -> int:
    from .data import write_sample_dataset

    with bar(None, "writing sample dataset", "img") as progress:
        out = write_sample_dataset(Path(args.out), progress=progress.to)
    counts = {p.name: len(list(p.glob("*.jpg"))) for p in sorted(out.iterdir()) if p.is_dir()}
    if args.json:
        print_json({"out": str(out), "counts": counts})
    else:
        info(f"wrote {sum(counts.values())} images to {out}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    return 0


def cmd_pretrain(args) -> int:
    from .models import OWN_WEIGHTS
    from .train import pretrain_backbone, pretrain_cnn

    digits = OWN_WEIGHTS[args.weights]
    epochs = args.epochs or (20 if args.backbone == "scratch" else 30)
    with bar(epochs, f"pretraining {args.backbone} on digits {min(digits)}-{max(digits)}", "epoch") as progress:
        def on_event(event):
            if event["kind"] == "epoch":
                progress.to(event["epoch"])
                progress.set_postfix_str(f"val_acc={event['logs'].get('val_accuracy', 0):.4f}")
        if args.backbone == "scratch":
            meta = pretrain_cnn("scratch", epochs, Path(args.out), on_event, tag=args.weights)
        else:
            meta = pretrain_backbone(args.backbone, epochs, Path(args.out), on_event, tag=args.weights)
    if args.json:
        print_json(meta)
    else:
        info(f"saved {meta['weights_file']} to {args.out}: val accuracy on digits {min(digits)}-{max(digits)} "
             f"{meta['val_accuracy']:.4f} in {meta['train_seconds']:.1f}s")
    return 0


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


def cmd_train(args) -> int:
    from .config import FinetuneConfig, TrainConfig
    from .data import ensure_sample_dataset
    from .train import train

    if args.epochs < 1:
        raise CliError("--epochs must be at least 1")
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


def cmd_evaluate(args) -> int:
    from . import checkpoints as ckpt
    from .data import load_arrays, scan_folder
    from .evaluate import evaluate_model

    loaded = ckpt.load_all(Path(args.checkpoints))
    if not loaded:
        raise CliError(f"no checkpoints found in {args.checkpoints}")
    dataset = scan_folder(Path(args.data))
    document = {"n_images": None, "classes": dataset.class_names, "models": {}}
    arrays_by_profile = {}
    for name, checkpoint in loaded.items():
        if checkpoint.class_names != dataset.class_names:
            raise CliError(f"{name} was trained on classes {checkpoint.class_names}, "
                           f"but {args.data} has {dataset.class_names}")
        key = (checkpoint.profile, tuple(checkpoint.input_shape))
        if key not in arrays_by_profile:
            with bar(len(dataset.paths), f"preprocessing ({checkpoint.profile})", "img") as progress:
                arrays_by_profile[key] = load_arrays(dataset, checkpoint.profile, progress.to)
        arrays = arrays_by_profile[key]
        with bar(len(arrays.labels), f"evaluating {name}", "img") as progress:
            scores = evaluate_model(checkpoint.model, arrays.images, arrays.labels, arrays.class_names,
                                    progress.to)
        scores.pop("probabilities")
        document["n_images"] = int(len(arrays.labels))
        document["models"][name] = scores
        if arrays.skipped:
            document["skipped"] = [{"path": p, "reason": r} for p, r in arrays.skipped]
    if args.json:
        print_json(document)
    else:
        for name, scores in document["models"].items():
            info(f"{name}: accuracy={scores['accuracy']:.4f} macro_f1={scores['macro_f1']:.4f} "
                 f"on {document['n_images']} images")
    return 0


def cmd_predict(args) -> int:
    from .images import ImageError
    from .service import Service

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


# ----------------------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    from .models import BACKBONES, MODELS

    parser = argparse.ArgumentParser(prog="python -m cvdemo", description="cvdemo: digit classification, "
                                     "transfer learning and image retrieval from the command line.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("data", help="write the sample dataset (MNIST digits 0-2, 100x100 JPEGs)")
    p.add_argument("--out", default=str(config.SAMPLE_DATA_DIR), help="output folder (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(handler=cmd_data)

    p = sub.add_parser("pretrain", help="pretrain the offline 'digits' backbone on MNIST digits 3-9")
    p.add_argument("--epochs", type=int, default=None, help="default: 30 for a backbone, 20 for scratch")
    p.add_argument("--backbone", default="mobilenet_v2", choices=[*sorted(BACKBONES), "scratch"],
                   help="scratch: the scratch CNN, saved whole as checkpoints/pretrained_scratch_<weights>.keras "
                        "(with --weights digits_all: retrieval's default extractor)")
    p.add_argument("--weights", default="digits", choices=["digits", "digits_all"],
                   help="digits: MNIST 3-9, the fine-tuning source; digits_all: 0-9, for retrieval")
    p.add_argument("--out", default=str(config.CHECKPOINT_DIR))
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_pretrain)

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
    p.set_defaults(handler=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate every checkpoint on every image of a class-folder dataset")
    p.add_argument("--data", required=True)
    p.add_argument("--checkpoints", default=str(config.CHECKPOINT_DIR))
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_evaluate)

    p = sub.add_parser("predict", help="class probabilities of every model for each image")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--checkpoints", default=str(config.CHECKPOINT_DIR))
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_predict)

    for module in _EXTENSIONS:
        try:
            extension = importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:
                raise
            continue
        if hasattr(extension, "add_cli"):
            extension.add_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    _quiet_tensorflow()
    parser = build_parser()
    args = parser.parse_args(argv)
    from .checkpoints import CheckpointError
    from .data import DatasetError
    from .images import ImageError
    from .models import WeightsUnavailable

    try:
        return int(args.handler(args) or 0)
    except CliError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.code
    except (DatasetError, ImageError, CheckpointError, WeightsUnavailable, FileNotFoundError, KeyError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130

