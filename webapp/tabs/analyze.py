"""Analyze: metrics, figures, a rotatable 3D t-SNE, misclassified images and the report bundle of
the session's model set (computed once per set, then cached on disk). Loads when the tab opens."""
from __future__ import annotations

import html
import json
from types import SimpleNamespace

import gradio as gr
import pandas as pd
from gradio.components.plot import PlotData
from PIL import Image

from cvdemo.config import class_display_name as short
from cvdemo.explain import pictures
from cvdemo.service import USER_ERRORS, Service, to_display

from ..common import served_copy, user_error
from ..context import Shared

COMPARISON_HEADERS = ["model", "accuracy", "macro_f1", "ece", "params", "train_seconds", "latency_ms", "weights"]
PER_CLASS_HEADERS = ["model", "class", "precision", "recall", "f1", "support"]


def tsne3d(analysis, model: str) -> PlotData:
    """The 3D t-SNE figure with its legend below the scene (beside it, the legend takes half a
    phone) and without wheel zoom: plotly turns it on for 3D scenes, and a page scrolled past the
    plot would zoom it to a dot. gr.Plot passes a ``config`` in the figure's JSON to plotly."""
    figure = analysis.tsne3d_plot(model)
    figure.update_layout(legend={"orientation": "h", "yanchor": "top", "y": 0, "x": 0})
    document = json.loads(figure.to_json())
    document["config"] = {"scrollZoom": False}
    return PlotData(type="plotly", plot=json.dumps(document))


def figure_gallery(analysis) -> list[tuple]:
    picture = lambda name: Image.open(analysis.figures[name])
    gallery = [(picture(f"confusion_{m}.png"), f"{m}: confusion matrix") for m in analysis.models]
    gallery += [(picture("curves.png"), "training curves (dotted: fine-tuning starts)")]
    gallery += [(picture(f"tsne2d_{m}.png"), f"{m}: 2D t-SNE") for m in analysis.models]
    gallery += [(picture("calibration.png"), "reliability diagrams and ECE"),
                (picture("misclassified.png"), "misclassified images and distance ratios")]
    return gallery


def suspects_text(analysis) -> str:
    found = analysis.suspects()
    listed = ", ".join(html.escape(f"{r['path'].split('/')[-1]} (labelled {short(r['true'])})") for r in found[:30])
    return ("**Likely mislabelled or ambiguous** (closer to another class's centroid than to their own label's "
            f"in every model): {len(found)} image(s)" + (": " + listed if found else "."))


def detail_markdown(detail: dict) -> str:
    lines = [f"**{html.escape(detail['path'].split('/')[-1])}**, labelled **{short(detail['true'])}**\n",
             "| model | says | confidence | d(true centroid) | d(predicted centroid) | nearest centroid |",
             "|---|---|---|---|---|---|"]
    for m, a in detail["models"].items():
        nearest = min(a["centroid_distances"], key=a["centroid_distances"].get)
        lines.append(f"| {m} | {short(a['predicted'])}{'' if a['predicted'] == detail['true'] else ' ✗'} | "
                     f"{a['confidence']:.2f} | {a['d_true']:.2f} | {a['d_pred']:.2f} | {short(nearest)} |")
    return "\n".join(lines)


