"""report.md: every figure of an analysis with the tables a reader needs next to them."""
from __future__ import annotations

from pathlib import Path

from .. import config
from ..config import class_display_name
from .result import AnalysisResult


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
    out.append(_leakage(result))
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
    out += ["## Misclassified images\n",
            "For each image some model gets wrong: every model's answer and the Euclidean distance of the "
            "image's embedding to the centroid of its true class and of the predicted class. The ratio "
            "d(true)/d(pred) is comparable across models (> 1: the image sits nearer the predicted class).\n",
            "![misclassified](misclassified.png)\n", *_misclassified_table(result)]
    suspects = result.suspects()
    out.append(f"**Likely mislabelled or ambiguous:** {len(suspects)} image(s) sit closer to another class's "
               "centroid than to their own label's in every model's feature space"
               + (": " + ", ".join(f"`{Path(s['path']).name}` (labelled {class_display_name(s['true'])})" for s in suspects[:40])
                  if suspects else ".") + "\n")
    out += ["## Calibration\n", "Reliability diagrams (10 equal-width confidence bins; count per bin at the "
            "bottom). ECE = support-weighted mean |accuracy − confidence|.\n", "![calibration](calibration.png)\n"]
    return "\n".join(out)


def _leakage(result: AnalysisResult) -> str:
    """The leakage check's paragraph (and its table of near-duplicate pairs)."""
    data = result.data
    if not data.get("n_train_checked"):
        return "**Leakage check:** not run (the training images are not available here).\n"
    text = (f"**Leakage check:** each of the {len(result.labels)} evaluated images was compared with its "
            f"nearest neighbour among {data['n_train_checked']} training images (preprocessed pixels). "
            f"{len(result.duplicates)} pair(s) have an RMS pixel difference ≤ {data['duplicate_rms']}; "
            f"the closest pair differs by {_fmt(data.get('closest_train_rms'))}.\n")
    if result.duplicates:
        text += "\n" + _table(result.duplicates[:30], [("path", "evaluated image", ""),
                                                      ("train_path", "training image", ""),
                                                      ("rms", "RMS difference", ".4f"),
                                                      ("label", "label", ""), ("train_label", "train label", "")]) + "\n"
    return text


def _misclassified_table(result: AnalysisResult) -> list[str]:
    """One row per image some model gets wrong, every model's answer and distances beside it."""
    mis = result.misclassified()
    if not mis:
        return []
    columns = [("file", "image", ""), ("true", "true", "")]
    rows = []
    for row in mis:
        flat = {"file": Path(row["path"]).name, "true": class_display_name(row["true"]),
                "suspect": "yes" if row["suspect"] else ""}
        for name, a in row["models"].items():
            flat[f"{name}_pred"] = class_display_name(a["predicted"]) + ("" if a["correct"] else " ✗")
            flat[f"{name}_conf"] = a["confidence"]
            flat[f"{name}_d"] = f"{a['d_true']:.2f} / {a['d_pred']:.2f}"
            flat[f"{name}_ratio"] = a["ratio"]
        rows.append(flat)
    for name in result.models:
        columns += [(f"{name}_pred", f"{name}", ""), (f"{name}_conf", "conf.", ".2f"),
                    (f"{name}_d", "d true / d pred", ""), (f"{name}_ratio", "ratio", ".2f")]
    columns.append(("suspect", "closer to another class in every model", ""))
    return [_table(rows, columns), ""]
