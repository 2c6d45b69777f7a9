"""Explain: for one input, whether each model knows it, where each looked (Grad-CAM beside
occlusion), the scratch CNN's feature maps, how the answer breaks under rotation, scale, stroke
thickness and shift, and where the input falls among the validation images."""
from __future__ import annotations

import html
from types import SimpleNamespace

import gradio as gr

from cvdemo import config
from cvdemo.explain import pictures
from cvdemo.explain.probe import NEUTRAL, TRANSFORMS
from cvdemo.service import SHIPPED, CheckpointError, ImageError, Service, to_display

from ..common import GONE_SET, MODEL_TITLES, empty_verdict, error_verdict, file_path, image_file, said, user_error
from ..context import Shared

ORDER = config.MODEL_ORDER
NOT_SAID = "not said"
WAITING = "Press \"Explain this answer\" on Classify, or drop a digit here."


def verdict_html(explanation) -> str:
    known = explanation.classification.known
    style = "empty" if known is None else "agree" if known else "unknown"
    return f"<div class='{style}'><span class='big'>{html.escape(explanation.verdict)}</span></div>"


def novelty_table(classification) -> str:
    rows = ["| model | answer | novelty | verdict |", "|---|---|---:|---|"]
    for name, a in classification.models.items():
        verdict = "no threshold" if a.known is None else "✓ known" if a.known else "✗ **unknown**"
        novelty = "–" if a.novelty is None else f"{a.novelty:.2f}"
        rows.append(f"| {name} | {html.escape(config.class_display_name(a.label))} "
                    f"({a.probabilities[a.label]:.0%}) | {novelty} | {verdict} |")
    from cvdemo.service.sets import voters

    voting = voters(classification.models, lambda a: a.novelty is not None)
    why = (f"The input's verdict combines {' and '.join(voting)} (the geometric mean of their novelty, against "
           "a threshold fitted on their shared validation images)" if classification.novelty is not None
           else "The input's verdict is the majority of the models")
    baseline = [n for n in classification.models if n not in voting and classification.models[n].novelty is not None]
    return "\n".join(rows) + ("\n\nNovelty: the distance to the nearest examples a model was trained on, over "
                              f"the distance that covers 99% of its validation images; above 1, unknown. {why}"
                              + (f"; {', '.join(baseline)}, the baseline, does not vote." if baseline else "."))


