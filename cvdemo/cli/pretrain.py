"""``python -m cvdemo pretrain``: the offline "digits" weight sources (a backbone or the scratch CNN)."""
from __future__ import annotations

from pathlib import Path

from .. import config
from ..backbones import BACKBONES
from .console import bar, info, print_json


def run(args) -> int:
    from ..backbones import OWN_WEIGHTS
    from ..pretrain import pretrain_backbone, pretrain_cnn

    digits = OWN_WEIGHTS[args.weights]
    epochs = args.epochs or (40 if args.backbone == "scratch" else 30)
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


def register(sub) -> None:
    """Add ``python -m cvdemo pretrain``."""
    p = sub.add_parser("pretrain", help="pretrain the offline 'digits' backbone on MNIST digits 3-9")
    p.add_argument("--epochs", type=int, default=None, help="default: 30 for a backbone, 40 for scratch")
    p.add_argument("--backbone", default="mobilenet_v2", choices=[*sorted(BACKBONES), "scratch"],
                   help="scratch: the scratch CNN, saved whole as checkpoints/pretrained_scratch_<weights>.keras "
                        "(with --weights digits_all: retrieval's default extractor)")
    p.add_argument("--weights", default="digits", choices=["digits", "digits_all"],
                   help="digits: MNIST 3-9, the fine-tuning source; digits_all: 0-9, for retrieval")
    p.add_argument("--out", default=str(config.CHECKPOINT_DIR))
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=run)
