"""Train: new models on the sample dataset or an uploaded zip, watching them learn."""
from __future__ import annotations

import html
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pandas as pd

from cvdemo.service import BACKBONES, SHIPPED, USER_ERRORS, BusyError, RunProgress, Service

from ..common import file_path, owner_of, said, set_notice, user_error
from ..context import Shared

SAMPLE_SOURCE = "Sample dataset (digits 0, 1, 2)"
ZIP_SOURCE = "My own zip of class folders"
# explicit headers for every table, so an empty one reads as "nothing yet", not "1 2 3"
TRAIN_HEADERS = ["model", "val accuracy", "macro F1", "training time (s)", "parameters", "saved"]
WEIGHT_SOURCES = [("digits: pretrained offline on MNIST 3-9", "digits"),
                  ("imagenet: Keras download (needs network)", "imagenet"), ("none: random init", "none")]
STOPPING = "Stopping at the next batch; models that did not finish are not saved."
# a fixed colour map: the chart keeps the series it first saw, so name all four now
COLOURS = {"scratch train": "#74c0fc", "scratch val": "#1864ab",
           "finetuned train": "#ffa94d", "finetuned val": "#d9480f"}


def progress_html(progress: RunProgress) -> str:
    percent = round(100 * progress.fraction)
    stage = (f"Stopped at {percent}% at your request; the models that had not finished were not saved"
             if progress.stopped else f"{percent}% · {progress.stage}")
    return (f"<div class='progress-track'><div class='progress-fill' style='width:{percent}%'></div></div>"
            f"<p>{html.escape(stage)}</p>")


def status_html(text: str, kind: str = "info") -> str:
    """The line under Start and Stop: a busy server, a refused request, a stop on its way."""
    return f"<div class='train-status {kind}' role='status'>{html.escape(text)}</div>" if text else ""


def curves(progress: RunProgress, metric: str):
    """Long-format rows for a gr.LinePlot; nothing until the first epoch (an empty frame would make
    the chart guess non-numeric axes and keep them). Epochs go as text, in the order
    :func:`whole_epochs` gives: a numeric axis over two epochs is labelled 1.0, 1.2 ... 2.0."""
    rows = progress.curves(metric)
    if not rows:
        return gr.skip()
    return pd.DataFrame([{**row, "epoch": str(int(row["epoch"]))} for row in rows],
                        columns=["epoch", "value", "series"])


def whole_epochs(epochs: int) -> gr.LinePlot:
    """The x axis of a run of ``epochs``: every epoch, in order, as a whole number."""
    return gr.LinePlot(sort=[str(e) for e in range(1, max(1, int(epochs)) + 1)])


def data_name(choice: str, zip_path) -> str:
    """What a trained set is named after: the uploaded zip's name, or the sample digits."""
    if choice != ZIP_SOURCE:
        return "the sample digits"
    name = file_path(zip_path)[1] if isinstance(zip_path, dict) else None
    return Path(name or str(zip_path or "your zip")).stem or "your zip"