class Handlers:
    """The tab's event functions over one service."""

    def __init__(self, service: Service):
        self.service = service

    def get(self, set_id, progress=None):
        try:
            return self.service.analysis(set_id, progress=progress)
        except USER_ERRORS as err:
            raise user_error(err) from None

    def placed(self, analysis, set_id, source, model=None):
        """The 2D map of ``model`` with the Classify tab's last input as a star, and its nearest
        validation images; (None, [], why) when there is no input or it cannot be read."""
        if source is None:
            return None, [], "Classify a digit first: it then appears here as a star on the map."
        try:
            classification = self.service.classify(source, set_id, looks_like=False)
        except USER_ERRORS:
            return None, [], "Your last input could not be read again."
        placement, result, note = self.service.place_on_map(classification, set_id, "ready", model)
        if placement is None:
            return None, [], note or ""
        nearest = [(self.service.thumbnail(result.paths[i]),
                    f"{short(result.class_names[int(result.labels[i])])} · {d:.2f}")
                   for i, d in zip(placement.neighbours, placement.distances)]
        return (pictures.map_figure(result, placement), nearest,
                f"{placement.model}: the star sits among its {len(nearest)} nearest validation images, weighted "
                "by closeness in the embedding (t-SNE cannot place a new point; see the README).")

    def place(self, set_id, source, model):
        return self.placed(self.get(set_id), set_id, source, model)

    def show(self, set_id, source=None, progress=gr.Progress()):
        analysis = self.get(set_id, lambda f, m: progress(f, desc=m))
        rows = analysis.misclassified()
        tiles = [(to_display(analysis.model_input(r["index"]), 4),
                  f"true {short(r['true'])} · " + " · ".join(
                      f"{m} {short(a['predicted'])}{'' if a['correct'] else ' ✗'}" for m, a in r["models"].items()))
                 for r in rows]
        data = analysis.result.data
        leak = (f"Leakage check: {len(analysis.result.duplicates)} near-duplicate(s) of training images "
                f"among the evaluated ones." if data.get("n_train_checked") else "Leakage check not run.")
        first = analysis.models[0]
        picture = lambda name: Image.open(analysis.figures[name])
        return (f"Evaluated on the {html.escape(data['description'])}. {leak}",
                pd.DataFrame(analysis.comparison(), columns=COMPARISON_HEADERS).round(4),
                picture("distribution.png"), picture("samples.png"),
                pd.DataFrame([{**row, "class": short(row["class"])} for row in analysis.per_class()],
                             columns=PER_CLASS_HEADERS).round(4), figure_gallery(analysis),
                gr.Dropdown(choices=analysis.models, value=first), tsne3d(analysis, first),
                tiles, [r["index"] for r in rows], suspects_text(analysis), None, "",
                gr.Dropdown(choices=analysis.models, value=first), *self.placed(analysis, set_id, source, first))

    def rotate(self, set_id, model):
        if not model:
            return None
        analysis = self.get(set_id)
        if model not in analysis.models:
            raise gr.Error("That model is not in the analysed set; press 'Refresh'.")
        return tsne3d(analysis, model)

    def pick(self, set_id, indices, evt: gr.SelectData):
        if not indices or evt.index is None or evt.index >= len(indices):
            return None, ""
        analysis = self.get(set_id)
        index = indices[evt.index]
        return analysis.picture(index), detail_markdown(analysis.detail(index))

    def bundle(self, set_id, progress=gr.Progress()):
        try:
            path = self.service.report_bundle(set_id, progress=lambda f, m: progress(f, desc=m))
        except USER_ERRORS as err:
            raise user_error(err) from None
        except RuntimeError as err:        # a TFLite conversion that failed its check
            raise gr.Error(f"The bundle could not be built: {html.escape(str(err))}") from None
        return gr.File(value=served_copy(path, "cvdemo-bundles"), visible=True), "Report bundle ready: download it below."


