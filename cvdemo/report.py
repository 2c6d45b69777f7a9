"""The analysis for people: figures (matplotlib ``Figure``, plotly for the rotatable 3D t-SNE),
``report.md``, ``metrics.json``, the downloadable bundle (models, TFLite, usage) and the
``report`` command.

Computes nothing itself beyond drawing (see :mod:`cvdemo.analysis`); caches each analysis under
``config.CACHE_DIR`` by checkpoint hash and data fingerprint. Never imports Gradio.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import config
from .analysis import AnalysisResult, Progress

FIGURE_DPI = 110
MAX_MISCLASSIFIED_TILES = 32


# ----------------------------------------------------------------------------- figures

def _figure(width: float, height: float, **kwargs):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=FIGURE_DPI, layout="constrained", **kwargs)


def _short(name: str) -> str:
    """'1_digits' -> '1' for axis labels; other class names unchanged."""
    return name[:-len("_digits")] if name.endswith("_digits") else name


def distribution_figure(result: AnalysisResult):
    """Bar chart: images per class in the training split and in the evaluated images."""
    names = result.class_names
    x = np.arange(len(names))
    fig = _figure(max(5, 0.8 * len(names) + 2), 3.6)
    ax = fig.add_subplot()
    evaluated = [result.data["counts"][n] for n in names]
    train = result.data.get("train_counts")
    width = 0.4 if train else 0.6
    if train:
        bars = ax.bar(x - width / 2, [train.get(n, 0) for n in names], width, label="training split")
        ax.bar_label(bars, fontsize=8)
    bars = ax.bar(x + (width / 2 if train else 0), evaluated, width,
                  label="external test folder" if result.data["external"] else "validation split")
    ax.bar_label(bars, fontsize=8)
    ax.set_xticks(x, [_short(n) for n in names])
    ax.set_xlabel("class")
    ax.set_ylabel("images")
    ax.set_title("Class distribution")
    ax.legend()
    return fig


def samples_figure(result: AnalysisResult, per_class: int = 8):
    """A grid of model inputs: one row per class, the first ``per_class`` evaluated images."""
    names = result.class_names
    images = result.eval_images
    fig = _figure(1.0 * per_class + 0.6, 1.0 * len(names) + 0.4)
    axes = fig.subplots(len(names), per_class, squeeze=False)
    for c, name in enumerate(names):
        members = np.flatnonzero(result.labels == c)[:per_class]
        for k in range(per_class):
            ax = axes[c, k]
            ax.set_xticks([])
            ax.set_yticks([])
            if k < len(members) and images is not None:
                ax.imshow(np.squeeze(images[members[k]]), cmap="gray", vmin=0, vmax=1)
            if k == 0:
                ax.set_ylabel(_short(name), rotation=0, labelpad=14, fontsize=11)
    fig.suptitle("Sample model inputs per class (after preprocessing)")
    return fig


def confusion_figure(result: AnalysisResult, model: str):
    """Counts and row-normalised confusion matrices of one model, side by side."""
    from sklearn.metrics import ConfusionMatrixDisplay

    r = result.models[model]
    labels = [_short(n) for n in result.class_names]
    size = max(3.2, 0.55 * len(labels) + 1.8)
    fig = _figure(2 * size + 0.6, size)
    left, right = fig.subplots(1, 2)
    ConfusionMatrixDisplay(np.asarray(r.metrics["confusion_matrix"]), display_labels=labels).plot(
        ax=left, colorbar=False, values_format="d", cmap="Blues")
    left.set_title(f"{model}: counts")
    ConfusionMatrixDisplay(np.asarray(r.metrics["confusion_normalised"]), display_labels=labels).plot(
        ax=right, colorbar=False, values_format=".2f", cmap="Blues")
    right.set_title(f"{model}: normalised by true class")
    return fig


def curves_figure(result: AnalysisResult):
    """Loss and accuracy per epoch for every model; the fine-tuning phase start is marked."""
    from matplotlib.ticker import MaxNLocator

    models = list(result.models)
    fig = _figure(10, 3.2 * len(models))
    axes = fig.subplots(len(models), 2, squeeze=False)
    for row, name in enumerate(models):
        info = result.models[name].info
        history = info.get("history") or {}
        for col, metric in enumerate(("loss", "accuracy")):
            ax = axes[row, col]
            for key, style in ((metric, "-"), (f"val_{metric}", "--")):
                values = history.get(key)
                if values:
                    ax.plot(np.arange(1, len(values) + 1), values, style, marker="o", markersize=3,
                            label="validation" if key.startswith("val_") else "training")
            head = info.get("head_epochs")
            n_epochs = len(history.get(metric) or [])
            if head and n_epochs > head:
                ax.axvline(head + 0.5, color="gray", linestyle=":")
                ax.text(head + 0.6, 0.95, "fine-tuning starts", transform=ax.get_xaxis_transform(),
                        fontsize=8, va="top", color="gray")
            if not history:
                ax.text(0.5, 0.5, "no history in the checkpoint", ha="center", transform=ax.transAxes)
            ax.set_title(f"{name}: {metric}")
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
    return fig


def _class_colours(n: int):
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _scatter_by_class(result: AnalysisResult, model: str, ax, coords, size: float) -> int:
    """t-SNE points coloured by true class, misclassified ones as X; returns how many are wrong."""
    idx = result.tsne_index
    labels = result.labels[idx]
    wrong = result.models[model].predicted[idx] != labels
    for c, (name, colour) in enumerate(zip(result.class_names, _class_colours(len(result.class_names)))):
        ok = (labels == c) & ~wrong
        ax.scatter(*coords[ok].T, s=size, color=colour, alpha=0.75, label=_short(name))
        bad = (labels == c) & wrong
        if bad.any():
            ax.scatter(*coords[bad].T, s=size * 5, color=colour, marker="X", edgecolors="black", linewidths=0.7)
    return int(wrong.sum())


def tsne2d_figure(result: AnalysisResult, model: str):
    """2D t-SNE of one model's embedding, coloured by true class; misclassified points as X."""
    fig = _figure(6, 5)
    ax = fig.add_subplot()
    n_wrong = _scatter_by_class(result, model, ax, result.models[model].tsne2d, size=12)
    ax.scatter([], [], marker="X", color="white", edgecolors="black", label="misclassified")
    ax.legend(title="true class", fontsize=8)
    ax.set_title(f"{model}: t-SNE of the embedding layer ({n_wrong} misclassified)")
    ax.set_xticks([])
    ax.set_yticks([])
    return fig


