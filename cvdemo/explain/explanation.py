"""One input explained across a model set: each model's verdict and novelty, Grad-CAM beside
occlusion, the scratch CNN's feature maps, the robustness probe and the input's place on the map.

Built by ``Service.explain``; this module only holds the answer and turns it into numbers
(``as_dict``, the ``/explain`` and ``explain --json`` shape) and pictures (:mod:`.pictures`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .placement import Placement
from .probe import ProbeCurves


@dataclass
class ModelExplanation:
    name: str
    gradcam: np.ndarray                         # (S, S) in [0, 1] over the model's input
    occlusion: np.ndarray                       # (S, S) in [0, 1]
    gradcam_layer: str
    feature_maps: list[tuple[str, np.ndarray]] = field(default_factory=list)   # (block, (H, W, K))


@dataclass
class Explanation:
    classification: object                      # service.Classification of the same input
    models: dict[str, ModelExplanation]
    probe: ProbeCurves
    placement: Placement | None = None
    placement_note: str | None = None           # why there is no placement, when there is none
    analysis: object = None                     # analysis.AnalysisResult the map comes from

    @property
    def verdict(self) -> str:
        """One sentence for the whole input."""
        result = self.classification
        names = ", ".join(_display(c) for c in next(iter(result.models.values())).probabilities)
        if result.known is None:
            return "These models have no novelty threshold (trained before it existed): no verdict on novelty."
        if result.known:
            labels = {a.label for a in result.models.values()}
            said = _display(next(iter(labels))) if len(labels) == 1 else "different digits"
            return f"Known: the models recognise this as one of {names} (they say {said})."
        looks = result.looks_like
        tail = (f" It looks like a {_display(looks.label)}: its nearest database images are "
                f"{_display(looks.label)}s." if looks and looks.label else "")
        return f"Not one of {names}.{tail}"

    def _shown_paths(self) -> list[str]:
        root = Path(self.analysis.data.get("root", "/"))
        return [_shown(p, root) for p in self.analysis.paths]

    def as_dict(self) -> dict:
        result = self.classification
        answers = result.as_dict()
        return {
            "verdict": self.verdict, "known": result.known, "novelty": result.novelty,
            "looks_like": result.looks_like.label if result.looks_like else None,
            # "file", not "path": gradio_client downloads any JSON dict with a "path" key
            "neighbours": [{"file" if k == "path" else k: v for k, v in row.items()}
                           for row in (result.looks_like.as_dict()["neighbours"] if result.looks_like else [])],
            "models": {name: {**answers[name], "gradcam_layer": m.gradcam_layer,
                              "gradcam": _grid(m.gradcam), "occlusion": _grid(m.occlusion),
                              "feature_maps": [{"block": b, "shape": list(a.shape)} for b, a in m.feature_maps]}
                       for name, m in self.models.items()},
            "probe": self.probe.as_dict(),
            "map": self.placement.as_dict(self._shown_paths()) if self.placement else None,
            "map_note": self.placement_note,
        }


def _shown(path: str, root: Path) -> str:
    """An analysis image's path for clients: from its dataset's folder on, never the server's own."""
    try:
        return Path(path).relative_to(root.parent).as_posix()
    except ValueError:
        return Path(path).name


def _grid(heat: np.ndarray) -> list[list[float]]:
    return np.round(np.asarray(heat, np.float64), 3).tolist()


def _display(name: str) -> str:
    from ..config import class_display_name

    return class_display_name(name)