def layout() -> SimpleNamespace:
    """The tab's components (a declarative layout, nothing wired)."""
    ui = SimpleNamespace(shown_rows=gr.State([]))      # evaluated-image indices behind the gallery tiles
    gr.Markdown("Accuracy, per-class scores, confusion matrices, training curves, t-SNE of the features, "
                "misclassified images and calibration of the models in use, on their validation split. "
                "It loads when you open this tab: the first analysis of a new model set takes a minute or "
                "two, after that it opens instantly.")
    with gr.Row():
        ui.load_btn = gr.Button("Refresh", elem_id="analyze-load")
        ui.bundle_btn = gr.Button("Build the report bundle (.zip)", elem_id="analyze-bundle")
    ui.status = gr.Markdown(elem_id="analyze-status")
    ui.bundle_file = gr.File(label="Report bundle: figures, report.md, metrics.json, .keras + .tflite models, "
                             "classify.py", visible=False, elem_id="analyze-zip")
    ui.comparison = gr.Dataframe(headers=COMPARISON_HEADERS, label="Side by side", interactive=False,
                                 elem_id="analyze-comparison")
    with gr.Row():
        # the figures carry their own titles: a label would sit on top of them
        ui.distribution = gr.Image(label="Class distribution", type="pil", interactive=False, show_label=False)
        ui.samples = gr.Image(label="Samples per class (model input)", type="pil", interactive=False,
                              show_label=False)
    ui.per_class = gr.Dataframe(headers=PER_CLASS_HEADERS, label="Per-class precision / recall / F1",
                                interactive=False, elem_id="analyze-per-class")
    ui.figures = gr.Gallery(label="Confusion matrices, training curves, 2D t-SNE, calibration", columns=2,
                            height="auto", object_fit="contain", elem_id="analyze-figures")
    with gr.Row():
        ui.tsne_model = gr.Dropdown(label="3D t-SNE of model", choices=[], interactive=True)
    ui.tsne3d = gr.Plot(label="3D t-SNE of the embedding layer (drag to rotate)", elem_id="analyze-tsne3d")
    gr.Markdown("### Your input among the validation images")
    ui.map_model = gr.Dropdown(label="Map of model", choices=[], interactive=True, elem_id="analyze-map-model")
    ui.map = gr.Plot(label="2D t-SNE with your last input as a star", show_label=False, elem_id="analyze-map")
    ui.map_note = gr.Markdown(elem_id="analyze-map-note")
    ui.map_neighbours = gr.Gallery(label="Its 5 nearest validation images (class · distance)", columns=5, height=150,
                                   object_fit="contain", elem_id="analyze-map-neighbours")
    gr.Markdown("### Misclassified images\nClick one to see it large, with every model's answer and its "
                "distance to the class centroids in each model's feature space.")
    with gr.Row():
        ui.wrong = gr.Gallery(label="Misclassified by at least one model", columns=5, height="auto",
                              allow_preview=False, elem_id="analyze-misclassified", scale=3)
        with gr.Column(scale=2):
            ui.wrong_image = gr.Image(label="Selected image", type="pil", interactive=False, height=240)
            ui.wrong_detail = gr.Markdown(elem_id="analyze-detail")
    ui.suspects = gr.Markdown()
    return ui


def build(ctx: Shared, service: Service, tab: gr.Tab) -> None:
    """Lay out the Analyze tab and wire it to ``Service.analysis``; opening ``tab`` shows it."""
    ui, on = layout(), Handlers(service)
    outputs = [ui.status, ui.comparison, ui.distribution, ui.samples, ui.per_class, ui.figures, ui.tsne_model,
               ui.tsne3d, ui.wrong, ui.shown_rows, ui.suspects, ui.wrong_image, ui.wrong_detail,
               ui.map_model, ui.map, ui.map_neighbours, ui.map_note]
    heavy = dict(concurrency_limit=1, concurrency_id="analysis")
    ui.load_btn.click(on.show, [ctx.model_set, ctx.current_input], outputs, api_name="analysis", **heavy)
    tab.select(on.show, [ctx.model_set, ctx.current_input], outputs, api_name=False, **heavy)   # cached after the first
    ui.map_model.input(on.place, [ctx.model_set, ctx.current_input, ui.map_model],
                       [ui.map, ui.map_neighbours, ui.map_note], api_name=False)
    ui.tsne_model.input(on.rotate, [ctx.model_set, ui.tsne_model], ui.tsne3d, api_name="analysis_tsne3d")
    ui.wrong.select(on.pick, [ctx.model_set, ui.shown_rows], [ui.wrong_image, ui.wrong_detail], api_name=False)
    ui.bundle_btn.click(on.bundle, ctx.model_set, [ui.bundle_file, ui.status], api_name="report_bundle", **heavy)