def tsne3d_figure(result: AnalysisResult, model: str):
    """Static 3D t-SNE for the report (the app shows :func:`tsne3d_plot`, which rotates)."""
    fig = _figure(6.5, 5.5)
    ax = fig.add_subplot(projection="3d")
    _scatter_by_class(result, model, ax, result.models[model].tsne3d, size=8)
    ax.legend(title="true class", fontsize=8)
    ax.set_title(f"{model}: 3D t-SNE (X = misclassified)")
    ax.view_init(elev=20, azim=35)
    return fig


def tsne3d_plot(result: AnalysisResult, model: str):
    """Rotatable plotly 3D t-SNE; hovering a point shows its file and the model's answer."""
    import plotly.graph_objects as go

    r = result.models[model]
    idx = result.tsne_index
    labels = result.labels[idx]
    predicted = r.predicted[idx]
    names = result.class_names
    paths = result.paths
    fig = go.Figure()
    colours = ["#%02x%02x%02x" % tuple(int(255 * v) for v in c[:3]) for c in _class_colours(len(names))]
    for c, name in enumerate(names):
        for wrong in (False, True):
            mask = (labels == c) & ((predicted != labels) if wrong else (predicted == labels))
            if not mask.any():
                continue
            text = [f"{Path(paths[i]).name}<br>true {_short(names[labels[k]])}, {model} says "
                    f"{_short(names[predicted[k]])}" for k, i in zip(np.flatnonzero(mask), idx[mask])]
            fig.add_trace(go.Scatter3d(
                x=r.tsne3d[mask, 0], y=r.tsne3d[mask, 1], z=r.tsne3d[mask, 2], mode="markers",
                name=f"{_short(name)} misclassified" if wrong else _short(name), text=text, hoverinfo="text",
                marker={"size": 7 if wrong else 3, "color": colours[c], "symbol": "x" if wrong else "circle",
                        "line": {"width": 1, "color": "black"} if wrong else {"width": 0}}))
    fig.update_layout(title=f"{model}: 3D t-SNE of the embedding (drag to rotate)", height=520,
                      margin={"l": 0, "r": 0, "t": 40, "b": 0}, legend={"title": "true class"},
                      scene={"xaxis": {"showticklabels": False, "title": ""},
                             "yaxis": {"showticklabels": False, "title": ""},
                             "zaxis": {"showticklabels": False, "title": ""}})
    return fig


