"""Benchmark section "novelty": does each model say "not one of 0, 1, 2" when it should, and is
the robustness probe fast enough to follow a slider.

Known: held-out 0-2 from every robustness set and the database; each model's own validation
images. Unknown: held-out 3-9 (UCI writers, typed fonts, photos of paper, the database) and
letters, scribbles and shapes (``cvdemo.testsets.unknowns``). The stored kNN score is compared
with the softmax baseline and a Mahalanobis distance (class means, one shared covariance, from
the model's own training split), all from the same forward passes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cvdemo import config

from .options import BenchError, _timed, summarize

UNKNOWN_DIGITS = tuple(range(3, 10))
HELD_OUT_KNOWN = ("writers", "fonts", "canvas", "styles", "paper", "paper_table", "database")


def _images(folder: Path, keep=lambda path: True) -> tuple[np.ndarray, list[str], int]:
    """Every image under ``folder`` preprocessed as a digit, the digit its folder names ("" for
    none), and how many the preprocessing refused."""
    from cvdemo.images import ImageError, preprocess

    images, digits, refused = [], [], 0
    for path in sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in config.IMAGE_EXTENSIONS):
        if not keep(path):
            continue
        try:
            images.append(preprocess(path, "digits"))
            digits.append(path.parent.name.split("_")[0] if path.parent.name[:1].isdigit() else "")
        except ImageError:
            refused += 1
    return (np.stack(images) if images else np.zeros((0, 28, 28, 1), np.float32)), digits, refused


def _sets(workdir: Path) -> tuple[dict, dict]:
    """({name: (images, refused)} known, unknown)."""
    from cvdemo.testsets import write_fonts, write_paper, write_testsets, write_writers
    from cvdemo.testsets.unknowns import write_unknowns

    known = {name: _images(folder) for name, folder in write_testsets(workdir / "testsets").items()}
    low = {str(d) for d in config.SAMPLE_CLASSES}
    known["database"] = _images(config.DATABASE_DIR, lambda p: p.parent.name in low)
    other = workdir / "unknown"
    write_writers(other / "writers_3-9", UNKNOWN_DIGITS)
    write_fonts(other / "fonts_3-9", UNKNOWN_DIGITS)
    write_paper(other / "paper_3-9", UNKNOWN_DIGITS, per_class=15)
    unknown = {name: _images(other / name) for name in ("writers_3-9", "fonts_3-9", "paper_3-9")}
    unknown["database_3-9"] = _images(config.DATABASE_DIR, lambda p: p.parent.name not in low)
    unknown.update({name: _images(folder) for name, folder in write_unknowns(other).items()})
    return known, unknown


def _mahalanobis(train_features: np.ndarray, train_labels: np.ndarray):
    classes = np.unique(train_labels)
    means = np.stack([train_features[train_labels == c].mean(0) for c in classes])
    centred = train_features - means[np.searchsorted(classes, train_labels)]
    covariance = centred.T @ centred / len(centred)
    precision = np.linalg.inv(covariance + 1e-2 * np.trace(covariance) / len(covariance) * np.eye(len(covariance)))

    def score(features: np.ndarray) -> np.ndarray:
        d = features[:, None, :] - means[None]
        return np.einsum("nkd,de,nke->nk", d, precision, d).min(axis=1)
    return score


def _auroc(known: np.ndarray, unknown: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return round(float(roc_auc_score(np.r_[np.zeros(len(known)), np.ones(len(unknown))], np.r_[known, unknown])), 4)


def bench_novelty(checkpoints: Path, workdir: Path) -> dict:
    """AUROC per model and method, rejection rates at the stored threshold, looks_like accuracy,
    and the probe's time (2 models x 4 transforms x 25 steps)."""
    from cvdemo.data import ensure_sample_dataset
    from cvdemo.explain.calibrate import recorded_split
    from cvdemo.service import Service

    ensure_sample_dataset()
    service = Service(checkpoints=Path(checkpoints), warm=False)
    served = service.model_set().models
    with_novelty = {n: m for n, m in served.items() if m.novelty is not None}
    if not with_novelty:
        raise BenchError(f"no checkpoint in {checkpoints} has a novelty threshold (python -m cvdemo novelty)")
    known, unknown = _sets(workdir)
    every = {**known, **unknown}
    result: dict = {"n": {name: len(images) + refused for name, (images, _, refused) in every.items()},
                    "refused": {name: refused for name, (_, _, refused) in every.items()}, "models": {}}
    ratios: dict[str, dict[str, np.ndarray]] = {}
    for name, model in with_novelty.items():
        split = recorded_split(model.meta)
        val = split.x_val
        result["n"]["validation"] = len(val)
        mahalanobis = _mahalanobis(model.embed(split.x_train), split.y_train)
        scores = {"knn": {}, "softmax": {}, "mahalanobis": {}}
        for set_name, (images, _, _) in {**every, "validation": (val, [], 0)}.items():
            probabilities, features = model.infer(images)
            scores["knn"][set_name] = model.novelty.relative(model.novelty.scores(features))
            scores["softmax"][set_name] = 1 - probabilities.max(axis=1)
            scores["mahalanobis"][set_name] = mahalanobis(features)
        ratios[name] = scores["knn"]
        held_known = lambda s: np.concatenate([s[k] for k in HELD_OUT_KNOWN])            # noqa: E731
        digits_3_9 = lambda s: np.concatenate([s[k] for k in unknown if k.endswith("3-9")])  # noqa: E731
        rejected = {k: _rejected(v, result["refused"].get(k, 0)) for k, v in scores["knn"].items()}
        result["models"][name] = {
            "auroc": {method: _auroc(held_known(s), digits_3_9(s)) for method, s in scores.items() if s},
            "rejected": rejected,
            "rejected_3_9": _pooled(scores["knn"], [k for k in unknown if k.endswith("3-9")], result["refused"]),
            "metric": model.novelty.metric, "threshold": round(model.novelty.threshold, 5)}
    # the app's verdict for an input: the models' combined novelty over the set's threshold
    from cvdemo.explain.novelty import combined
    from cvdemo.service.sets import voters

    threshold = service.model_set().novelty_threshold
    voting = voters(with_novelty, lambda m: True)
    joint = {k: combined([ratios[m][k] for m in voting]) / (threshold or 1.0) for k in [*every, "validation"]}
    votes = {k: v > 1 for k, v in joint.items()}
    names_3_9 = [k for k in unknown if k.endswith("3-9")]
    result["set"] = {"models": voting, "threshold": threshold,
                     "auroc": _auroc(np.concatenate([joint[k] for k in HELD_OUT_KNOWN]),
                                     np.concatenate([joint[k] for k in names_3_9])),
                     "rejected": {k: _rejected(v, result["refused"].get(k, 0)) for k, v in joint.items()},
                     "rejected_3_9": _pooled(joint, names_3_9, result["refused"])}
    best = max(result["models"], key=lambda n: result["models"][n]["auroc"]["knn"])
    result["best"] = {"model": best, **result["models"][best], "auroc_knn": result["models"][best]["auroc"]["knn"]}
    result["looks_like"] = _looks_like(service, unknown, votes)
    result["probe_ms"] = _probe_time(served, known["database"][0][0])
    return result