class Handlers:
    """The tab's event functions over one service."""

    def __init__(self, service: Service):
        self.service = service

    def explain(self, payload, true_class, set_id):
        """A dropped, pasted or captured input, or the Explain button; the outputs plus the drop
        zone. An input that cannot be explained is said in the verdict, once, with the previous
        input's pictures cleared and the drop zone emptied."""
        path, name = file_path(payload)
        if path is None:
            return [*self.nothing("Draw or upload a digit on Classify and press \"Explain this answer\", "
                                  "or drop an image here.", error=True), gr.skip()]
        try:
            return [*self.show(self._explained(path, true_class, set_id, name)), gr.skip()]
        except gr.Error as err:
            return [*self.nothing(said(err), error=True), None]

    def received(self, source, true_class, set_id):
        """Classify's input (a drawing array or an uploaded file's path), shown and explained in
        one event: a second event for the explanation would cost a round trip."""
        if source is None:
            raise gr.Error("Draw or upload a digit first, then ask why.")
        shown = image_file(source) if hasattr(source, "shape") else source
        return [shown, *self.show(self._explained(source, true_class, set_id, "The drawing"))]

    def _explained(self, source, true_class, set_id, name):
        try:
            return self.service.explain(source, set_id or SHIPPED, None if true_class == NOT_SAID else true_class,
                                        name=name)
        except ImageError as err:
            raise user_error(err) from None
        except (KeyError, CheckpointError):
            raise gr.Error(GONE_SET) from None

    def show(self, explanation) -> list:
        answers = explanation.classification.models
        looks = explanation.classification.looks_like
        neighbours = [(image_file(self.service.thumbnail(h.path)), f"{h.label} · {h.distance:.2f}")
                      for h in (looks.neighbours.hits if looks else [])]
        heat = [gr.Image(value=image_file(pictures.heat_overlay(answers[n].model_input, m.gradcam))
                         if (m := explanation.models.get(n)) else None, visible=n in explanation.models)
                for n in ORDER]
        occl = [gr.Image(value=image_file(pictures.heat_overlay(answers[n].model_input, m.occlusion))
                         if (m := explanation.models.get(n)) else None, visible=n in explanation.models)
                for n in ORDER]
        blocks = next((m.feature_maps for m in explanation.models.values() if m.feature_maps), [])
        features = image_file(pictures.feature_panel(blocks)) if blocks else None
        first = next(iter(answers.values()))
        if explanation.placement is not None:
            result, placement = explanation.analysis, explanation.placement
            chart = pictures.map_figure(result, placement)
            nearest = [(image_file(self.service.thumbnail(result.paths[i])),
                        f"{config.class_display_name(result.class_names[int(result.labels[i])])} · {d:.2f}")
                       for i, d in zip(placement.neighbours, placement.distances)]
            map_note = f"The star is placed among its {len(nearest)} nearest validation images (lines), " \
                       "weighted by closeness in the model's embedding space (t-SNE cannot place new points)."
        else:
            chart, nearest, map_note = None, [], explanation.placement_note or ""
        return [verdict_html(explanation), novelty_table(explanation.classification),
                gr.Gallery(value=neighbours, visible=bool(neighbours)), *heat, *occl,
                gr.Image(value=features, visible=features is not None), pictures.probe_figure(explanation.probe),
                gr.Plot(value=chart, visible=chart is not None), map_note,
                gr.Gallery(value=nearest, visible=bool(nearest)), first.model_input, *NEUTRAL.values(),
                image_file(to_display(first.model_input)), ""]

    @staticmethod
    def nothing(text: str, error: bool = False) -> list:
        """Every output emptied, under ``text``: a failed explanation must not leave the previous
        input's pictures beside its error."""
        return [(error_verdict if error else empty_verdict)(text), "", gr.Gallery(value=[], visible=False), *[None] * (2 * len(ORDER)),
                gr.Image(value=None, visible=False), None, gr.Plot(value=None, visible=False), "",
                gr.Gallery(value=[], visible=False), None, *NEUTRAL.values(), None, ""]

    def transformed(self, model_input, set_id, rotation, scale, thickness, shift):
        if model_input is None:
            return None, "Explain an input first."
        try:
            image, answers = self.service.transform_and_classify(
                model_input, set_id or SHIPPED, rotation=rotation, scale=scale, thickness=thickness, shift=shift)
        except (KeyError, CheckpointError):
            raise gr.Error(GONE_SET) from None
        said = " · ".join(f"**{n}**: {html.escape(config.class_display_name(label))} ({p:.0%})"
                          for n, (label, p) in answers.items())
        return image_file(to_display(image)), said

    def api(self, payload, set_id, true_class):
        path, name = file_path(payload)
        if path is None:
            raise gr.Error("Send one image file (gradio_client.handle_file(path)).")
        try:
            return self.service.explain(path, set_id or SHIPPED, true_class or None, name=name,
                                        with_map="ready").as_dict()
        except ImageError as err:
            raise user_error(err) from None
        except (KeyError, CheckpointError):
            raise gr.Error(GONE_SET) from None