def misclassified_figure(result: AnalysisResult):
    """Tiles of the misclassified images with every model's answer; centroid ratio per model below."""
    rows = result.misclassified()[:MAX_MISCLASSIFIED_TILES]
    models = list(result.models)
    if not rows:
        fig = _figure(6, 1.5)
        fig.text(0.5, 0.5, "No model misclassified any evaluated image.", ha="center", va="center")
        return fig
    cols = min(8, len(rows))
    grid_rows = int(np.ceil(len(rows) / cols))
    fig = _figure(1.55 * cols, 1.95 * grid_rows + 2.8)
    grid, scatter_area = fig.subfigures(2, 1, height_ratios=[1.95 * grid_rows, 2.8])
    axes = np.atleast_1d(grid.subplots(grid_rows, cols, squeeze=False)).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, row in zip(axes, rows):
        if result.eval_images is not None:
            ax.imshow(np.squeeze(result.eval_images[row["index"]]), cmap="gray", vmin=0, vmax=1)
        answers = "\n".join(f"{m[:7]}: {_short(a['predicted'])}" + ("" if a["correct"] else " ✗")
                            for m, a in row["models"].items())
        ax.set_title(f"true {_short(row['true'])}" + (" (?)" if row["suspect"] else "") + f"\n{answers}",
                     fontsize=7, color="darkred" if row["suspect"] else "black")
    grid.suptitle("Misclassified images (model input); (?) = closer to another class's centroid in every model",
                  fontsize=9)
    ax = scatter_area.add_subplot()
    all_rows = result.misclassified()
    for k, name in enumerate(models):
        ratios = [row["models"][name]["ratio"] for row in all_rows]
        ax.scatter(np.arange(len(ratios)), ratios, s=14, label=name, marker="os^"[k % 3])
    ax.axhline(1.0, color="gray", linestyle=":")
    ax.set_yscale("log")
    ax.set_xlabel("misclassified image (sorted as in the table)")
    ax.set_ylabel("d(true centroid) / d(predicted)")
    ax.set_title("Feature-space distance ratio per model (> 1: closer to the predicted class)", fontsize=9)
    ax.legend(fontsize=8)
    return fig


def calibration_figure(result: AnalysisResult):
    """Reliability diagram per model: accuracy against confidence per bin, with the ECE."""
    models = list(result.models)
    fig = _figure(4.2 * len(models), 4.2)
    axes = np.atleast_1d(fig.subplots(1, len(models), squeeze=False)).ravel()
    for ax, name in zip(axes, models):
        r = result.models[name]
        bins = [b for b in r.reliability if b["count"]]
        centres = [(b["low"] + b["high"]) / 2 for b in bins]
        width = r.reliability[0]["high"] - r.reliability[0]["low"]
        ax.bar(centres, [b["accuracy"] for b in bins], width=width * 0.95, edgecolor="black",
               alpha=0.8, label="accuracy in bin")
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o", color="darkred",
                markersize=4, label="mean confidence")
        ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
        for c, b in zip(centres, bins):
            ax.text(c, 0.02, str(b["count"]), ha="center", fontsize=6, rotation=90)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence (top-1 probability)")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{name}: ECE = {r.ece:.3f}")
        ax.legend(fontsize=7, loc="upper left")
    return fig


def figure_specs(result: AnalysisResult) -> dict[str, callable]:
    """File name -> a function drawing it; the report's fixed set of figures."""
    specs = {"distribution.png": lambda: distribution_figure(result),
             "samples.png": lambda: samples_figure(result),
             "curves.png": lambda: curves_figure(result),
             "misclassified.png": lambda: misclassified_figure(result),
             "calibration.png": lambda: calibration_figure(result)}
    for name in result.models:
        specs[f"confusion_{name}.png"] = lambda n=name: confusion_figure(result, n)
        specs[f"tsne2d_{name}.png"] = lambda n=name: tsne2d_figure(result, n)
        specs[f"tsne3d_{name}.png"] = lambda n=name: tsne3d_figure(result, n)
    return specs


