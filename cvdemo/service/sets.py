"""Model sets as the service serves them: each checkpoint with its inference function (LiteRT
or compiled Keras, ``cvdemo.litert``), and the answers a classification gives. Immutable once built; safe to share between threads."""
from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from ..images import PaperSteps, steps_picture

SHIPPED = "shipped"                    # the id of the model set in checkpoints/


@dataclass
class ModelAnswer:
    name: str
    label: str
    probabilities: dict[str, float]
    ms: float
    weights: str                       # human label of where the weights came from
    model_input: np.ndarray            # what the model received, (S, S, C) float32
    novelty: float | None = None       # distance to the known examples over the model's threshold
    runtime: str = ""                  # what ran it: "litert" or "keras" (ServedModel.backend)

    @property
    def known(self) -> bool | None:
        """Novelty within the model's threshold; None when the checkpoint has no novelty fitted."""
        return None if self.novelty is None else self.novelty <= 1.0

    def as_dict(self) -> dict:
        return {"label": self.label, "probabilities": self.probabilities, "known": self.known,
                "novelty": None if self.novelty is None else round(self.novelty, 5), "runtime": self.runtime}


def voters(models: dict, usable) -> list[str]:
    """The models whose novelty makes the input's verdict: every usable one but the baselines
    (``config.NOVELTY_BASELINES``), unless the baselines are all there is."""
    from .. import config

    found = [name for name, m in models.items() if usable(m)]
    return [n for n in found if n not in config.NOVELTY_BASELINES] or found


@dataclass
class LooksLike:
    """What a rejected input resembles: the majority label of its nearest database images."""

    label: str | None
    neighbours: object                 # retrieval.RetrievalAnswer, nearest first

    def as_dict(self) -> dict:
        return {"label": self.label, "neighbours": self.neighbours.as_list()}


@dataclass
class Classification:
    models: dict[str, ModelAnswer]
    set_id: str
    steps: PaperSteps | None = None    # how a photo of paper was read; None for drawings and scans
    looks_like: LooksLike | None = None  # set when the models reject the input and a database answers

    set_threshold: float | None = None  # the model set's threshold of the combined novelty

    @property
    def novelty(self) -> float | None:
        """The input's novelty: the models' combined (``explain.novelty.combined``) over the
        set's threshold, fitted on their shared validation images; above 1, unknown. None when
        the set has no such threshold."""
        from ..explain.novelty import combined

        ratios = [self.models[n].novelty for n in voters(self.models, lambda a: a.novelty is not None)]
        if self.set_threshold is None or not ratios:
            return None
        return float(combined([np.array([r]) for r in ratios])[0] / max(self.set_threshold, 1e-9))

    @property
    def known(self) -> bool | None:
        """The input's verdict: the combined novelty within the set's threshold; without one,
        most models with a verdict accept it (a tie rejects); None when no model has a threshold."""
        if self.novelty is not None:
            return self.novelty <= 1.0
        votes = [self.models[n].known for n in voters(self.models, lambda a: a.known is not None)]
        return None if not votes else sum(votes) > len(votes) / 2

    def steps_picture(self) -> np.ndarray | None:
        """The photo steps, two by two (uint8 RGB), or None when the input was not a photo."""
        return None if self.steps is None else steps_picture(self.steps)

    @property
    def agree(self) -> bool:
        return len({answer.label for answer in self.models.values()}) <= 1

    def as_dict(self) -> dict:
        """{model: {label, probabilities, known, novelty, looks_like}}: the shape of ``/classify``.

        ``looks_like`` (what a rejected input resembles, else None) is the input's, repeated in
        every model's entry so the answer stays a map of models for clients that read it as one.
        """
        looks_like = self.looks_like.label if self.looks_like else None
        return {name: {**a.as_dict(), "looks_like": looks_like} for name, a in self.models.items()}