def layout(service: Service) -> SimpleNamespace:
    """The tab's components (a declarative layout, nothing wired)."""
    ui = SimpleNamespace(heat={}, occl={}, sliders={}, model_input=gr.State(None))
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=300):
            ui.input = gr.Image(type="filepath", sources=["upload", "clipboard", "webcam"], height=240,
                                label="The input to explain", elem_id="explain-input")
            ui.true = gr.Dropdown([NOT_SAID, *[str(d) for d in config.SAMPLE_CLASSES]], value=NOT_SAID,
                                  label="What it really is (adds its curve to the probe)", elem_id="explain-true")
            ui.run = gr.Button("Explain", variant="primary", elem_id="explain-run")
        with gr.Column(scale=3, min_width=300):
            ui.verdict = gr.HTML(empty_verdict(WAITING), elem_id="explain-verdict", elem_classes=["verdict"])
            ui.novelty = gr.Markdown(elem_id="explain-novelty")
            ui.neighbours = gr.Gallery(label="Looks like: nearest database images",
                                       columns=5,
                                       height=150, object_fit="contain", visible=False,
                                       elem_id="explain-neighbours")
    gr.Markdown("### Where each model looked\n**Grad-CAM** (bright: the regions whose activations pushed "
                "the model to its answer) beside **occlusion** (bright: covering this region lowers the "
                "answer's probability most). When the two agree, the explanation is trustworthy.")
    with gr.Row(elem_id="heat-row"):
        for name in ORDER:
            ui.heat[name] = gr.Image(label=f"{name}: Grad-CAM", interactive=False, buttons=[], height=180,
                                     min_width=140, visible=name != "lenet", elem_id=f"gradcam-{name}")
            ui.occl[name] = gr.Image(label=f"{name}: occlusion", interactive=False, buttons=[], height=180,
                                     min_width=140, visible=name != "lenet", elem_id=f"occlusion-{name}")
    gr.Markdown(f"### Inside the {MODEL_TITLES['scratch']}\nThe 16 most active channels of each conv block: "
                "edges at full size, strokes at half, parts of digits at a quarter.")
    ui.features = gr.Image(label="Feature maps, one grid per block", interactive=False, buttons=[],
                           elem_id="explain-features")
    gr.Markdown("### How the answer breaks\nEach curve: a model's probability of its answer as the input "
                "is rotated, scaled, thickened or shifted (dashed: of the true class, when you name it). "
                "Move the sliders to see the changed input and every model's answer.")
    ui.probe = gr.Plot(label="Probability against each transform", show_label=False, elem_id="explain-probe")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=280):
            for name, (low, high, unit) in TRANSFORMS.items():
                ui.sliders[name] = gr.Slider(low, high, value=NEUTRAL[name], step=(high - low) / 48,
                                             label=f"{name} ({unit})", elem_id=f"probe-{name}")
        with gr.Column(scale=2, min_width=200):
            ui.transformed = gr.Image(label="The changed input", interactive=False, buttons=[], height=180,
                                      elem_id="probe-input")
            ui.transformed_answer = gr.Markdown(elem_id="probe-answer")
    gr.Markdown("### Your input among the validation images")
    ui.map = gr.Plot(label="2D t-SNE map with your input as a star", show_label=False, elem_id="explain-map")
    ui.map_note = gr.Markdown(elem_id="explain-map-note")
    ui.map_neighbours = gr.Gallery(label="Its 5 nearest validation images (class · distance)", columns=5, height=150,
                                   object_fit="contain", elem_id="explain-map-neighbours")
    return ui


def build(ctx: Shared, service: Service) -> None:
    """Lay out the Explain tab and wire it to ``Service.explain``."""
    ui, on = layout(service), Handlers(service)
    outputs = [ui.verdict, ui.novelty, ui.neighbours, *ui.heat.values(), *ui.occl.values(), ui.features,
               ui.probe, ui.map, ui.map_note, ui.map_neighbours, ui.model_input, *ui.sliders.values(),
               ui.transformed, ui.transformed_answer]
    common = dict(concurrency_limit=2, concurrency_id="explain")
    explained = [*outputs, ui.input]
    ui.run.click(on.explain, [ui.input, ui.true, ctx.model_set], explained, preprocess=False, api_name=False, **common)
    ui.input.upload(on.explain, [ui.input, ui.true, ctx.model_set], explained, preprocess=False, api_name=False,
                    **common)               # a dropped image is explained at once
    ui.input.clear(lambda: on.nothing(WAITING), None, outputs, api_name=False, show_progress="hidden")
    ui.true.input(on.explain, [ui.input, ui.true, ctx.model_set], explained, preprocess=False, api_name=False,
                  **common)
    # Classify's "Explain this answer": show the input here, then explain it
    ctx.to_explain.change(on.received, [ctx.to_explain, ui.true, ctx.model_set], [ui.input, *outputs],
                          api_name=False, **common
                          ).failure(lambda: on.nothing("That input could not be explained.", error=True), None,
                                    outputs, api_name=False, show_progress="hidden")
    slider_inputs = [ui.model_input, ctx.model_set, *ui.sliders.values()]
    for slider in ui.sliders.values():
        slider.input(on.transformed, slider_inputs, [ui.transformed, ui.transformed_answer], api_name=False,
                     trigger_mode="always_last", show_progress="hidden", concurrency_limit=4,
                     concurrency_id="probe")

    # API-only endpoint: one image file in, the explanation as numbers out
    api_image = gr.Image(type="filepath", visible=False, label="image")
    api_set = gr.Textbox(value=SHIPPED, visible=False, label="model_set")
    api_true = gr.Textbox(value="", visible=False, label="true_class")
    api_result = gr.JSON(visible=False, label="explanation")
    gr.Button(visible=False).click(on.api, [api_image, api_set, api_true], api_result, preprocess=False,
                                   api_name="explain", **common)