def save_figure(fig, path: Path) -> Path:
    from .checkpoints import atomic_write_bytes

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())
    return path


# ----------------------------------------------------------------------------- markdown

def _fmt(value, spec: str = ".4f") -> str:
    if value is None:
        return "–"
    if isinstance(value, (int, float)) and not isinstance(value, bool) and spec:
        try:
            return format(value, spec)
        except ValueError:          # an int column spec given a float, or the reverse
            return str(value)
    return str(value)


def _table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """Markdown table from dict rows; columns are (key, header, format)."""
    lines = ["| " + " | ".join(h for _, h, _ in columns) + " |",
             "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(k), f) for k, _, f in columns) + " |")
    return "\n".join(lines)


def markdown(result: AnalysisResult) -> str:
    """report.md: every figure, with the tables a reader needs next to them."""
    data = result.data
    models = list(result.models)
    out = ["# Model analysis\n",
           f"Evaluated on the {data['description']}; classes {', '.join(result.class_names)}; "
           f"seed {config.SEED}. Analysis key `{result.key}` (checkpoint SHA-256s + data fingerprint).\n"]
    if not data.get("same_training_data", True):
        out.append("**Note:** the models were trained on different data, so these images may include "
                   "training images of one of them.\n")
    if data.get("skipped"):
        out.append(f"{len(data['skipped'])} file(s) could not be read and were skipped: "
                   + "; ".join(f"`{p}` ({why})" for p, why in data["skipped"][:10]) + "\n")
    out += ["## Comparison\n",
            _table(result.comparison(), [("model", "model", ""), ("accuracy", "accuracy", ".4f"),
                                         ("macro_f1", "macro F1", ".4f"), ("ece", "ECE", ".4f"),
                                         ("params", "parameters", ",d"), ("train_seconds", "training s", ".1f"),
                                         ("latency_ms", "latency ms (1 image, median)", ".2f"),
                                         ("weights", "weights", "")]), "",
            "Latency: one image through the compiled model on this machine's CPU (median of 7 calls); "
            "training time from the checkpoint's metadata.\n",
            "## Data\n", "![class distribution](distribution.png)\n", "![samples per class](samples.png)\n"]
    if data.get("n_train_checked"):
        out.append(f"**Leakage check:** each of the {len(result.labels)} evaluated images was compared with its "
                   f"nearest neighbour among {data['n_train_checked']} training images (preprocessed pixels). "
                   f"{len(result.duplicates)} pair(s) have an RMS pixel difference ≤ {data['duplicate_rms']}; "
                   f"the closest pair differs by {_fmt(data.get('closest_train_rms'))}.\n")
        if result.duplicates:
            out.append(_table(result.duplicates[:30], [("path", "evaluated image", ""),
                                                       ("train_path", "training image", ""),
                                                       ("rms", "RMS difference", ".4f"),
                                                       ("label", "label", ""), ("train_label", "train label", "")]) + "\n")
    else:
        out.append("**Leakage check:** not run (the training images are not available here).\n")
    out.append("## Per-class metrics\n")
    for name in models:
        r = result.models[name]
        rows = [{"class": c, **s} for c, s in r.metrics["per_class"].items()]
        out += [f"### {name}\n", f"accuracy {r.metrics['accuracy']:.4f}, macro F1 {r.metrics['macro_f1']:.4f}\n",
                _table(rows, [("class", "class", ""), ("precision", "precision", ".4f"),
                              ("recall", "recall", ".4f"), ("f1", "F1", ".4f"), ("support", "support", "d")]), "",
                f"![confusion matrix of {name}](confusion_{name}.png)\n"]
    out += ["## Training curves\n", "Dotted line: where the fine-tuned model's second phase (backbone top "
            "unfrozen) starts.\n", "![training curves](curves.png)\n",
            "## Feature space (t-SNE of the `embedding` layer)\n"]
    for name in models:
        out += [f"![2D t-SNE of {name}](tsne2d_{name}.png) ![3D t-SNE of {name}](tsne3d_{name}.png)\n"]
    mis = result.misclassified()
    out += ["## Misclassified images\n",
            "For each image some model gets wrong: every model's answer and the Euclidean distance of the "
            "image's embedding to the centroid of its true class and of the predicted class. The ratio "
            "d(true)/d(pred) is comparable across models (> 1: the image sits nearer the predicted class).\n",
            "![misclassified](misclassified.png)\n"]
    if mis:
        columns = [("file", "image", ""), ("true", "true", "")]
        rows = []
        for row in mis:
            flat = {"file": Path(row["path"]).name, "true": _short(row["true"]),
                    "suspect": "yes" if row["suspect"] else ""}
            for name, a in row["models"].items():
                flat[f"{name}_pred"] = _short(a["predicted"]) + ("" if a["correct"] else " ✗")
                flat[f"{name}_conf"] = a["confidence"]
                flat[f"{name}_d"] = f"{a['d_true']:.2f} / {a['d_pred']:.2f}"
                flat[f"{name}_ratio"] = a["ratio"]
            rows.append(flat)
        for name in models:
            columns += [(f"{name}_pred", f"{name}", ""), (f"{name}_conf", "conf.", ".2f"),
                        (f"{name}_d", "d true / d pred", ""), (f"{name}_ratio", "ratio", ".2f")]
        columns.append(("suspect", "closer to another class in every model", ""))
        out += [_table(rows, columns), ""]
    suspects = result.suspects()
    out.append(f"**Likely mislabelled or ambiguous:** {len(suspects)} image(s) sit closer to another class's "
               "centroid than to their own label's in every model's feature space"
               + (": " + ", ".join(f"`{Path(s['path']).name}` (labelled {_short(s['true'])})" for s in suspects[:40])
                  if suspects else ".") + "\n")
    out += ["## Calibration\n", "Reliability diagrams (10 equal-width confidence bins; count per bin at the "
            "bottom). ECE = support-weighted mean |accuracy − confidence|.\n", "![calibration](calibration.png)\n"]
    return "\n".join(out)


# ----------------------------------------------------------------------------- cached analysis

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


def _complete(folder: Path, result: AnalysisResult | None = None) -> bool:
    return (folder / "report.md").is_file() and (folder / "metrics.json").is_file()


def analyze_cached(checkpoints: dict, data_dir: Path | None = None, progress: Progress | None = None,
                   cache_dir: Path = config.CACHE_DIR) -> Analysis:
    """The analysis of these checkpoints on these images: from the cache, or computed once.

    The cache folder is ``cache_dir/analysis/<key>`` (key: checkpoint SHA-256s, data
    fingerprint, analysis version); it is built under a temporary name and renamed into place,
    so a crash never leaves a half-written analysis that looks complete.
    """
    from .analysis import analyze, cache_key, load_result, select_data

    say = progress or (lambda fraction, message: None)
    if not checkpoints:
        from .data import DatasetError
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
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=folder.parent))
    try:
        write_files(result, staging, lambda f, m: say(0.85 + 0.15 * f, m))
        if folder.exists():           # someone else finished first, or a stale incomplete copy
            shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    say(1.0, "analysis ready")
    return Analysis(result, folder, {name: folder / name for name in figure_specs(result)})


