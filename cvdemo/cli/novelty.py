"""``python -m cvdemo novelty``: fit the "not one I know" threshold of saved checkpoints.

Training fits it by itself; this is for checkpoints saved before novelty existed. The split is
the one recorded in each checkpoint's metadata: the bank from its training images, the
threshold from its validation images only.
"""
from __future__ import annotations

from pathlib import Path

from .. import config
from .console import emit, stage_bar


def run(args) -> int:
    from .. import checkpoints
    from ..explain.calibrate import fit_checkpoint

    folder = Path(args.checkpoints)
    names = args.models or checkpoints.list_names(folder)
    done = {}
    with stage_bar() as progress:
        for name in names:
            if not args.refit and "novelty" in checkpoints.read_meta(folder, name):
                done[name] = "already fitted (use --refit to fit again)"
                continue
            fitted = fit_checkpoint(folder, name, lambda d, n, name=name: progress(f"{name}: loading data", d, n))
            done[name] = {k: fitted[k] for k in ("method", "metric", "k", "quantile", "threshold", "bank_shape")}
    emit(done, args.json, (f"{name}: {_line(v)}" for name, v in done.items()))
    return 0


def _line(fitted) -> str:
    if isinstance(fitted, str):
        return fitted
    return (f"threshold {fitted['threshold']:.4g} ({fitted['metric']} kNN, k={fitted['k']}, "
            f"the validation images' {fitted['quantile']:.0%} quantile)")


def register(sub) -> None:
    """Add ``python -m cvdemo novelty``."""
    p = sub.add_parser("novelty", help="fit the novelty threshold of checkpoints saved without one")
    p.add_argument("models", nargs="*", metavar="MODEL", help="checkpoint names (default: every classifier)")
    p.add_argument("--checkpoints", default=str(config.CHECKPOINT_DIR))
    p.add_argument("--refit", action="store_true", help="fit again even where a threshold is stored")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=run)
