"""``python -m cvdemo explain``: why each model decided, whether the input is one it knows, and
how the answer holds up, as PNG pictures and JSON numbers for each image."""
from __future__ import annotations

from pathlib import Path

from .. import config
from .console import answer_each, bar, emit


def write_pictures(explanation, stem: str, folder: Path) -> dict[str, str]:
    """Every picture of one explanation as ``folder/<stem>_<what>.png``; returns {what: path}."""
    from PIL import Image

    from ..analysis.figures import save_figure
    from ..explain import pictures
    from ..fsutil import atomic_write

    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}

    def png(what: str, picture) -> None:
        path = folder / f"{stem}_{what}.png"
        atomic_write(path, lambda f: Image.fromarray(picture).save(f, "PNG"))
        written[what] = str(path)

    answers = explanation.classification.models
    for name, model in explanation.models.items():
        png(f"gradcam_{name}", pictures.heat_overlay(answers[name].model_input, model.gradcam))
        png(f"occlusion_{name}", pictures.heat_overlay(answers[name].model_input, model.occlusion))
        for block, maps in model.feature_maps:
            png(f"features_{name}_{block}", pictures.feature_grid(maps))
    written["probe"] = str(save_figure(pictures.probe_figure(explanation.probe), folder / f"{stem}_probe.png"))
    if explanation.placement is not None:
        written["map"] = str(save_figure(pictures.map_figure(explanation.analysis, explanation.placement),
                                         folder / f"{stem}_map.png"))
    return written


def run(args) -> int:
    from ..images import ImageError
    from ..service import Service

    service = Service(checkpoints=Path(args.checkpoints), warm=False)
    out = Path(args.out)
    with bar(len(args.images), "explaining", "img") as progress:
        def answer(image: str) -> dict:
            explanation = service.explain(image, true_class=args.true, with_map="no" if args.no_map else "compute")
            files = write_pictures(explanation, Path(image).stem, out)
            progress.update(1)
            return {**explanation.as_dict(), "files": files}

        entries, failed = answer_each(args.images, "image", answer, (ImageError,))
    emit(entries, args.json, (f"{e['image']}: error: {e['error']}" if "error" in e else
                              f"{e['image']}: {e['verdict']} Pictures in {out}/" for e in entries))
    return 1 if failed else 0


def register(sub) -> None:
    """Add ``python -m cvdemo explain``."""
    p = sub.add_parser("explain", help="why each model decided: novelty, Grad-CAM, occlusion, feature maps, "
                       "robustness probe, place on the embedding map")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--out", required=True, metavar="DIR", help="where the PNG pictures go")
    p.add_argument("--true", metavar="CLASS", help="the image's true class, for the probe's second curve")
    p.add_argument("--no-map", action="store_true", help="skip placing the input on the analysis map "
                   "(which computes the analysis once if it is not cached)")
    p.add_argument("--checkpoints", default=str(config.CHECKPOINT_DIR))
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=run)