def write_files(result: AnalysisResult, folder: Path, progress: Progress | None = None) -> None:
    """All figures, then analysis data, metrics.json and report.md (last: it marks completeness)."""
    from .analysis import save_result
    from .checkpoints import atomic_write_bytes
    from .console import _default

    say = progress or (lambda fraction, message: None)
    specs = figure_specs(result)
    for k, (name, draw) in enumerate(specs.items()):
        say(k / len(specs), f"drawing {name}")
        save_figure(draw(), folder / name)
    save_result(result, folder)
    atomic_write_bytes(folder / "metrics.json",
                       json.dumps(result.metrics_document(), indent=2, default=_default).encode())
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


# ----------------------------------------------------------------------------- bundle

USAGE = '''"""Classify an image with a model from this bundle, using cvdemo's own preprocessing.

    python classify.py scratch.keras my_digit.png         # Keras (pip install cvdemo's requirements)
    python classify.py scratch.tflite my_digit.png        # TFLite (the same model, converted)

Run it from a checkout of the cvdemo project (or with cvdemo on PYTHONPATH): the model expects
exactly what ``cvdemo.images.preprocess`` makes, (28, 28, 1) float32 in [0, 1], white ink on black.
"""
import json
import sys
from pathlib import Path

import numpy as np

from cvdemo.images import preprocess


def main(model_path: str, image_path: str) -> None:
    model_path = Path(model_path)
    meta = json.loads(model_path.with_suffix(".json").read_text())
    x = preprocess(image_path, meta.get("profile", "digits"), size=meta["input_shape"][0])[None]
    if model_path.suffix == ".tflite":
        import tensorflow as tf

        interpreter = tf.lite.Interpreter(model_path=str(model_path))
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x.astype(np.float32))
        interpreter.invoke()
        probabilities = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0]
    else:
        import keras

        import cvdemo.layers  # noqa: F401  registers the custom layers the fine-tuned model uses

        model = keras.saving.load_model(model_path, compile=False, safe_mode=True)
        probabilities = np.asarray(model(x, training=False))[0]
    for name, p in sorted(zip(meta["class_names"], probabilities), key=lambda t: -t[1]):
        print(f"{name}: {p:.3f}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python classify.py MODEL(.keras|.tflite) IMAGE")
    main(sys.argv[1], sys.argv[2])
'''


