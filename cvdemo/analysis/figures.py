"""The analysis as pictures: matplotlib ``Figure`` objects (no pyplot, safe in threads) and a
plotly figure for the rotatable 3D t-SNE. Draws what ``AnalysisResult`` holds; computes nothing.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..config import class_display_name
from ..fsutil import atomic_write_bytes
from .result import AnalysisResult

FIGURE_DPI = 110
MAX_MISCLASSIFIED_TILES = 32


def _figure(width: float, height: float, **kwargs):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=FIGURE_DPI, layout="constrained", **kwargs)


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
    ax.set_xticks(x, [class_display_name(n) for n in names])
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
                ax.set_ylabel(class_display_name(name), rotation=0, labelpad=14, fontsize=11)
    fig.suptitle("Sample model inputs per class (after preprocessing)")
    return fig


def confusion_figure(result: AnalysisResult, model: str):
    """Counts and row-normalised confusion matrices of one model, side by side."""
    from sklearn.metrics import ConfusionMatrixDisplay

    r = result.models[model]
    labels = [class_display_name(n) for n in result.class_names]
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
        ax.scatter(*coords[ok].T, s=size, color=colour, alpha=0.75, label=class_display_name(name))
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
            text = [f"{Path(paths[i]).name}<br>true {class_display_name(names[labels[k]])}, {model} says "
                    f"{class_display_name(names[predicted[k]])}" for k, i in zip(np.flatnonzero(mask), idx[mask])]
            fig.add_trace(go.Scatter3d(
                x=r.tsne3d[mask, 0], y=r.tsne3d[mask, 1], z=r.tsne3d[mask, 2], mode="markers",
                name=f"{class_display_name(name)}, misclassified" if wrong else class_display_name(name),
                text=text, hoverinfo="text",
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
    fig = _figure(max(8.0, 1.55 * cols), 1.95 * grid_rows + 2.8)     # wide enough for the titles
    grid, scatter_area = fig.subfigures(2, 1, height_ratios=[1.95 * grid_rows, 2.8])
    axes = np.atleast_1d(grid.subplots(grid_rows, cols, squeeze=False)).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, row in zip(axes, rows):
        if result.eval_images is not None:
            ax.imshow(np.squeeze(result.eval_images[row["index"]]), cmap="gray", vmin=0, vmax=1)
        answers = "\n".join(f"{m[:7]}: {class_display_name(a['predicted'])}" + ("" if a["correct"] else " ✗")
                            for m, a in row["models"].items())
        ax.set_title(f"true {class_display_name(row['true'])}" + (" (?)" if row["suspect"] else "") + f"\n{answers}",
                     fontsize=7, color="darkred" if row["suspect"] else "black")
    grid.suptitle("Misclassified images (model input); (?) = closer to another class's centroid in every model",
                  fontsize=9)
    ax = scatter_area.add_subplot()
    all_rows = result.misclassified()
    for k, name in enumerate(models):
        ratios = [row["models"][name]["ratio"] for row in all_rows]
        ax.scatter(np.arange(len(ratios)), ratios, s=14, label=name, marker="os^"[k % 3])
    from matplotlib.ticker import FormatStrFormatter, MaxNLocator

    ax.axhline(1.0, color="gray", linestyle=":")
    ax.set_yscale("log")
    ax.set_xlim(-0.5, max(len(all_rows) - 0.5, 0.5))     # whole images: no -0.045 ticks round one point
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for axis_format in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
        axis_format(FormatStrFormatter("%.2g"))       # 1.5, not 1.5 x 10^0
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
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())
    return path


def confusion_matrices_figure(matrices: dict[str, list[list[int]]], class_names: list[str]):
    """One confusion-matrix panel per model, side by side (rows: true class, columns: predicted)."""
    from matplotlib.figure import Figure
    from sklearn.metrics import ConfusionMatrixDisplay

    n = max(1, len(matrices))
    side = 2.2 + 0.35 * len(class_names)
    fig = Figure(figsize=(side * n + 0.5, side + 0.3), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax, (name, matrix) in zip(axes, matrices.items()):
        display = ConfusionMatrixDisplay(np.asarray(matrix),
                                         display_labels=[class_display_name(c) for c in class_names])
        display.plot(ax=ax, colorbar=False, cmap="Blues", values_format="d")
        ax.set_title(name)
        ax.tick_params(axis="x", labelrotation=45)
    return fig
