"""Analyses cached on disk by checkpoint hash and data fingerprint: computed once, then opened
instantly. A cache folder appears whole (staged, then swapped in) or not at all.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import config
from ..fsutil import atomic_write_bytes, staged_folder, write_json
from .compute import Progress, analyze, cache_key
from .figures import figure_specs, save_figure, tsne3d_plot
from .markdown import markdown
from .result import AnalysisResult, load_result, save_result
from .selection import select_data


@dataclass
class Analysis:
    """A finished, cached analysis: the numbers, the PNG figures and what the app needs."""

    result: AnalysisResult
    folder: Path                      # cache folder holding the figures, report.md, metrics.json
    figures: dict[str, Path]

    @property
    def models(self) -> list[str]:
        return list(self.result.models)

    @property
    def report_md(self) -> Path:
        return self.folder / "report.md"

    @property
    def metrics_json(self) -> Path:
        return self.folder / "metrics.json"

    def tsne3d_plot(self, model: str):
        """A plotly figure (gr.Plot shows it rotatable)."""
        return tsne3d_plot(self.result, model)

    def comparison(self) -> list[dict]:
        return self.result.comparison()

    def per_class(self) -> list[dict]:
        return self.result.per_class()

    def misclassified(self) -> list[dict]:
        """Rows with 'path', 'true', 'suspect' and per model predicted/confidence/d_true/d_pred/ratio."""
        return self.result.misclassified()

    def suspects(self) -> list[dict]:
        return self.result.suspects()

    def predictions(self) -> dict[str, list[str]]:
        """Each model's predicted class for every evaluated image (in ``result.paths`` order)."""
        names = self.result.class_names
        return {m: [names[int(p)] for p in r.predicted] for m, r in self.result.models.items()}

    def model_input(self, index: int) -> np.ndarray | None:
        """(S, S, C) float model input of an evaluated image, for display."""
        images = self.result.eval_images
        return None if images is None else images[index]

    def picture(self, index: int, scale: int = 8):
        """An evaluated image as a PIL image: its file, or its model input when the file is gone."""
        from PIL import Image

        from ..images import ImageError, decode, to_display

        try:
            return decode(self.result.paths[index]).image
        except ImageError:
            return Image.fromarray(to_display(self.model_input(index), scale))

    def detail(self, index: int) -> dict:
        """Everything about one evaluated image: path, label, each model's answer and distances."""
        r = self.result
        true = int(r.labels[index])
        out = {"index": index, "path": r.paths[index], "true": r.class_names[true], "models": {}}
        for name, m in r.models.items():
            pred = int(m.predicted[index])
            d = m.distances[index]
            out["models"][name] = {
                "predicted": r.class_names[pred], "confidence": float(m.probabilities[index, pred]),
                "probabilities": {c: float(p) for c, p in zip(r.class_names, m.probabilities[index])},
                "d_true": float(d[true]), "d_pred": float(d[pred]),
                "centroid_distances": {c: float(v) for c, v in zip(r.class_names, d)}}
        return out


def _complete(folder: Path) -> bool:
    return (folder / "report.md").is_file() and (folder / "metrics.json").is_file()


def analyze_cached(checkpoints: dict, data_dir: Path | None = None, progress: Progress | None = None,
                   cache_dir: Path = config.CACHE_DIR) -> Analysis:
    """The analysis of these checkpoints on these images: from the cache, or computed once.

    The cache folder is ``cache_dir/analysis/<key>`` (key: checkpoint SHA-256s, data
    fingerprint, analysis version); it is built under a temporary name and renamed into place,
    so a crash never leaves a half-written analysis that looks complete.
    """
    say = progress or (lambda fraction, message: None)
    if not checkpoints:
        from ..data import DatasetError
        raise DatasetError("There are no models to analyse.")
    first = next(iter(checkpoints.values()))
    data = select_data(first.meta, Path(data_dir) if data_dir else None)
    key = cache_key({n: c.meta for n, c in checkpoints.items()}, data.fingerprint)
    folder = Path(cache_dir) / "analysis" / key
    if _complete(folder):
        try:
            result = load_result(folder)
            figures = {name: folder / name for name in figure_specs(result)}
            if all(p.is_file() for p in figures.values()):
                say(1.0, "loaded from cache")
                return Analysis(result, folder, figures)
        except (OSError, ValueError, KeyError):
            pass   # an unreadable cache is recomputed
    result = analyze(checkpoints, Path(data_dir) if data_dir else None,
                     progress=lambda f, m: say(0.85 * f, m))
    # replaces someone else's identical copy or a stale incomplete one
    with staged_folder(folder) as staging:
        write_files(result, staging, lambda f, m: say(0.85 + 0.15 * f, m))
    say(1.0, "analysis ready")
    return Analysis(result, folder, {name: folder / name for name in figure_specs(result)})


def write_files(result: AnalysisResult, folder: Path, progress: Progress | None = None) -> None:
    """All figures, then analysis data, metrics.json and report.md (last: it marks completeness)."""
    say = progress or (lambda fraction, message: None)
    specs = figure_specs(result)
    for k, (name, draw) in enumerate(specs.items()):
        say(k / len(specs), f"drawing {name}")
        save_figure(draw(), folder / name)
    save_result(result, folder)
    write_json(folder / "metrics.json", result.metrics_document())
    atomic_write_bytes(folder / "report.md", markdown(result).encode())
    say(1.0, "report written")


def export(analysis: Analysis, out: Path) -> list[Path]:
    """Copy the figures, report.md and metrics.json into ``out``; returns the written paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in [*analysis.figures.values(), analysis.report_md, analysis.metrics_json]:
        target = out / path.name
        shutil.copyfile(path, target)
        written.append(target)
    return written