class ConversionError(RuntimeError):
    """A model that TFLite could not convert faithfully. ``str(err)`` is for the user."""


def to_tflite(model, sample: np.ndarray) -> bytes:
    """Convert with TensorFlow's own converter and check the TFLite model answers like Keras.

    Args:
        model: a Keras model.
        sample: (N, S, S, C) float32 model inputs to compare the two on.
    """
    import tensorflow as tf

    # the converter exports a SavedModel first and prints its signature on stdout: keep stdout
    # clean for --json
    with contextlib.redirect_stdout(io.StringIO()):
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        try:
            flat = converter.convert()
        except Exception as err:
            raise ConversionError(f"TFLite conversion of {model.name} failed: {type(err).__name__}: {err}") from None
    keras_out, lite_out = np.asarray(model(sample, training=False)), tflite_predict(flat, sample)
    if not np.array_equal(keras_out.argmax(1), lite_out.argmax(1)) or np.abs(keras_out - lite_out).max() > 1e-3:
        raise ConversionError(f"The TFLite conversion of {model.name} does not answer like the Keras model "
                              f"(max probability difference {np.abs(keras_out - lite_out).max():.4f}).")
    return flat


def tflite_predict(flat: bytes, images: np.ndarray) -> np.ndarray:
    """Probabilities of a TFLite model for (N, ...) images, one image per invoke."""
    import warnings

    import tensorflow as tf

    with warnings.catch_warnings():     # tf.lite.Interpreter warns that it moves to ai_edge_litert
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_content=flat)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    results = []
    for image in np.asarray(images, np.float32):
        interpreter.set_tensor(inp["index"], image[None])
        interpreter.invoke()
        results.append(interpreter.get_tensor(out["index"])[0].copy())
    return np.stack(results)


def bundle(analysis: Analysis, checkpoints: dict, cache_dir: Path = config.CACHE_DIR,
           progress: Progress | None = None) -> Path:
    """A zip with the report (figures, report.md, metrics.json), each model as .keras + .json +
    .tflite, and ``classify.py`` / ``USAGE.md``. Cached beside the analysis; written atomically."""
    from .checkpoints import atomic_write_bytes

    say = progress or (lambda fraction, message: None)
    target = Path(cache_dir) / "bundles" / f"cvdemo-report-{analysis.result.key}.zip"
    if target.is_file():
        say(1.0, "bundle from cache")
        return target
    sample = analysis.result.eval_images
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in [*analysis.figures.values(), analysis.report_md, analysis.metrics_json]:
            archive.write(path, f"report/{path.name}")
        for k, (name, ckpt) in enumerate(checkpoints.items()):
            say(k / len(checkpoints), f"converting {name} to TFLite")
            archive.write(ckpt.path, f"models/{name}.keras")
            archive.writestr(f"models/{name}.json", json.dumps(ckpt.meta, indent=2))
            check = sample[:8] if sample is not None and len(sample) else np.zeros((1, *ckpt.input_shape), np.float32)
            archive.writestr(f"models/{name}.tflite", to_tflite(ckpt.model, check))
        archive.writestr("classify.py", USAGE)
        archive.writestr("USAGE.md", _usage_md(list(checkpoints)))
    atomic_write_bytes(target, buffer.getvalue())
    say(1.0, "bundle ready")
    return target


