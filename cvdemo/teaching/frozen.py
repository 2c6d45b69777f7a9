"""The fine-tuned model's frozen lower layers during teaching: where teaching cuts the model,
and the cut's activations remembered per input image.

Teaching a fine-tuned model trains only the layers from ``BackboneSpec.teach_from`` up, so the
layers below answer the same for the same image every time: before and after teaching, while
scoring, evaluating and fitting the novelty bank, and in the next teaching of the same model
or of one taught from it. Remembering their activations per image makes each image cost one pass through them.
"""
from __future__ import annotations

import hashlib
from typing import Callable

import numpy as np

# The remembered activations' budget: the sample set's 1,440 images take 7 MB at MobileNetV2's
# cut (3x3x112 float32); 5,000 MNIST digits at VGG16's (4x4x512) take 160 MB.
MEMORY_BYTES = 256 * 2 ** 20


def teach_from(meta: dict) -> str:
    """The first backbone layer teaching trains in a fine-tuned model (its registry entry's)."""
    from ..backbones import BACKBONES

    return BACKBONES[meta["backbone"]].teach_from


class Remembered:
    """``infer`` (images -> one array) remembering its answer per image, by the image's bytes,
    up to ``limit`` bytes of answers (then it computes the rest without keeping them)."""

    def __init__(self, infer: Callable[[np.ndarray], np.ndarray], limit: int = MEMORY_BYTES):
        self._infer, self._limit = infer, limit
        self._rows: dict[bytes, np.ndarray] = {}
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._rows)

    @staticmethod
    def _keys(images: np.ndarray) -> list[bytes]:
        return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in images]

    def unseen(self, images: np.ndarray) -> int:
        """How many of ``images`` would be computed now."""
        return len(set(self._keys(np.asarray(images, np.float32))) - self._rows.keys())

    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = np.ascontiguousarray(images, np.float32)
        keys = self._keys(images)
        first: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            if key not in self._rows:
                first.setdefault(key, i)
        fresh = {}
        if first:
            computed = np.asarray(self._infer(images[list(first.values())]))
            fresh = dict(zip(first, computed))
            for key, row in fresh.items():
                if self._bytes + row.nbytes > self._limit:
                    break
                self._rows[key] = row
                self._bytes += row.nbytes
        return np.stack([self._rows[k] if k in self._rows else fresh[k] for k in keys]) if keys else \
            np.asarray(self._infer(images))


# The lower layers of the last model taught, traced once, with what they remembered, by a hash
# of their weights: a taught model keeps its base's lower layers, so teaching it again reuses them.
# One at a time: a server teaches one set at a time.
_LOWER: dict[bytes, Remembered] = {}


def lower_of(model, at: str) -> Remembered:
    """The frozen lower layers of a fine-tuned ``model`` (images -> the activations at ``at``) on
    one traced function, remembering per image, kept for the next model with the same ones."""
    from ..models import batched, compiled_inference, split_finetuned

    lower, _ = split_finetuned(model, at)
    digest = hashlib.blake2b(at.encode(), digest_size=16)
    for weights in lower.get_weights():
        digest.update(np.ascontiguousarray(weights).tobytes())
    key = digest.digest()
    if key not in _LOWER:
        _LOWER.clear()
        _LOWER[key] = Remembered(batched(compiled_inference(lower, tuple(model.input.shape[1:])), 128))
    return _LOWER[key]
