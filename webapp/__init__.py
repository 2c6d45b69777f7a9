"""The Gradio app: everything Gradio, nothing else. ``build_app`` lays out the header and one tab
per module of ``webapp.tabs``; ``launch`` serves it with the project's limits and the REST API
(``webapp.rest``) beside it; ``main`` is ``app.py``.

Model sets: every session starts on the shipped models; a training run creates a *new* model set
that only the session which trained it switches to (with a notice). Anyone can pick any available
set from the "Models in use" dropdown. The set id lives in a per-session ``gr.State``.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")   # before gradio is imported: no network

import gradio as gr

from cvdemo import config
from cvdemo.service import SHIPPED, CheckpointError, Service

from .common import owner_of, set_notice
from .context import Shared
from .rest import Rest
from .tabs import analyze, classify, explain, retrieve, train

STATIC = Path(__file__).resolve().parent / "static"
PAGE_SCRIPTS = ("wheel_scrolls_page.js", "accessible_names.js", "log_follows.js")   # run once on load, in order


def build_app(service: Service) -> gr.Blocks:
    """The whole UI for one loaded :class:`Service`."""
    with gr.Blocks(title="cvdemo: handwritten digits") as demo:
        model_set = gr.State(SHIPPED)   # per session: the model set this browser tab uses
        to_retrieve = gr.State(None)    # made here: a component created inside gr.Tabs joins its tab bar
        to_explain = gr.State(None)
        current_input = gr.State(None)
        with gr.Row(equal_height=True):
            with gr.Column(scale=3, min_width=300):
                gr.Markdown("## ✍️ cvdemo: handwritten digits\nA CNN trained from scratch next to a "
                            "fine-tuned pretrained backbone: draw, train, retrieve, analyse.", elem_id="app-title")
            with gr.Column(scale=2, min_width=280):
                set_picker = gr.Dropdown(service.available_sets(owner=""), value=SHIPPED, label="Models in use",
                                         elem_id="model-set")
                notice = gr.Markdown(set_notice(SHIPPED), elem_id="set-notice")
        with gr.Tabs(elem_id="tabs") as tabs:
            ctx = Shared(model_set=model_set, to_retrieve=to_retrieve, to_explain=to_explain,
                         current_input=current_input, tabs=tabs, set_picker=set_picker, notice=notice, page=demo)
            with gr.Tab("Classify", id="classify"):
                classify.build(ctx, service)
            with gr.Tab("Explain", id="explain"):
                explain.build(ctx, service)
            with gr.Tab("Train", id="train"):
                train.build(ctx, service)
            with gr.Tab("Retrieve", id="retrieve"):
                retrieve.build(ctx, service)
            with gr.Tab("Analyze", id="analyze") as analyze_tab:
                analyze.build(ctx, service, analyze_tab)

        def choose_set(set_id, request: gr.Request):
            try:
                if set_id not in [s for _, s in service.available_sets(owner_of(request) or "")]:
                    raise KeyError(set_id)
                service.model_set(set_id)
            except (KeyError, CheckpointError):
                raise gr.Error("That model set is not available.") from None
            return set_id, set_notice(set_id)

        def refresh_sets(set_id, request: gr.Request):
            # the shipped models and this visitor's own runs; nobody else's
            return gr.Dropdown(choices=service.available_sets(owner_of(request) or ""), value=set_id)

        set_picker.input(choose_set, set_picker, [model_set, notice], api_name="choose_model_set")
        demo.load(refresh_sets, model_set, set_picker, api_name="list_model_sets")
        def end_session(request: gr.Request):
            service.end_session(owner_of(request))

        # closing the page forgets the visitor's added images and stops their training
        demo.unload(end_session)
    return demo


def launch(demo: gr.Blocks, service: Service | None = None, **kwargs):
    """Queue and launch with the project's limits; extra kwargs go to ``Blocks.launch``."""
    # Served to anyone: only runs/ (the trained .keras files the Train tab offers). Examples are
    # copied into Gradio's cache when the UI is built; retrieval thumbnails are sent as images.
    folders = [config.RUNS_DIR] + ([service.runs] if service is not None else [])
    options = dict(
        ssr_mode=False,
        max_file_size=f"{config.MAX_UPLOAD_MB}mb",
        allowed_paths=sorted({str(p) for p in folders}),
        theme=gr.themes.Soft(),
        css=(STATIC / "style.css").read_text(),
        js="() => {" + "".join(f"({(STATIC / name).read_text().strip()})();" for name in PAGE_SCRIPTS) + "}",
        footer_links=["api", "gradio"],
    )
    if service is not None:     # the REST API's routes, matched before Gradio's own
        options["app_kwargs"] = {"routes": Rest(service).routes}
    options.update(kwargs)
    rate = config.QUEUE_STATUS_S if config.QUEUE_STATUS_S == "auto" else float(config.QUEUE_STATUS_S)
    return demo.queue(max_size=config.QUEUE_SIZE, default_concurrency_limit=2,
                      status_update_rate=rate).launch(**options)


def main() -> None:
    """Load the shipped models, build the UI and serve it (``python app.py``)."""
    started = time.perf_counter()
    # CVDEMO_CHECKPOINTS: a different checkpoint folder (tests use tiny ones); read only here.
    service = Service(checkpoints=os.environ.get("CVDEMO_CHECKPOINTS", str(config.CHECKPOINT_DIR)))
    demo = build_app(service)
    print(f"cvdemo: models loaded and UI built in {time.perf_counter() - started:.1f} s")
    # Once the server is up: warm the retrieval engine, then compute the shipped set's analysis,
    # so the first visitor finds both ready (Service.analysis computes each set only once).
    warm = threading.Timer(5.0, _warm_up, args=(service,))
    warm.daemon = True
    warm.start()
    keep_bounded(demo, service).start()
    launch(demo, service)


def keep_bounded(demo: gr.Blocks, service: Service):
    """The service's housekeeper, over Gradio's upload and output cache too, holding the files
    the built UI itself shows (its examples) for good."""
    from gradio.utils import get_upload_folder

    from cvdemo.housekeeping import Area

    own = {Path(f) for block in demo.blocks.values() for f in (getattr(block, "temp_files", None) or ())}
    return service.housekeeper(extra=(Area(Path(get_upload_folder()), "folders"),), held=tuple(own),
                               interval_s=config.HOUSEKEEPING_S)


def _warm_up(service: Service) -> None:
    timings = service.warm_up()
    print("cvdemo: warmed up in the background: " + ", ".join(
        f"{step} {'failed' if seconds < 0 else f'{seconds:.1f} s'}" for step, seconds in timings.items()))
