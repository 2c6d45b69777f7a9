"""Novelty ("not one of the digits I know"): a score per classifier from its own ``embedding`` features.

The score is the distance from an input's embedding to its k-th nearest neighbour among the
embeddings of the training images and augmented copies of them (the bank). The threshold is a
quantile of the *validation* images' scores only, so it says how far genuine unseen inputs of
the known classes fall. Both travel in the checkpoint's metadata (``meta["novelty"]``); a
checkpoint without them still loads and gives no verdict. The comparison with a Mahalanobis
distance and the softmax baseline that chose this is in docs/decisions.md ("Novelty") and
``python -m cvdemo bench --only novelty``.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .. import config

NOVELTY_VERSION = 1
# Per model family, the bench's best metric (docs/decisions.md, "Novelty"): the scratch CNN's
# ReLU embedding separates by direction, the fine-tuned head's and LeNet's by magnitude too.
METRICS = {"scratch": "cosine"}
DEFAULT_METRIC = "euclidean"


@dataclass(frozen=True)
class NoveltyModel:
    """kNN novelty over a bank of training embeddings, with its validation-fitted threshold."""

    bank: np.ndarray            # (B, D) float32, L2-normalised rows when metric is cosine
    threshold: float
    metric: str = DEFAULT_METRIC
    k: int = config.NOVELTY_K
    quantile: float = config.NOVELTY_QUANTILE
    validation: dict | None = None   # validation file -> its score: lets a model set fit its own threshold

    def scores(self, features: np.ndarray) -> np.ndarray:
        """(N, D) embeddings -> (N,) distances to the k-th nearest bank vector (higher: more novel)."""
        query = _normalised(features) if self.metric == "cosine" else np.asarray(features, np.float32)
        squared = ((query ** 2).sum(1)[:, None] - 2 * query @ self.bank.T + (self.bank ** 2).sum(1)[None])
        k = min(self.k, len(self.bank))
        return np.sqrt(np.maximum(np.partition(squared, k - 1, axis=1)[:, k - 1], 0.0))

    def relative(self, scores: np.ndarray) -> np.ndarray:
        """Scores over the threshold: the novelty the app reports, above 1 "not one I know". A
        degenerate fit (every embedding alike) has threshold 0: any distance is then novel."""
        return np.asarray(scores, np.float64) / max(self.threshold, 1e-9)

    def to_meta(self) -> dict:
        bank = np.ascontiguousarray(self.bank, np.float16)
        return {"version": NOVELTY_VERSION, "method": "knn", "metric": self.metric, "k": self.k,
                "quantile": self.quantile, "threshold": float(self.threshold), "fitted_on": "validation split",
                "bank_shape": list(bank.shape), "bank_float16_b64": base64.b64encode(bank.tobytes()).decode(),
                "validation_scores": {name: round(float(v), 6) for name, v in (self.validation or {}).items()}}

    @classmethod
    def from_meta(cls, meta: dict | None) -> NoveltyModel | None:
        """The novelty model stored in a checkpoint's metadata, or None (old checkpoint, other version)."""
        stored = (meta or {}).get("novelty")
        if not stored or stored.get("version") != NOVELTY_VERSION:
            return None
        bank = np.frombuffer(base64.b64decode(stored["bank_float16_b64"]), np.float16)
        bank = bank.reshape(stored["bank_shape"]).astype(np.float32)
        return cls(bank, float(stored["threshold"]), stored["metric"], int(stored["k"]), float(stored["quantile"]),
                   stored.get("validation_scores") or None)


def _normalised(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, np.float32)
    return features / (np.linalg.norm(features, axis=1, keepdims=True) + 1e-9)


def fit(embed: Callable[[np.ndarray], np.ndarray], x_train: np.ndarray, x_val: np.ndarray,
        augment: Callable[[np.ndarray], np.ndarray] | None = None, metric: str = DEFAULT_METRIC,
        copies: int = config.NOVELTY_AUGMENTED_COPIES, bank_size: int = config.NOVELTY_BANK,
        k: int = config.NOVELTY_K, quantile: float = config.NOVELTY_QUANTILE,
        seed: int = config.SEED, val_names: list[str] | None = None) -> NoveltyModel:
    """Fit a novelty model: the bank from ``x_train`` (plus ``copies`` augmented views of it),
    the threshold from ``x_val`` alone. ``embed`` maps preprocessed images to embeddings;
    ``val_names`` names the validation images, whose scores are then kept (:func:`set_threshold`).

    The augmented views widen "known" to the variations training taught the model to accept
    (slant, width, thickness), which is where other writers' digits fall.
    """
    # the bank's (view, image) pairs are drawn first: only those are augmented and embedded
    n, n_views = len(x_train), 1 + (copies if augment else 0)
    chosen = np.arange(n * n_views)
    if len(chosen) > bank_size:
        chosen = np.sort(np.random.default_rng(seed).choice(len(chosen), bank_size, replace=False))
    view, image = chosen // n, chosen % n
    parts = [x_train[image[view == 0]]] + [np.asarray(augment(x_train[image[view == v]]))
                                           for v in range(1, n_views) if (view == v).any()]
    features = np.asarray(embed(np.concatenate(parts)), np.float32)      # one pass over the bank
    bank = _normalised(features) if metric == "cosine" else features
    # the stored bank is float16: the threshold is fitted on the rounded bank the scorer will use
    bank = bank.astype(np.float16).astype(np.float32)
    unfitted = NoveltyModel(bank, np.inf, metric, k, quantile)
    val_scores = unfitted.scores(embed(x_val))
    threshold = float(np.quantile(val_scores, quantile))
    kept = dict(zip(val_names, val_scores.tolist())) if val_names is not None else None
    return NoveltyModel(bank, threshold, metric, k, quantile, kept)


def combined(ratios: list[np.ndarray]) -> np.ndarray:
    """Several models' novelty (each over its own threshold) as one: their geometric mean.

    Two models' errors differ (a 7 near the scratch CNN's 1s may sit far from the fine-tuned
    model's), so the combination separates known from unknown better than either alone
    (docs/decisions.md, "Novelty")."""
    stacked = np.maximum(np.stack([np.asarray(r, np.float64) for r in ratios]), 1e-12)
    return np.exp(np.log(stacked).mean(axis=0))


MIN_SHARED_VALIDATION = 20


def set_threshold(models: list[NoveltyModel], quantile: float = config.NOVELTY_QUANTILE) -> float | None:
    """The threshold of :func:`combined` for a set of models: its ``quantile`` over the
    validation images every model kept a score for, or None when they share fewer than
    ``MIN_SHARED_VALIDATION`` (models trained on different data)."""
    kept = [m.validation or {} for m in models]
    shared = sorted(set.intersection(*(set(v) for v in kept))) if kept else []
    if len(models) < 2 or len(shared) < MIN_SHARED_VALIDATION:
        return None
    ratios = [m.relative(np.array([v[name] for name in shared])) for m, v in zip(models, kept)]
    return float(np.quantile(combined(ratios), quantile))


def metric_for(model_name: str) -> str:
    return METRICS.get(model_name, DEFAULT_METRIC)
