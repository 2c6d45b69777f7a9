"""Pictures of an explanation, for people to look at: heat maps over the model input (uint8 RGB),
feature-map grids, the probe curves and the input as a star on the embedding map (matplotlib)."""
from __future__ import annotations

import numpy as np

from ..config import class_display_name
from .probe import TRANSFORMS

SCALE = 8                          # a 28x28 input shown at 224x224


def _grey(model_input: np.ndarray) -> np.ndarray:
    a = np.asarray(model_input, np.float32)
    a = a.mean(axis=-1) if a.ndim == 3 else a
    return np.clip(a, 0, 1)


def heat_overlay(model_input: np.ndarray, heat: np.ndarray, scale: int = SCALE) -> np.ndarray:
    """The model's input in grey under a heat map (inferno: bright where the model looked)."""
    from matplotlib import colormaps

    grey = _grey(model_input)
    colours = colormaps["inferno"](np.clip(heat, 0, 1))[..., :3]
    mixed = 0.45 * grey[..., None] + 0.55 * colours
    picture = np.rint(np.clip(mixed, 0, 1) * 255).astype(np.uint8)
    return np.kron(picture, np.ones((scale, scale, 1), np.uint8))


def feature_grid(maps: np.ndarray, columns: int = 8, side: int = 56) -> np.ndarray:
    """(H, W, K) activations as a grid of K tiles, each scaled to its own range (uint8 RGB)."""
    from matplotlib import colormaps

    h, w, k = maps.shape
    rows = -(-k // columns)
    repeat = max(1, side // h)
    tile_h, tile_w, gap = h * repeat, w * repeat, 2
    out = np.full((rows * (tile_h + gap) - gap, columns * (tile_w + gap) - gap, 3), 255, np.uint8)
    for i in range(k):
        tile = maps[..., i]
        low, high = float(tile.min()), float(tile.max())
        tile = (tile - low) / (high - low) if high > low else np.zeros_like(tile)
        rgb = np.rint(colormaps["viridis"](tile)[..., :3] * 255).astype(np.uint8)
        rgb = np.kron(rgb, np.ones((repeat, repeat, 1), np.uint8))
        y, x = (i // columns) * (tile_h + gap), (i % columns) * (tile_w + gap)
        out[y:y + tile_h, x:x + tile_w] = rgb
    return out


def feature_panel(blocks: list[tuple[str, np.ndarray]], columns: int = 8) -> np.ndarray:
    """Every block's grid under a line naming it, one above the other (uint8 RGB)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=15)
    grids = [(f"block {i + 1}: {maps.shape[0]}x{maps.shape[1]} ({name}), the {maps.shape[-1]} most active channels",
              feature_grid(maps, columns)) for i, (name, maps) in enumerate(blocks)]
    width = max(g.shape[1] for _, g in grids)
    height = sum(g.shape[0] + 30 for _, g in grids)
    out = Image.new("RGB", (width, height), (255, 255, 255))
    y = 0
    for title, grid in grids:
        ImageDraw.Draw(out).text((2, y + 6), title, fill=(20, 20, 20), font=font)
        out.paste(Image.fromarray(grid), (0, y + 28))
        y += grid.shape[0] + 30
    return np.asarray(out)


def probe_figure(curves):
    """Four panels, one per transform: each model's probability of its answer (solid) and of the
    named true class (dashed), the untouched input marked by a grey line."""
    from matplotlib.figure import Figure

    # fixed margins, not the constrained layout engine: it doubles the time to draw this figure
    fig = Figure(figsize=(9, 5.6), dpi=100)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.07, top=0.88, wspace=0.08, hspace=0.38)
    axes = fig.subplots(2, 2, sharey=True).ravel()
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"]
    for ax, (transform, values) in zip(axes, curves.grid.items()):
        for colour, (model, per) in zip(colours, curves.answer_curves.items()):
            answer = class_display_name(curves.answers[model])
            ax.plot(values, per[transform], color=colour, lw=2, label=f"{model}: p({answer})")
            if model in curves.true_curves:
                ax.plot(values, curves.true_curves[model][transform], color=colour, lw=1.5, ls="--",
                        label=f"{model}: p({class_display_name(curves.true_class)}) (true)")
        ax.axvline(values[len(values) // 2], color="#999999", lw=1)
        ax.set_title(f"{transform} ({TRANSFORMS[transform][2]})", fontsize=10)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower left")
    fig.suptitle("How the answer holds up: probability against each transform", fontsize=11)
    return fig


def map_figure(result, placement, title: str | None = None):
    """The analysis's 2D t-SNE of ``placement.model`` with the input as a star and lines to its
    nearest validation images."""
    from ..analysis.figures import tsne2d_figure

    fig = tsne2d_figure(result, placement.model)
    ax = fig.axes[0]
    model = result.models[placement.model]
    where = {int(i): n for n, i in enumerate(result.tsne_index)}
    for index in placement.neighbours:
        x, y = model.tsne2d[where[index]]
        ax.plot([placement.point[0], x], [placement.point[1], y], color="#333333", lw=0.8, alpha=0.7)
    ax.scatter(*placement.point, marker="*", s=420, color="gold", edgecolors="black", linewidths=1.2,
               zorder=5, label="your input")
    ax.legend(title="true class", fontsize=8)
    ax.set_title(title or f"{placement.model}: your input (★) among the validation images", fontsize=10)
    return fig
