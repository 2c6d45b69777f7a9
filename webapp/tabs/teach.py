"""Teach (inside Classify, under the answer): correct a wrong answer or show a new class, see
the examples collected, and teach both models them; the session then uses the taught set."""
from __future__ import annotations

import html
from types import SimpleNamespace

import gradio as gr
import pandas as pd

from cvdemo import config
from cvdemo.service import SHIPPED, USER_ERRORS, BusyError, Service

from ..common import file_path, owner_of, set_notice
from ..context import Shared
from .train import progress_html, status_html

REPORT_HEADERS = ["model", "when", "val accuracy (old classes)", "accuracy on your examples",
                  "on held-out examples", "time (s)"]


def _share(value) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def report_table(progress) -> pd.DataFrame:
    rows = []
    for name, event in progress.results.items():
        for when in ("before", "after"):
            scores = event.get(when) or {}
            rows.append([name, when, _share(scores.get("val_accuracy")), _share(scores.get("examples_accuracy")),
                         _share(scores.get("held_out_accuracy")) + (f" ({scores['held_out']})" if scores.get("held_out")
                                                                     else ""),
                         round(event["train_seconds"], 1) if when == "after" else ""])
    return pd.DataFrame(rows, columns=REPORT_HEADERS)


class Handlers:
    """The panel's event functions over one service."""

    def __init__(self, service: Service):
        self.service = service

    def choices(self, set_id):
        try:
            classes = self.service.model_set(set_id or SHIPPED).class_names
        except (KeyError, *USER_ERRORS):
            classes = []
        return gr.Dropdown(choices=[config.class_display_name(c) for c in classes], value=None)

    def strip(self, request: gr.Request):
        """The examples (what the model saw, captioned with class and source) and the counts line."""
        examples = self.service.examples.list(owner_of(request))
        counts = self.service.examples.counts(owner_of(request))
        said = ", ".join(f"{html.escape(str(config.class_display_name(c)))}: {n}" for c, n in sorted(counts.items()))
        left = self.service.teach_cfg.max_examples - len(examples)
        line = (f"<p id='teach-counts'>{len(examples)} example(s): {said} · room for {left} more</p>" if examples else
                "<p id='teach-counts'>No examples yet: classify something, then say what it really is.</p>")
        return [(str(e.seen), f"{config.class_display_name(e.label)} · {e.source} · {e.id[:6]}") for e in examples], line

    def add(self, source, label, set_id, request: gr.Request):
        if source is None:
            return (*self.strip(request), status_html("Draw or upload something first, then say what it is.", "error"))
        try:
            example = self.service.add_example(owner_of(request), source, label, set_id or SHIPPED,
                                               origin="drawing" if not isinstance(source, str) else "upload")
        except USER_ERRORS as err:
            return (*self.strip(request), status_html(str(err.args[0] if err.args else err), "error"))
        known = example.label in self.service.model_set(set_id or SHIPPED).class_names
        shown = config.class_display_name(example.label)
        return (*self.strip(request), status_html(f"Added as a {shown}" + ("" if known else " (a new class)") + "."))

    def remove(self, chosen, request: gr.Request):
        if not chosen:
            return (*self.strip(request), status_html("Click an example in the strip first, then remove it.", "error"))
        example_id = str(chosen).rsplit("·", 1)[-1].strip()
        found = [e.id for e in self.service.examples.list(owner_of(request)) if e.id.startswith(example_id)]
        removed = bool(found) and self.service.remove_example(owner_of(request), found[0])
        return (*self.strip(request), status_html("Removed." if removed else "That example is gone already.",
                                                  "info" if removed else "error"), None)

    @staticmethod
    def selected(evt: gr.SelectData):
        return evt.value.get("caption") if isinstance(evt.value, dict) else None

    def reset(self, request: gr.Request):
        self.service.reset_examples(owner_of(request))
        return (*self.strip(request), status_html("All your examples were removed."))

    def download(self, request: gr.Request):
        try:
            return str(self.service.examples_zip(owner_of(request))), status_html("")
        except USER_ERRORS as err:
            return None, status_html(str(err), "error")

    def upload(self, payload, set_id, request: gr.Request):
        path = file_path(payload)[0] if isinstance(payload, dict) else payload
        if not path:
            return (*self.strip(request), status_html("Upload a zip of class folders (e.g. 3/*.png).", "error"))
        try:
            added, skipped = self.service.import_examples(owner_of(request), path, set_id or SHIPPED)
        except USER_ERRORS as err:
            return (*self.strip(request), status_html(str(err), "error"))
        more = f"; skipped {len(skipped)}: " + "; ".join(skipped[:3]) if skipped else ""
        return (*self.strip(request), status_html(f"Added {added} example(s) from the zip{more}."))

    def teach(self, set_id, request: gr.Request):
        """Teach and follow: progress, then the before/after table, the matrices and the new set."""
        skip = [gr.skip()] * 5
        try:
            job, progress = self.service.start_teaching(owner_of(request), set_id or SHIPPED)
        except (BusyError, *USER_ERRORS) as err:
            yield (status_html(str(err.args[0] if err.args else err), "error"), *skip)
            return
        for now in job.follow(progress):
            yield (progress_html(now), *skip)
        if progress.error or not job.set_id:
            yield (status_html(progress.error or "Stopped: nothing was taught.", "error"), *skip)
            return
        yield (status_html(f"Taught in {sum(r['train_seconds'] for r in progress.results.values()):.1f} s of training: "
                           f"your session now uses “{progress.set_label}”."),
               report_table(progress), self.service.trained_confusions(job.set_id, progress), job.set_id,
               gr.Dropdown(choices=self.service.available_sets(owner_of(request) or ""), value=job.set_id),
               set_notice(job.set_id, trained=True))