class ServedModel:
    """A checkpoint plus a warmed-up inference function, safe to call from threads: LiteRT when
    its conversion answers like Keras, else the compiled Keras function (``backend`` says which,
    ``backend_reason`` why)."""

    def __init__(self, checkpoint, backend: str | None = None):
        from ..explain.novelty import NoveltyModel
        from ..litert import fast_inference
        from ..models import with_embedding

        self.checkpoint = checkpoint
        self.name = checkpoint.name
        self.meta = checkpoint.meta
        self.novelty = NoveltyModel.from_meta(checkpoint.meta)
        model = checkpoint.model
        both = with_embedding(model)
        # a conversion shipped beside the checkpoint (python -m cvdemo convert) spares the first start
        served = fast_inference(both, tuple(checkpoint.input_shape), backend=backend,
                                beside=Path(checkpoint.path).parent / "litert")
        self.served = served
        self.graph = both                  # what is served: probabilities and embedding in one pass

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities of a batch of model inputs."""
        return self.served.infer(batch)[0]

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities, ``embedding`` features) of a batch from one forward pass."""
        probabilities, features = self.served.infer(batch)
        return probabilities, features

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """The ``embedding`` features of a batch (the analysis map's space)."""
        return self.infer(batch)[1]

    def answer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(probabilities, novelty or None) of a batch from one forward pass. Novelty is the
        distance to the known examples over the model's threshold: above 1, "not one I know"."""
        probabilities, features = self.infer(batch)
        if self.novelty is None:
            return probabilities, None
        return probabilities, self.novelty.relative(self.novelty.scores(features))

    @property
    def backend(self) -> str:
        """What serves the model now: "litert" or "keras" (until a background conversion is in)."""
        return self.served.backend

    @property
    def backend_reason(self) -> str:
        return self.served.reason

    @property
    def weights_label(self) -> str:
        return self.meta.get("weights_label", "")


def ship_conversions(model_set) -> list[dict]:
    """Convert and check each model of ``model_set`` now, and write the conversions that answer
    like Keras beside its checkpoints (``<folder>/litert/``), where a fresh start reads them
    instead of converting; one report per model. Conversions of models gone are removed."""
    from ..fsutil import atomic_write_bytes
    from ..litert import converted, fast_inference, model_key

    target, reports = Path(model_set.folder) / "litert", []
    for name, served in model_set.models.items():
        checked = fast_inference(served.graph, tuple(served.checkpoint.input_shape), backend="auto", when="now",
                                 beside=target)
        report = {"model": name, "runtime": checked.backend, "reason": checked.reason, "file": None}
        if checked.backend == "litert":
            key = model_key(served.graph)
            path = target / f"{key}.tflite"
            if not path.exists():
                atomic_write_bytes(path, converted(served.graph, beside=target, key=key)[0])
            report["file"] = str(path)
        reports.append(report)
    for stale in set(target.glob("*.tflite")) - {Path(r["file"]) for r in reports if r["file"]}:
        stale.unlink()
    return reports


@dataclass
class ModelSet:
    """The models of one set, and the batcher that runs concurrent classifications together."""

    id: str
    label: str
    folder: Path
    models: dict[str, ServedModel]

    def __post_init__(self):
        from .batching import MicroBatcher

        self.batcher = MicroBatcher(self.forward, name=f"classify-{self.id}")

    @staticmethod
    def input_key(served: ServedModel) -> tuple:
        """What a model's input depends on: its preprocessing profile and input shape."""
        return served.checkpoint.profile, tuple(served.checkpoint.input_shape)

    def forward(self, items: list[dict]) -> list[dict]:
        """Each model once over a batch of prepared inputs (``{input_key: (S, S, C) array}`` each):
        per input, ``{model: (probabilities, novelty or None, ms of the batch's pass)}``."""
        answers: list[dict] = [{} for _ in items]
        for name, served in self.models.items():
            key = self.input_key(served)
            started = time.perf_counter()
            probabilities, novelty = served.answer(np.stack([item[key] for item in items]))
            ms = (time.perf_counter() - started) * 1000
            for i, answer in enumerate(answers):
                answer[name] = (probabilities[i], None if novelty is None else float(novelty[i]), ms)
        return answers

    @property
    def class_names(self) -> list[str]:
        return next(iter(self.models.values())).checkpoint.class_names

    @property
    def profile(self) -> str:
        """What the set reads: "digits" (one digit, 28x28 grey) or "photo" (colour pictures)."""
        profiles = {served.checkpoint.profile for served in self.models.values()}
        return "photo" if "photo" in profiles else "digits"

    @property
    def input_words(self) -> str:
        """The set's model input, in words for the page."""
        side = next(iter(self.models.values())).checkpoint.input_shape[0]
        return (f"the {side}×{side} colour image each model actually received" if self.profile == "photo" else
                f"the {side}×{side} image each model actually received after preprocessing (white ink on black, "
                "like MNIST)")

    @property
    def checkpoints(self) -> dict:
        """{name: cvdemo.checkpoints.Checkpoint} of the set's models."""
        return {name: served.checkpoint for name, served in self.models.items()}

    @cached_property
    def novelty_threshold(self) -> float | None:
        """The threshold of the set's combined novelty (``explain.novelty.set_threshold``)."""
        from ..explain.novelty import set_threshold

        return set_threshold([self.models[n].novelty for n in voters(self.models, lambda m: m.novelty is not None)])