def _usage_md(models: list[str]) -> str:
    first = models[0] if models else "scratch"
    return f"""# Using these models

`models/` holds each model as a Keras file (`.keras`, with its metadata in `.json`) and as a
TFLite file (`.tflite`, converted with `tf.lite.TFLiteConverter.from_keras_model` and checked to
give the same predictions). Models: {', '.join(models)}.

Every model expects the output of `cvdemo.images.preprocess` (28x28x1 float32 in [0, 1], white
ink on black, digit centred in a 20-pixel box), so classify with the same preprocessing:

```python
import keras, numpy as np
import cvdemo.layers                      # registers BackbonePreprocess (used by the fine-tuned model)
from cvdemo.images import preprocess

model = keras.saving.load_model("models/{first}.keras", compile=False, safe_mode=True)
x = preprocess("my_digit.png")[None]      # (1, 28, 28, 1)
print(np.asarray(model(x, training=False))[0])
```

or from the command line: `python classify.py models/{first}.tflite my_digit.png`.
The report is in `report/report.md`.
"""


# ----------------------------------------------------------------------------- CLI

def cmd_report(args) -> int:
    from . import checkpoints as ckpt
    from .console import CliError, bar, info, print_json

    folder = Path(args.checkpoints)
    loaded = ckpt.load_all(folder)
    if not loaded:
        raise CliError(f"no checkpoints found in {folder}")
    if args.data and not Path(args.data).is_dir():
        raise CliError(f"--data {args.data} is not a folder")
    order = {"scratch": 0, "finetuned": 1, "lenet": 2}
    loaded = dict(sorted(loaded.items(), key=lambda kv: (order.get(kv[0], 9), kv[0])))
    with bar(100, "analysing", "%") as progress:
        def say(fraction: float, message: str) -> None:
            progress.set_description(message[:60])
            progress.to(int(round(100 * fraction)))
        analysis = analyze_cached(loaded, Path(args.data) if args.data else None, say,
                                  cache_dir=Path(args.cache) if args.cache else config.CACHE_DIR)
    written = export(analysis, Path(args.out))
    if args.bundle:
        with bar(100, "bundling", "%") as progress:
            zip_path = bundle(analysis, loaded, Path(args.cache) if args.cache else config.CACHE_DIR,
                              lambda f, m: (progress.set_description(m[:60]), progress.to(int(100 * f))))
        shutil.copyfile(zip_path, Path(args.out) / zip_path.name)
        written.append(Path(args.out) / zip_path.name)
    if args.json:
        print_json(json.loads(analysis.metrics_json.read_text()))
    else:
        for row in analysis.comparison():
            info(f"{row['model']}: accuracy={row['accuracy']:.4f} macro_f1={row['macro_f1']:.4f} "
                 f"ece={row['ece']:.4f} latency={row['latency_ms']:.2f}ms")
        info(f"wrote {len(written)} files to {args.out} (report.md)")
    return 0


def add_cli(subparsers) -> None:
    """Register ``python -m cvdemo report``."""
    p = subparsers.add_parser("report", help="analyse the models: figures, report.md and metrics.json")
    p.add_argument("--data", default=None, help="a labelled class-folder dataset to evaluate whole "
                   "(default: the validation split the models were trained with)")
    p.add_argument("--checkpoints", default=str(config.CHECKPOINT_DIR))
    p.add_argument("--out", required=True, help="folder for the figures, report.md and metrics.json")
    p.add_argument("--bundle", action="store_true", help="also write the zip with models and TFLite files")
    p.add_argument("--cache", default=None, help=f"cache folder (default: {config.CACHE_DIR})")
    p.add_argument("--json", action="store_true", help="print metrics.json to stdout")
    p.set_defaults(handler=cmd_report)