def layout() -> SimpleNamespace:
    ui = SimpleNamespace()
    with gr.Accordion("Wrong? Teach the models", open=False, elem_id="teach"):
        with gr.Row(equal_height=True):
            ui.label = gr.Dropdown(choices=[], allow_custom_value=True, label="It is a … (pick one, or type a new class)",
                                   elem_id="teach-label", scale=3)
            ui.add = gr.Button("Add as example", elem_id="teach-add", scale=1)
        ui.status = gr.HTML("", elem_id="teach-status")
        ui.counts = gr.HTML("", elem_id="teach-counts-box")
        ui.strip = gr.Gallery(label="Your examples, as the models see them (click one to remove it)", columns=8,
                              height=200, allow_preview=False, elem_id="teach-strip", object_fit="contain")
        with gr.Row():
            ui.remove = gr.Button("Remove selected", size="sm", elem_id="teach-remove")
            ui.reset = gr.Button("Remove all", size="sm", elem_id="teach-reset")
            ui.download = gr.Button("Download as zip", size="sm", elem_id="teach-download")
        with gr.Row():
            ui.zip_out = gr.File(label="Your examples (dataset layout: class/file.png)", interactive=False)
            ui.zip_in = gr.File(label="Upload a zip of examples", file_types=[".zip"], elem_id="teach-zip")
        ui.teach = gr.Button("Teach the models", variant="primary", elem_id="teach-run")
        ui.progress = gr.HTML("", elem_id="teach-progress")
        ui.report = gr.Dataframe(headers=REPORT_HEADERS, interactive=False, elem_id="teach-report")
        ui.matrices = gr.Plot(label="Confusion matrices after teaching (validation images)")
        ui.chosen = gr.State(None)
    return ui


def wire(ctx: Shared, service: Service, ui: SimpleNamespace) -> None:
    """Wire the panel (laid out by :func:`layout` under Classify's answer) to the service."""
    on = Handlers(service)
    strip = [ui.strip, ui.counts]
    ctx.page.load(on.strip, None, strip, api_name=False, show_progress="hidden")
    ctx.model_set.change(on.choices, ctx.model_set, ui.label, api_name=False, show_progress="hidden")
    ctx.page.load(on.choices, ctx.model_set, ui.label, api_name=False, show_progress="hidden")
    ui.add.click(on.add, [ctx.current_input, ui.label, ctx.model_set], [*strip, ui.status], api_name="add_example")
    ui.strip.select(on.selected, None, ui.chosen, api_name=False, show_progress="hidden")
    ui.remove.click(on.remove, ui.chosen, [*strip, ui.status, ui.chosen], api_name="remove_example")
    ui.reset.click(on.reset, None, [*strip, ui.status], api_name="reset_examples")
    ui.download.click(on.download, None, [ui.zip_out, ui.status], api_name="download_examples")
    ui.zip_in.upload(on.upload, [ui.zip_in, ctx.model_set], [*strip, ui.status], preprocess=False,
                     api_name="upload_examples")
    ui.teach.click(on.teach, ctx.model_set, [ui.progress, ui.report, ui.matrices, ctx.model_set, ctx.set_picker,
                                            ctx.notice], api_name="teach", concurrency_limit=4,
                   concurrency_id="teach", show_progress="hidden")     # a second teacher is told "busy", not queued
