"""Model sets as the service serves them: each checkpoint with a compiled inference function,
and the answers a classification gives. Immutable once built; safe to share between threads."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..images import PaperSteps, steps_picture


@dataclass
class ModelAnswer:
    name: str
    label: str
    probabilities: dict[str, float]
    ms: float
    weights: str                       # human label of where the weights came from
    model_input: np.ndarray            # what the model received, (S, S, C) float32


@dataclass
class Classification:
    models: dict[str, ModelAnswer]
    set_id: str
    steps: PaperSteps | None = None    # how a photo of paper was read; None for drawings and scans

    def steps_picture(self) -> np.ndarray | None:
        """The photo steps, two by two (uint8 RGB), or None when the input was not a photo."""
        return None if self.steps is None else steps_picture(self.steps)

    @property
    def agree(self) -> bool:
        return len({answer.label for answer in self.models.values()}) <= 1

    def as_dict(self) -> dict:
        return {name: {"label": a.label, "probabilities": a.probabilities} for name, a in self.models.items()}


class ServedModel:
    """A checkpoint plus a compiled, warmed-up inference function (safe to call from threads)."""

    def __init__(self, checkpoint):
        from ..models import compiled_inference

        self.checkpoint = checkpoint
        self.name = checkpoint.name
        self.meta = checkpoint.meta
        self._infer = compiled_inference(checkpoint.model, tuple(checkpoint.input_shape))

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self._infer(batch)

    @property
    def weights_label(self) -> str:
        return self.meta.get("weights_label", "")


@dataclass
class ModelSet:
    id: str
    label: str
    folder: Path
    models: dict[str, ServedModel]

    @property
    def class_names(self) -> list[str]:
        return next(iter(self.models.values())).checkpoint.class_names

    @property
    def checkpoints(self) -> dict:
        """{name: cvdemo.checkpoints.Checkpoint} of the set's models."""
        return {name: served.checkpoint for name, served in self.models.items()}