class Handlers:
    """The tab's event functions over one service."""

    def __init__(self, service: Service):
        self.service = service

    def dataset_dir(self, choice: str, zip_path):
        if choice != ZIP_SOURCE:
            return self.service.sample_dataset()
        path = file_path(zip_path)[0] if isinstance(zip_path, dict) else zip_path
        if not path:
            raise gr.Error("Upload a zip of class folders first (or choose the sample dataset).")
        try:
            return self.service.dataset_from_zip(path)
        except USER_ERRORS as err:
            raise user_error(err) from None

    def counts(self, choice, zip_path):
        if choice == ZIP_SOURCE and not zip_path:
            return gr.File(visible=True), None
        try:
            found = self.service.dataset_counts(self.dataset_dir(choice, zip_path))
        except USER_ERRORS as err:
            raise user_error(err) from None
        return gr.File(visible=choice == ZIP_SOURCE), [[name, n] for name, n in found.items()]

    def counts_here(self, choice, zip_path):
        """A zip dropped in the page: its counts, or why it cannot be used, under Start (once,
        beside the training it would feed); the API's /dataset_counts raises instead."""
        try:
            return (*self.counts(choice, zip_path), status_html(""))
        except gr.Error as err:
            return gr.skip(), None, status_html(said(err), "error")

    def train_here(self, choice, zip_path, chosen, backbone, weights, epochs, set_id, request: gr.Request):
        """The Start button: :meth:`train`, with a refusal or a failure said once, under the
        button, instead of a toast plus an error badge on every panel."""
        try:
            span = whole_epochs(self.service.limits.epochs(epochs))
        except ValueError:
            span = gr.skip()                    # train() says what is wrong with the request
        yield (gr.skip(), gr.skip(), span, span, *[gr.skip()] * 6, status_html(""))
        try:
            for update in self.train(choice, zip_path, chosen, backbone, weights, epochs, set_id, request):
                yield (*update, gr.skip())
        except gr.Error as err:
            yield (*[gr.skip()] * 10, status_html(said(err), "error"))

    def train(self, choice, zip_path, chosen, backbone, weights, epochs, set_id, request: gr.Request):
        try:
            self.service.check_training(chosen, backbone, weights, epochs)
            data = self.dataset_dir(choice, zip_path)
            job, progress = self.service.train_from(data, chosen, backbone, weights, epochs, owner=owner_of(request),
                                                    base_set=set_id or SHIPPED, data_name=data_name(choice, zip_path))
        except (ValueError, BusyError) as err:
            raise user_error(err) from None
        skip = [gr.skip()] * 6
        for now in job.follow(progress):
            yield (progress_html(now), now.log, curves(now, "loss"), curves(now, "accuracy"), *skip)
        if job.error:
            raise gr.Error(html.escape(job.error))
        progress.finished = True
        shown = (progress_html(progress), progress.log, curves(progress, "loss"), curves(progress, "accuracy"),
                 pd.DataFrame(progress.summary(), columns=TRAIN_HEADERS))
        if not job.set_id:   # stopped before any model finished: nothing saved, nothing changes
            yield (*shown[:1], progress.log + "\nNo model finished, nothing was saved.", *shown[2:], None, None,
                   gr.skip(), gr.skip(), gr.skip())
            return
        yield (*shown, self.service.trained_confusions(job.set_id, progress),
               [str(p) for p in self.service.run_files(job.set_id)], job.set_id,
               gr.Dropdown(choices=self.service.available_sets(owner_of(request) or ""), value=job.set_id),
               set_notice(job.set_id, trained=True))

    def stop(self, request: gr.Request):
        try:
            self.service.stop_training(owner_of(request))
        except KeyError as err:
            raise user_error(err) from None
        return STOPPING

    def stop_here(self, request: gr.Request):
        """The Stop button: the answer under the button, never a toast."""
        try:
            return status_html(self.stop(request))
        except gr.Error as err:
            return status_html(said(err), "error")