def _rejected(ratios: np.ndarray, refused: int) -> float:
    """The share rejected; an input the preprocessing refuses is rejected (right for unknowns)."""
    total = len(ratios) + refused
    return round(float(((ratios > 1).sum() + refused) / total), 4) if total else 0.0


def _pooled(ratios: dict, names: list[str], refused: dict) -> float:
    total = sum(len(ratios[n]) + refused.get(n, 0) for n in names)
    return round(float(sum((ratios[n] > 1).sum() + refused.get(n, 0) for n in names) / total), 4)


def _looks_like(service, unknown: dict, votes: dict) -> dict:
    """On the 3-9 the set rejects (not those from the database itself: they would find
    themselves), how often the database's neighbours name the right digit."""
    right = total = 0
    for name in ("writers_3-9", "fonts_3-9", "paper_3-9"):
        images, digits, _ = unknown[name]
        for image, digit, rejected in zip(images, digits, votes[name]):
            if not rejected:
                continue
            found = service.looks_like(image)
            total += 1
            right += found is not None and found.label == digit
    return {"n": total, "right": round(right / total, 4) if total else None}


def _probe_time(served: dict, image: np.ndarray) -> dict:
    from cvdemo.explain.probe import probe

    two = {n: (served[n], served[n].checkpoint.class_names) for n in list(served)[:2]}
    probe(image, two)
    timings = summarize(_timed(lambda: probe(image, two), 15))
    return {**timings, "models": list(two)}
