"""The explain half of the service: one input through every model of a set with Grad-CAM,
occlusion, feature maps, the robustness probe and its place on the analysis map. A mixin of
:class:`cvdemo.service.Service` (it calls ``classify``, ``model_set`` and the analyses)."""
from __future__ import annotations

import threading
from typing import Any

import numpy as np

from .sets import SHIPPED, ServedModel

_GRADCAM_LOCK = threading.Lock()


def grad_cam(served: ServedModel):
    """The served model's Grad-CAM, built and traced on first use (seconds for a backbone)."""
    from ..explain.attribution import GradCam

    with _GRADCAM_LOCK:
        found = getattr(served, "_grad_cam", None)
        if found is None:
            found = served._grad_cam = GradCam(served.checkpoint.model)
        return found


class Explaining:
    """``explain`` over the service's model sets."""

    def warm_explain(self, set_id: str = SHIPPED) -> None:
        """Build and trace every model's Grad-CAM now (seconds for a backbone), not on the first click."""
        for served in self.model_set(set_id).models.values():
            model_input = np.zeros((1, *served.checkpoint.input_shape), np.float32)
            grad_cam(served)(model_input, [0])

    def explain(self, source: Any, set_id: str = SHIPPED, true_class: str | None = None,
                name: str | None = None, with_map: str = "ready"):
        """Explain one input -> explain.Explanation. Raises ImageError for an unusable input.

        ``true_class``: the class the user says it is (a class name or its display form), for
        the probe's second curve. ``with_map``: "ready" places the input on the map only when
        the set's analysis is already computed (the app never makes a visitor wait a minute for
        it); "compute" computes it if needed (the CLI); "no" skips it.
        """
        from ..config import class_display_name
        from ..explain.attribution import feature_maps, occlusion
        from ..explain.explanation import Explanation, ModelExplanation
        from ..explain.probe import probe

        result = self.classify(source, set_id or SHIPPED, name=name)
        served = self.model_set(set_id or SHIPPED).models
        explained = {}
        for model_name, answer in result.models.items():
            model = served[model_name]
            picked = model.checkpoint.class_names.index(answer.label)
            cam = grad_cam(model)
            explained[model_name] = ModelExplanation(
                model_name, cam(answer.model_input[None], [picked])[0],
                occlusion(model, answer.model_input, picked), cam.layer,
                feature_maps(model.checkpoint.model, answer.model_input)
                if model.meta.get("model") == "scratch" else [])
        classes = next(iter(served.values())).checkpoint.class_names
        wanted = next((c for c in classes if true_class is not None and
                       str(true_class) in (c, class_display_name(c))), None)
        first = next(iter(result.models.values()))
        curves = probe(first.model_input, {n: (served[n], served[n].checkpoint.class_names)
                                           for n, a in result.models.items()
                                           if a.model_input.shape == first.model_input.shape}, wanted)
        explanation = Explanation(result, explained, curves)
        self._place(explanation, set_id or SHIPPED, with_map)
        return explanation

    def transform_and_classify(self, model_input, set_id: str = SHIPPED, **values: float):
        """A model input under the probe's transforms (``rotation=``, ``scale=``, ``thickness=``,
        ``shift=``, applied in that order) and each model's (answer, probability) on it."""
        from ..explain.probe import NEUTRAL, TRANSFORMS, transformed

        image = np.asarray(model_input, np.float32)
        for name in TRANSFORMS:
            value = float(values.get(name, NEUTRAL[name]))
            if value != NEUTRAL[name]:
                image = transformed(image, name, value)
        answers = {}
        for model_name, served in self.model_set(set_id).models.items():
            if tuple(served.checkpoint.input_shape) == image.shape:
                probabilities = served(image[None])[0]
                picked = int(probabilities.argmax())
                answers[model_name] = (served.checkpoint.class_names[picked], float(probabilities[picked]))
        return image, answers

    def _place(self, explanation, set_id: str, with_map: str) -> None:
        if with_map == "no":
            return
        placement, analysis, note = self.place_on_map(explanation.classification, set_id, with_map)
        explanation.placement, explanation.analysis, explanation.placement_note = placement, analysis, note

    def place_on_map(self, classification, set_id: str = SHIPPED, with_map: str = "ready", model: str | None = None):
        """Where a classified input falls on the set's 2D t-SNE map of ``model`` (default: the
        first of the set that the analysis has) -> (explain.Placement | None, AnalysisResult |
        None, why there is none or None). ``with_map`` as in :meth:`explain`."""
        from ..explain.placement import place

        analysis = self._analyses.ready(set_id) if with_map == "ready" else self.analysis(set_id)
        if analysis is None:
            return None, None, "The map appears once this model set has been analysed (open the Analyze tab)."
        result = analysis.result
        name = model if model in result.models and model in classification.models else next(
            (n for n in classification.models if n in result.models), None)
        if name is None:
            return None, result, "The analysis has none of these models."
        features = self.model_set(set_id).models[name].embed(classification.models[name].model_input[None])[0]
        mapped = result.models[name]
        return place(mapped.features, result.tsne_index, mapped.tsne2d, features, name), result, None