def layout(service: Service) -> SimpleNamespace:
    """The tab's components (a declarative layout, nothing wired)."""
    ui = SimpleNamespace()
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=300):
            ui.source = gr.Radio([SAMPLE_SOURCE, ZIP_SOURCE], value=SAMPLE_SOURCE, label="Dataset",
                                 elem_id="train-source")
            ui.zip_file = gr.File(file_types=[".zip"], type="filepath", visible=False, elem_id="train-zip",
                                  label="Zip with one folder of images per class (e.g. 0_digits/, 1_digits/)")
            ui.counts = gr.Dataframe(headers=["class", "images"], label="Images per class", interactive=False,
                                     elem_id="train-counts", max_height=220)
            ui.models = gr.CheckboxGroup([("scratch CNN", "scratch"), ("fine-tuned backbone", "finetuned")],
                                         value=["scratch", "finetuned"], label="Models to train")
            # one per line: side by side, "digits: pretrained offline…" ran under the arrow
            ui.backbone = gr.Dropdown(list(BACKBONES), value="mobilenet_v2", label="Backbone")
            ui.weights = gr.Dropdown(WEIGHT_SOURCES, value="digits", label="Backbone weights")
            ui.epochs = gr.Slider(1, service.limits.max_epochs, value=10, step=1, label="Epochs",
                                  elem_id="train-epochs")
            with gr.Row():
                ui.start = gr.Button("Start training", variant="primary", elem_id="train-start")
                ui.stop = gr.Button("Stop", variant="stop", elem_id="train-stop")
            ui.status = gr.HTML("", elem_id="train-status")
        with gr.Column(scale=3, min_width=300):
            ui.bar = gr.HTML(progress_html(RunProgress(stage="Not started")), elem_id="train-progress")
            gr.HTML("<div class='curve-legend'>" + "".join(
                f"<span><span class='swatch' style='background:{c}'></span>{html.escape(n)}</span>"
                for n, c in COLOURS.items()) + "</div>", elem_id="curve-legend")
            with gr.Row():
                # colors_in_legend=[]: no per-chart legend (it has room for three of the four series)
                ui.loss_plot = gr.LinePlot(x="epoch", y="value", color="series", color_map=COLOURS, title="Loss",
                                           x_title="epoch", y_title="loss", height=240, elem_id="loss-plot",
                                           colors_in_legend=[], min_width=260)
                ui.acc_plot = gr.LinePlot(x="epoch", y="value", color="series", color_map=COLOURS, title="Accuracy",
                                          x_title="epoch", y_title="accuracy", y_lim=[0, 1], height=240,
                                          elem_id="acc-plot", colors_in_legend=[], min_width=260)
            ui.log = gr.Textbox(label="Log", lines=10, max_lines=10, autoscroll=True, elem_id="train-log")
            ui.table = gr.Dataframe(headers=TRAIN_HEADERS, label="Comparison on the validation split",
                                    interactive=False, elem_id="train-table")
            # the figure titles each matrix; a floating label would cover the first title
            gr.Markdown("**Confusion matrices** (validation split)")
            ui.confusion = gr.Plot(label="Confusion matrices (validation split)", show_label=False, format="png",
                                   elem_id="train-confusion")
            ui.files = gr.File(label="Trained models (.keras)", file_count="multiple", interactive=False,
                               elem_id="train-files", height=140)
    return ui


def build(ctx: Shared, service: Service) -> None:
    """Lay out the Train tab and wire it to ``Service.train_from`` and the job it returns."""
    ui, on = layout(service), Handlers(service)
    counted = ([ui.source, ui.zip_file], [ui.zip_file, ui.counts])
    ui.source.change(on.counts, *counted, api_name="dataset_counts")
    # the sample dataset's counts as soon as the page opens (built on the first visit only)
    ctx.page.load(on.counts, *counted, api_name=False, show_progress="hidden")
    ui.zip_file.change(on.counts_here, counted[0], [*counted[1], ui.status], api_name="dataset_counts_zip")
    requested = [ui.source, ui.zip_file, ui.models, ui.backbone, ui.weights, ui.epochs, ctx.model_set]
    shown = [ui.bar, ui.log, ui.loss_plot, ui.acc_plot, ui.table, ui.confusion, ui.files, ctx.model_set,
             ctx.set_picker, ctx.notice]
    # show_progress hidden: the bar is the progress, and a refusal is said under the button
    ui.start.click(on.train_here, requested, [*shown, ui.status], api_name=False, concurrency_limit=None,
                   concurrency_id="train", show_progress="hidden")
    ui.stop.click(on.stop_here, None, ui.status, api_name=False, queue=False)
    # the API: the same training and stop, errors as errors (gradio_client raises them)
    api = gr.Button(visible=False)
    api.click(on.train, requested, shown, api_name="train", concurrency_limit=None, concurrency_id="train")
    gr.Button(visible=False).click(on.stop, None, gr.Textbox(visible=False), api_name="stop_training", queue=False)
