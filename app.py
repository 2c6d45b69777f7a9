"""Gradio app: classify, train, retrieve and analyse handwritten digits.

Wires components to plain ``cvdemo`` functions: one small function per tab, handlers that call
one service method and return plain data. Knows nothing about Keras or numpy maths.

Model sets: every session starts on the shipped models; a training run creates a *new* model
set that only the session which trained it switches to (with a notice). Anyone can pick any
available set from the "Models in use" dropdown. The set id lives in a per-session ``gr.State``.
"""
from __future__ import annotations

import html
import os
import threading
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import pandas as pd  # noqa: E402

from cvdemo import config  # noqa: E402
from cvdemo.checkpoints import CheckpointError  # noqa: E402
from cvdemo.data import DatasetError, ensure_sample_dataset, scan_folder  # noqa: E402
from cvdemo.images import ImageError, to_display  # noqa: E402
from cvdemo.progress import RunProgress, confusion_figure  # noqa: E402
from cvdemo.service import DISPLAY_ORDER, SHIPPED, BusyError, Service  # noqa: E402

# Components shared between tabs, filled by build_app() before any tab is built:
#   "model_set":   gr.State, the session's model-set id (str; cvdemo.service.SHIPPED by default)
#   "to_retrieve": gr.State, the image Classify sends to Retrieve ("Find similar images"): a 2-D
#                  uint8 drawing (255 = paper) or an image file path; its .change fires on send
#   "tabs":        the gr.Tabs; return gr.Tabs(selected="retrieve") to switch tab
SHARED: dict[str, gr.components.Component | gr.Tabs] = {}

SAMPLE_SOURCE = "Sample dataset (digits 0, 1, 2)"
ZIP_SOURCE = "My own zip of class folders"
# explicit headers for every table, so an empty one reads as "nothing yet", not "1 2 3"
RESULT_HEADERS = ["rank", "path", "label", "distance"]
TRAIN_HEADERS = ["model", "val accuracy", "macro F1", "training time (s)", "parameters", "saved"]
COMPARISON_HEADERS = ["model", "accuracy", "macro_f1", "ece", "params", "train_seconds", "latency_ms", "weights"]
PER_CLASS_HEADERS = ["model", "class", "precision", "recall", "f1", "support"]
MODEL_TITLES = {"scratch": "CNN trained from scratch", "finetuned": "Fine-tuned pretrained backbone",
                "lenet": "LeNet-5"}
WEIGHT_SOURCES = [("digits: pretrained offline on MNIST 3-9", "digits"),
                  ("imagenet: Keras download (needs network)", "imagenet"), ("none: random init", "none")]

# Gradio 6's editor waits for its "Brush" tool to be picked, and drops the tool again on "Clear
# canvas". Keep a tool picked: whenever none of Brush/Erase/Pan is active, pick Brush, so the first
# stroke always draws.
PICK_BRUSH_JS = """
() => {
  const name = b => (b.getAttribute('aria-label') || b.title || '').trim();
  const active = b => b.classList.contains('highlight') || b.classList.contains('selected')
                      || b.getAttribute('aria-pressed') === 'true';
  const keepBrush = () => {
    const root = document.querySelector('#sketch');
    if (!root || !root.offsetParent) return;           // not rendered or tab hidden
    const buttons = [...root.querySelectorAll('button')];
    if (buttons.some(b => ['Brush', 'Erase', 'Pan'].includes(name(b)) && active(b))) return;
    const brush = buttons.find(b => name(b) === 'Brush');
    if (brush) brush.click();
  };
  setInterval(keepBrush, 250);
}
"""

CLICK_CLEAR_CANVAS_JS = """
() => { document.querySelector('#sketch button[aria-label="Clear canvas"]')?.click(); }
"""

CSS = """
.verdict .agree {background:#e7f6ec; border-left:6px solid #1f9d55; padding:10px 14px; border-radius:6px;}
.verdict .disagree {background:#fff4e5; border-left:6px solid #e8590c; padding:10px 14px; border-radius:6px;}
.verdict .empty {background:var(--block-background-fill); border-left:6px solid #adb5bd; padding:10px 14px;
                 border-radius:6px; color:var(--body-text-color-subdued);}
.verdict .big {font-size:1.25em; font-weight:600;}
/* gallery captions carry rank, file, class and distance: wrap them instead of cutting them off */
#retrieve-gallery .caption-label, #analyze-figures .caption-label {white-space:normal; max-width:calc(100% - 8px);}
/* retrieval results: each caption under its picture, not over the digit, and the first row clear
   of the gallery's floating label */
#retrieve-gallery .grid-container {padding-top:34px;}
#retrieve-gallery .thumbnail-item {aspect-ratio:auto; height:auto; display:flex; flex-direction:column;}
#retrieve-gallery .thumbnail-item > img {aspect-ratio:1 / 1; height:auto;}
#retrieve-gallery .caption-label {position:static; max-width:none; margin:0; border-radius:0; text-align:left;}
/* one legend for both training charts (the charts' own legends cut off the fourth series) */
.curve-legend {display:flex; flex-wrap:wrap; gap:2px 18px; font-size:.9em; padding:0 4px;}
.curve-legend .swatch {display:inline-block; width:22px; height:4px; border-radius:2px; margin-right:6px;
                       vertical-align:middle;}
.progress-track {background:#e9ecef; border-radius:6px; height:18px; overflow:hidden;}
.progress-fill {background:#4c6ef5; height:100%; transition:width .4s;}
#set-notice {min-height:0;}
/* keep all four top-level tabs visible on a phone instead of hiding two behind "More tabs" */
@media (max-width: 640px) {
  #tabs > .tab-wrapper button {padding-left:8px; padding-right:8px;}
  #retrieve-gallery .grid-container, #analyze-misclassified .grid-container
    {grid-template-columns:repeat(2, minmax(0, 1fr)) !important;}
  #analyze-figures .grid-container {grid-template-columns:minmax(0, 1fr) !important;}
  #retrieve-gallery .grid-container {padding-top:54px;}    /* the label wraps to two lines */
}
"""


# ----------------------------------------------------------------------------- helpers

def _user_error(err: Exception) -> gr.Error:
    """A gr.Error carrying a cvdemo message (which may quote a user's file name: escaped)."""
    return gr.Error(html.escape(str(err)))


def _classify(service: Service, source, set_id: str, name: str | None = None):
    try:
        return service.classify(source, set_id or SHIPPED, name=name)
    except ImageError as err:
        raise _user_error(err) from None
    except (KeyError, CheckpointError):
        raise gr.Error("That model set is not available any more. Pick another in "
                       "\"Models in use\" at the top of the page.") from None


def _file_path(payload) -> tuple[str | None, str | None]:
    """(path, original name) of an un-preprocessed gr.Image/gr.File value (a FileData dict)."""
    if payload is None:
        return None, None
    if isinstance(payload, dict):
        path, name = payload.get("path"), payload.get("orig_name")
    else:
        path, name = getattr(payload, "path", None), getattr(payload, "orig_name", None)
    # With preprocess=False Gradio 6.31 does not check a gr.Image value sent without its
    # "meta" key: {"path": "/any/file"} would reach us. Only Gradio's own upload cache is read.
    if path is not None and not _uploaded(path):
        raise gr.Error("That file was not uploaded to this app. Upload the image itself.")
    return path, name


def _uploaded(path) -> bool:
    from gradio.utils import get_upload_folder

    try:
        return Path(path).resolve().is_relative_to(Path(get_upload_folder()).resolve())
    except (OSError, ValueError, TypeError):
        return False


def _image_file(image) -> str:
    """A PNG file for an image output, written once and atomically under the temp dir.

    Gradio 6.31 rewrites its cached copy of a numpy/PIL output in place on every request
    (``save_pil_to_cache``), so two visitors getting the same picture at once can truncate each
    other's download; a file path is copied into its cache atomically instead.
    """
    import hashlib
    import io
    import tempfile

    from PIL import Image

    picture = image if isinstance(image, Image.Image) else Image.fromarray(image)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    data = buffer.getvalue()
    folder = Path(tempfile.gettempdir()) / "cvdemo-images"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(data).hexdigest()[:32]}.png"
    if not path.exists():
        fd, tmp = tempfile.mkstemp(prefix=".", suffix=".png", dir=folder)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    return str(path)


def _drawing(value):
    """The sketchpad's flattened drawing, or None for an untouched or cleared canvas."""
    return value.get("composite") if isinstance(value, dict) else None


def _verdict(result) -> str:
    answers = result.models
    if result.agree:
        label = next(iter(answers.values())).label
        who = "Both models" if len(answers) == 2 else f"All {len(answers)} models"
        return (f"<div class='agree'><span class='big'>{who} say {html.escape(label)}</span>"
                f"<br>They agree.</div>")
    said = "; ".join(f"<b>{html.escape(n)}</b> says <b>{html.escape(a.label)}</b>" for n, a in answers.items())
    return f"<div class='disagree'><span class='big'>The models disagree</span><br>{said}</div>"


def _caption(name: str, answer=None) -> str:
    title = f"**{name}**: {MODEL_TITLES.get(name, name)}"
    if answer is None:
        return title
    return f"{title}  \n{answer.ms:.0f} ms · weights: {html.escape(answer.weights)}"


def _tsne3d(analysis, model: str):
    """The 3D t-SNE figure with its legend below the scene: beside it, the legend takes half a phone."""
    figure = analysis.tsne3d_plot(model)
    figure.update_layout(legend={"orientation": "h", "yanchor": "top", "y": 0, "x": 0})
    return figure


def _empty_verdict(text: str) -> str:
    return f"<div class='empty'>{html.escape(text)}</div>"


# ----------------------------------------------------------------------------- tabs

def classify_tab(service: Service, model_set: gr.State) -> None:
    """Draw or upload a digit; every model of the session's set answers side by side."""
    last_input = gr.State(None)       # what was classified last, for "Find similar images"
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=320):
            with gr.Tabs():
                with gr.Tab("Draw", id="draw"):
                    gr.Markdown("Draw one digit, large and centred. The predictions update as you draw; "
                                "undo or clear with the toolbar or the Clear button.")
                    sketch = gr.Sketchpad(show_label=False,
                        type="numpy", image_mode="L", canvas_size=(320, 320), fixed_canvas=True,
                        brush=gr.Brush(default_size=22, colors=["#000000"], color_mode="fixed"),
                        eraser=gr.Eraser(default_size=30), layers=False, transforms=(),
                        label="Drawing", elem_id="sketch")
                    with gr.Row():
                        draw_btn = gr.Button("Classify drawing", variant="primary", elem_id="classify-drawing")
                        clear_btn = gr.Button("Clear", elem_id="clear-drawing")
                with gr.Tab("Upload, paste or webcam", id="upload"):
                    upload = gr.Image(type="filepath", sources=["upload", "clipboard", "webcam"],
                                      label=f"A digit image (PNG, JPEG, WEBP, GIF, BMP; at most "
                                            f"{config.MAX_UPLOAD_MB} MB)", elem_id="upload", height=320)
                    upload_btn = gr.Button("Classify image", variant="primary", elem_id="classify-upload")
                    examples = service.example_images()
                    if examples:
                        gr.Examples([[str(p)] for p in examples], inputs=[upload], cache_examples=False,
                                    examples_per_page=12, label="Examples from query_images/ (one click)")
            send_btn = gr.Button("Find similar images (Retrieve tab)", size="sm", elem_id="send-to-retrieve")
        with gr.Column(scale=3, min_width=320):
            verdict = gr.HTML(_empty_verdict("Draw a digit or upload an image."), elem_id="verdict",
                              elem_classes=["verdict"])
            labels, captions, seen = {}, {}, {}
            with gr.Row():
                for name in DISPLAY_ORDER:
                    with gr.Column(min_width=200):
                        captions[name] = gr.Markdown(_caption(name), visible=name != "lenet",
                                                     elem_id=f"caption-{name}")
                        labels[name] = gr.Label(num_top_classes=3, show_label=False, label=name,
                                                visible=name != "lenet", elem_id=f"label-{name}")
            gr.Markdown("**What the model sees**: your input, then the 28×28 image each model "
                        "actually received after preprocessing (white ink on black, like MNIST).")
            with gr.Row(elem_id="seen-row"):     # min_width 140: two per line on a phone, not one
                raw = gr.Image(label="Your input", interactive=False, height=200, elem_id="raw-input",
                               buttons=[], min_width=140)
                for name in DISPLAY_ORDER:
                    seen[name] = gr.Image(label=f"{name} sees", interactive=False, height=200, buttons=[],
                                          visible=name != "lenet", elem_id=f"seen-{name}", min_width=140)
            api_json = gr.JSON(visible=False)

    outputs = [verdict, raw, *labels.values(), *captions.values(), *seen.values(), api_json, last_input]

    def show(result, raw_value, source):
        slots = {name: result.models.get(name) for name in DISPLAY_ORDER}
        return [
            _verdict(result), raw_value,
            *[gr.Label(value=a.probabilities if a else None, visible=a is not None) for a in slots.values()],
            *[gr.Markdown(value=_caption(n, a), visible=a is not None) for n, a in slots.items()],
            *[gr.Image(value=_image_file(to_display(a.model_input)) if a else None, visible=a is not None)
              for a in slots.values()],
            result.as_dict(), source,
        ]

    def nothing(text):
        return [_empty_verdict(text), None, *[None] * len(DISPLAY_ORDER),
                *[_caption(n) for n in DISPLAY_ORDER], *[None] * len(DISPLAY_ORDER), None, None]

    def classify_drawing(value, set_id):
        drawing = _drawing(value)
        if drawing is None:
            raise gr.Error("Draw a digit first.")
        return show(_classify(service, drawing, set_id, name="The drawing"), drawing, drawing)

    def classify_drawing_live(value, set_id):
        drawing = _drawing(value)
        if drawing is None:        # cleared or untouched: reset quietly, no error toast while drawing
            return nothing("Draw a digit first.")
        try:
            result = service.classify(drawing, set_id or SHIPPED, name="The drawing")
        except ImageError as err:
            return nothing(str(err))
        except (KeyError, CheckpointError):
            return nothing("That model set is not available any more.")
        return show(result, drawing, drawing)

    def classify_upload(payload, set_id):
        path, name = _file_path(payload)
        if path is None:
            raise gr.Error("Upload, paste or capture an image first.")
        return show(_classify(service, path, set_id, name=name), path, path)

    def classify_upload_live(payload, set_id):
        if _file_path(payload)[0] is None:
            return nothing("Draw a digit or upload an image.")
        return classify_upload(payload, set_id)

    def send_to_retrieve(source):
        if source is None:
            raise gr.Error("Draw or upload a digit first, then send it to Retrieve.")
        return source, gr.Tabs(selected="retrieve")

    # A failed classification (gr.Error toast) would leave the previous input's verdict on show.
    def cleared(text):
        return lambda: nothing(text)

    unreadable = cleared("That input could not be classified: the message at the top right says why.")
    common = dict(concurrency_limit=4, concurrency_id="classify")
    sketch.change(classify_drawing_live, [sketch, model_set], outputs, trigger_mode="always_last",
                  show_progress="hidden", api_name="classify_drawing_live", **common)
    draw_btn.click(classify_drawing, [sketch, model_set], outputs, api_name="classify_drawing", **common
                   ).failure(cleared("Draw a digit first."), None, outputs, api_name=False, show_progress="hidden")
    # Setting the editor's value to None from Python leaves it stuck loading in 6.31: press its own
    # "Clear canvas" instead, which empties the layers and fires .change (resetting the outputs).
    clear_btn.click(None, None, None, api_name="clear_drawing", js=CLICK_CLEAR_CANVAS_JS)
    upload.change(classify_upload_live, [upload, model_set], outputs, preprocess=False,
                  api_name="classify_upload_live", **common
                  ).failure(unreadable, None, outputs, api_name=False, show_progress="hidden")
    upload_btn.click(classify_upload, [upload, model_set], outputs, preprocess=False,
                     api_name="classify_upload", **common
                     ).failure(unreadable, None, outputs, api_name=False, show_progress="hidden")
    send_btn.click(send_to_retrieve, [last_input], [SHARED["to_retrieve"], SHARED["tabs"]],
                   api_name="send_to_retrieve")

    # API-only endpoint: one image file in, {"<model>": {"label", "probabilities"}} out.
    api_image = gr.Image(type="filepath", visible=False, label="image")
    api_set = gr.Textbox(value=SHIPPED, visible=False, label="model_set")
    api_result = gr.JSON(visible=False, label="result")

    def classify_api(payload, set_id):
        path, name = _file_path(payload)
        if path is None:
            raise gr.Error("Send one image file (gradio_client.handle_file(path)).")
        return _classify(service, path, set_id or SHIPPED, name=name).as_dict()

    gr.Button(visible=False).click(classify_api, [api_image, api_set], api_result, preprocess=False,
                                   api_name="classify", **common)


def _progress_html(progress: RunProgress) -> str:
    percent = round(100 * progress.fraction)
    return (f"<div class='progress-track'><div class='progress-fill' style='width:{percent}%'></div></div>"
            f"<p>{percent}% · {html.escape(progress.stage)}</p>")


def _curves(progress: RunProgress, metric: str):
    """Long-format rows for a gr.LinePlot; nothing until the first epoch (an empty frame would make
    the chart guess non-numeric axes and keep them)."""
    rows = progress.curves(metric)
    return pd.DataFrame(rows, columns=["epoch", "value", "series"]) if rows else gr.skip()


def train_tab(service: Service, model_set: gr.State, set_picker: gr.Dropdown, notice: gr.Markdown,
              page: gr.Blocks) -> None:
    """Train new models on the sample dataset or an uploaded zip, watching them learn."""
    from cvdemo.config import FinetuneConfig, Limits, TrainConfig
    from cvdemo.models import BACKBONES

    limits = Limits()
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=300):
            source = gr.Radio([SAMPLE_SOURCE, ZIP_SOURCE], value=SAMPLE_SOURCE, label="Dataset",
                              elem_id="train-source")
            zip_file = gr.File(file_types=[".zip"], type="filepath", visible=False, elem_id="train-zip",
                               label="Zip with one folder of images per class (e.g. 0_digits/, 1_digits/)")
            counts = gr.Dataframe(headers=["class", "images"], label="Images per class", interactive=False,
                                  elem_id="train-counts", max_height=220)
            models = gr.CheckboxGroup([("scratch CNN", "scratch"), ("fine-tuned backbone", "finetuned")],
                                      value=["scratch", "finetuned"], label="Models to train")
            with gr.Row():
                backbone = gr.Dropdown(list(BACKBONES), value="mobilenet_v2", label="Backbone", min_width=140)
                weights = gr.Dropdown(WEIGHT_SOURCES, value="digits", label="Backbone weights", min_width=140)
            epochs = gr.Slider(1, limits.max_epochs, value=10, step=1, label="Epochs", elem_id="train-epochs")
            with gr.Row():
                start = gr.Button("Start training", variant="primary", elem_id="train-start")
                stop = gr.Button("Stop", variant="stop", elem_id="train-stop")
        with gr.Column(scale=3, min_width=300):
            bar = gr.HTML(_progress_html(RunProgress(stage="Not started")), elem_id="train-progress")
            # a fixed colour map: the chart keeps the series it first saw, so name all four now
            colours = {"scratch train": "#74c0fc", "scratch val": "#1864ab",
                       "finetuned train": "#ffa94d", "finetuned val": "#d9480f"}
            gr.HTML("<div class='curve-legend'>" + "".join(
                f"<span><span class='swatch' style='background:{c}'></span>{html.escape(n)}</span>"
                for n, c in colours.items()) + "</div>", elem_id="curve-legend")
            with gr.Row():
                # colors_in_legend=[]: no per-chart legend (it has room for three of the four series)
                loss_plot = gr.LinePlot(x="epoch", y="value", color="series", color_map=colours, title="Loss",
                                        x_title="epoch", y_title="loss", height=240, elem_id="loss-plot",
                                        colors_in_legend=[], min_width=260)
                acc_plot = gr.LinePlot(x="epoch", y="value", color="series", color_map=colours, title="Accuracy",
                                       x_title="epoch", y_title="accuracy", y_lim=[0, 1], height=240,
                                       elem_id="acc-plot", colors_in_legend=[], min_width=260)
            log = gr.Textbox(label="Log", lines=10, max_lines=10, autoscroll=True, elem_id="train-log")
            table = gr.Dataframe(headers=TRAIN_HEADERS, label="Comparison on the validation split",
                                 interactive=False, elem_id="train-table")
            confusion = gr.Plot(label="Confusion matrices (validation split)", format="png",
                                elem_id="train-confusion")
            files = gr.File(label="Trained models (.keras)", file_count="multiple", interactive=False,
                            elem_id="train-files", height=140)

    def dataset_dir(choice: str, zip_path: str | None):
        if choice == ZIP_SOURCE:
            path = _file_path(zip_path)[0] if isinstance(zip_path, dict) else zip_path
            if not path:
                raise gr.Error("Upload a zip of class folders first (or choose the sample dataset).")
            try:
                return service.dataset_from_zip(path)
            except DatasetError as err:
                raise _user_error(err) from None
        return ensure_sample_dataset()

    def show_counts(choice, zip_path):
        if choice == ZIP_SOURCE and not zip_path:
            return gr.File(visible=True), None
        try:
            found = scan_folder(dataset_dir(choice, zip_path)).counts()
        except DatasetError as err:
            raise _user_error(err) from None
        return gr.File(visible=choice == ZIP_SOURCE), [[name, n] for name, n in found.items()]

    def run_training(choice, zip_path, chosen, backbone_name, weight_source, n_epochs, set_id,
                     request: gr.Request):
        chosen = [m for m in (chosen or []) if m in ("scratch", "finetuned")]
        if not chosen:
            raise gr.Error("Pick at least one model to train.")
        if backbone_name not in BACKBONES or weight_source not in dict((v, k) for k, v in WEIGHT_SOURCES):
            raise gr.Error("Unknown backbone or weight source.")
        try:
            n_epochs = int(n_epochs)
        except (TypeError, ValueError):
            raise gr.Error("Epochs must be a whole number.") from None
        if not 1 <= n_epochs <= limits.max_epochs:
            raise gr.Error(f"Epochs must be between 1 and {limits.max_epochs}.")
        data = dataset_dir(choice, zip_path)
        try:
            job = service.start_training(data, tuple(chosen), TrainConfig(epochs=n_epochs),
                                         FinetuneConfig(backbone=backbone_name, weights=weight_source),
                                         owner=request.session_hash if request else None,
                                         base_set=set_id or SHIPPED)
        except BusyError as err:
            raise _user_error(err) from None
        progress = RunProgress(models=tuple(chosen), epochs=n_epochs)
        skip = [gr.skip()] * 6
        seen, shown = 0, -1
        while True:
            finished = job.done.wait(0.5)
            events = job.snapshot(seen)
            seen += len(events)
            progress.extend(events)
            if len(progress.lines) != shown or events:
                shown = len(progress.lines)
                yield (_progress_html(progress), progress.log, _curves(progress, "loss"),
                       _curves(progress, "accuracy"), *skip)
            if finished and seen == len(job.events):
                break
        if job.error:
            raise gr.Error(html.escape(job.error))
        progress.finished = True
        if not job.set_id:   # stopped before any model finished: nothing saved, nothing changes
            yield (_progress_html(progress), progress.log + "\nNo model finished, nothing was saved.",
                   _curves(progress, "loss"), _curves(progress, "accuracy"),
                   pd.DataFrame(progress.summary(), columns=TRAIN_HEADERS), None, None, gr.skip(), gr.skip(),
                   gr.skip())
            return
        served = service.model_set(job.set_id).models
        trained = [name for name in progress.results if name in served and not progress.results[name]["stopped"]]
        figure = confusion_figure({n: served[n].meta["metrics"]["confusion_matrix"] for n in trained},
                                  served[trained[0]].checkpoint.class_names) if trained else None
        gr.Info("Your session now uses the models you just trained. Other visitors keep theirs.")
        yield (_progress_html(progress), progress.log, _curves(progress, "loss"), _curves(progress, "accuracy"),
               pd.DataFrame(progress.summary(), columns=TRAIN_HEADERS), figure,
               [str(p) for p in service.run_files(job.set_id)],
               job.set_id, gr.Dropdown(choices=service.available_sets(), value=job.set_id),
               _set_notice(job.set_id, trained=True))

    def stop_training(request: gr.Request):
        job = service.job
        mine = job is not None and request is not None and job.owner == request.session_hash
        if job is None or job.done.is_set() or not mine:
            raise gr.Error("No training of yours is running.")
        job.stop.set()
        return "Stopping at the next batch; models that did not finish are not saved."

    source.change(show_counts, [source, zip_file], [zip_file, counts], api_name="dataset_counts")
    # the sample dataset's counts as soon as the page opens (built on the first visit only)
    page.load(show_counts, [source, zip_file], [zip_file, counts], api_name=False, show_progress="hidden")
    zip_file.change(show_counts, [source, zip_file], [zip_file, counts], api_name="dataset_counts_zip")
    start.click(run_training, [source, zip_file, models, backbone, weights, epochs, model_set],
                [bar, log, loss_plot, acc_plot, table, confusion, files, model_set, set_picker, notice],
                api_name="train", concurrency_limit=None, concurrency_id="train")
    stop.click(stop_training, None, notice, api_name="stop_training", queue=False)


def retrieve_tab(service):
    """Drop a query digit; the k most similar images of images_database/ with rank, file, class
    and distance, checked against the classifiers' prediction. New images can be added."""
    from cvdemo.retrieval import same_class, thumbnail

    model_set = SHARED.get("model_set")
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=300):
            query = gr.Image(type="filepath", sources=["upload", "clipboard"], height=260,
                             label=f"Query digit (PNG, JPEG, WEBP, GIF, BMP; at most {config.MAX_UPLOAD_MB} MB)",
                             elem_id="retrieve-query")
            k = gr.Slider(1, 20, value=4, step=1, label="Number of results (k)", elem_id="retrieve-k")
            search = gr.Button("Find similar images", variant="primary", elem_id="retrieve-search")
            examples = service.example_images()
            if examples:
                gr.Examples([[str(p)] for p in examples], inputs=[query], cache_examples=False,
                            examples_per_page=12, label="Queries from query_images/ (never in the database)")
        with gr.Column(scale=3, min_width=320):
            verdict = gr.HTML(_empty_verdict("Drop a digit to find the most similar database images."),
                              elem_id="retrieve-verdict", elem_classes=["verdict"])
            gallery = gr.Gallery(label="Most similar (rank · file · class · distance)", columns=4,
                                 height="fit-content", object_fit="contain", elem_id="retrieve-gallery")
            with gr.Row():
                seen = gr.Image(label="What the extractor sees", interactive=False, height=150, buttons=[],
                                elem_id="retrieve-seen", scale=1, min_width=150)
                # a table, not gr.JSON: gradio_client downloads any JSON dict with a "path" key as a file
                results = gr.Dataframe(headers=RESULT_HEADERS, label="Ranked results", scale=3, min_width=260,
                                       interactive=False, elem_id="retrieve-results", max_height=200)
            with gr.Accordion("Add images to the database", open=False):
                with gr.Row():
                    new_files = gr.File(file_count="multiple", type="filepath", elem_id="retrieve-add-files",
                                        file_types=list(config.IMAGE_EXTENSIONS), label="Images to add")
                    with gr.Column():
                        new_label = gr.Dropdown([str(d) for d in range(10)], value=None, allow_custom_value=True,
                                                label="Class folder (empty: no class)", elem_id="retrieve-add-label")
                        add_btn = gr.Button("Add to database", elem_id="retrieve-add")
                add_report = gr.Markdown(elem_id="retrieve-add-report")

    def agreement(answer, source, set_id) -> tuple[str, str | None]:
        near = answer.majority
        votes = sum(h.label == near for h in answer.hits)
        head = (f"Neighbours: mostly class <b>{html.escape(near)}</b> ({votes} of {len(answer.hits)})"
                if near is not None else "Neighbours have no class folder")
        try:
            result = service.classify(source, set_id or SHIPPED)
        except ImageError:
            return f"<div class='empty'>{head}.</div>", None
        except Exception:  # noqa: BLE001 - no usable classifier must not cost the user the results
            return f"<div class='empty'>{head}. (No classifier is loaded to compare with.)</div>", None
        said = ", ".join(f"{html.escape(n)} says <b>{html.escape(a.label)}</b>" for n, a in result.models.items())
        predicted = next(iter(result.models.values())).label if result.agree else None
        known = next(iter(result.models.values())).probabilities.keys()
        if same_class(predicted, near):
            return (f"<div class='agree'><span class='big'>The neighbours agree with the classifiers: "
                    f"{html.escape(near)}</span><br>{head}; {said}.</div>"), predicted
        note = ("" if near is None or any(same_class(near, c) for c in known)
                else f" (the classifiers only know classes {', '.join(known)})")
        return (f"<div class='disagree'><span class='big'>The neighbours and the classifiers disagree</span>"
                f"<br>{head}; {said}{html.escape(note)}.</div>"), predicted

    def run(source, n, set_id, name=None):
        try:
            n = int(n)
        except (TypeError, ValueError):
            raise gr.Error("k must be a whole number.") from None
        if not 1 <= n <= 50:
            raise gr.Error("k must be between 1 and 50.")
        try:
            answer = service.retrieve(source, k=n, name=name)
        except ImageError as err:
            raise _user_error(err) from None
        message, predicted = agreement(answer, source, set_id)
        items = []
        for hit in answer.hits:
            mark = "" if predicted is None else (" ✓" if same_class(hit.label, predicted) else " ✗")
            caption = (f"#{hit.rank} · {hit.path.name} · class {hit.label if hit.label is not None else '-'}"
                       f" · d={hit.distance:.3f}{mark}")
            try:
                items.append((_image_file(thumbnail(hit.path)), caption))
            except ImageError:            # deleted or changed since indexing: say so, keep the rest
                items.append((None, caption + " (file unreadable)"))
        items = [(im, c) for im, c in items if im is not None]
        # paths relative to the database's folder (images_database/2/2_1.png): never the server's own
        listing = pd.DataFrame([[h["rank"], h["path"], h["label"], h["distance"]] for h in answer.as_list()],
                               columns=RESULT_HEADERS)
        note = f"extractor {answer.extractor} · {answer.ms:.0f} ms"
        return items, listing, message.replace("</div>", f"<br><small>{html.escape(note)}</small></div>", 1), \
            _image_file(to_display(answer.query_input))

    def retrieve_file(payload, n, set_id=None):
        path, name = _file_path(payload)
        if path is None:
            raise gr.Error("Drop, paste or pick a query image first.")
        return run(path, n, set_id, name=name)

    def retrieve_live(payload, n, set_id=None):
        if _file_path(payload)[0] is None:
            return [], None, _empty_verdict("Drop a digit to find the most similar database images."), None
        return retrieve_file(payload, n, set_id)

    def add(files, label):
        paths = [f if isinstance(f, str) else _file_path(f)[0] for f in (files or [])]
        paths = [p for p in paths if p]
        if not paths:
            raise gr.Error("Choose one or more image files to add.")
        try:
            report = service.add_to_database(paths, label=label or None)
        except ValueError as err:
            raise _user_error(err) from None
        if not report.added:
            raise gr.Error("Nothing was added. " + " ".join(
                f"{html.escape(n)}: {html.escape(r.rstrip('.'))}." for n, r in report.skipped))
        lines = [f"Added **{len(report.added)}** image(s); they are searchable now."]
        lines += [f"- added `{html.escape(p.name)}`" for p in report.added]
        lines += [f"- skipped `{html.escape(n)}`: {html.escape(r)}" for n, r in report.skipped]
        info = service.database_info()
        lines.append(f"\nDatabase: {info['images']} images in {len(info['classes'])} classes.")
        return "\n".join(lines), None

    inputs = [query, k] + ([model_set] if model_set is not None else [])
    outputs = [gallery, results, verdict, seen]

    def failed():       # clear the previous query's neighbours instead of leaving them beside the error
        return [], None, _empty_verdict("That query could not be searched: the message at the top right "
                                        "says why."), None

    common = dict(concurrency_limit=4, concurrency_id="retrieve")
    search.click(retrieve_file, inputs, outputs, preprocess=False, api_name="retrieve", **common
                 ).failure(failed, None, outputs, api_name=False, show_progress="hidden")
    query.change(retrieve_live, inputs, outputs, preprocess=False, api_name="retrieve_live",
                 show_progress="minimal", **common
                 ).failure(failed, None, outputs, api_name=False, show_progress="hidden")
    add_btn.click(add, [new_files, new_label], [add_report, new_files], api_name="add_to_database",
                  concurrency_limit=1, concurrency_id="add_to_database")
    to_retrieve = SHARED.get("to_retrieve")
    if to_retrieve is not None:     # Classify's "Find similar images": show it here; .change searches
        to_retrieve.change(lambda source: source, to_retrieve, query, api_name="receive_query",
                           show_progress="hidden")


def analyze_tab(service, tab: gr.Tab | None = None):
    """Metrics, figures, rotatable 3D t-SNE, misclassified images and the report bundle of the
    session's model set (computed once per set, then cached on disk). Loads when ``tab`` opens."""
    from PIL import Image

    from cvdemo.images import decode

    model_set = SHARED.get("model_set") or gr.State(SHIPPED)
    gr.Markdown("Accuracy, per-class scores, confusion matrices, training curves, t-SNE of the features, "
                "misclassified images and calibration of the models in use, on their validation split. "
                "It loads when you open this tab: the first analysis of a new model set takes a minute or "
                "two, after that it opens instantly.")
    with gr.Row():
        load_btn = gr.Button("Refresh", elem_id="analyze-load")
        bundle_btn = gr.Button("Build the report bundle (.zip)", elem_id="analyze-bundle")
    status = gr.Markdown(elem_id="analyze-status")
    bundle_file = gr.File(label="Report bundle: figures, report.md, metrics.json, .keras + .tflite models, "
                          "classify.py", visible=False, elem_id="analyze-zip")
    comparison = gr.Dataframe(headers=COMPARISON_HEADERS, label="Side by side", interactive=False,
                              elem_id="analyze-comparison")
    with gr.Row():
        # the figures carry their own titles: a label would sit on top of them
        distribution = gr.Image(label="Class distribution", type="pil", interactive=False, show_label=False)
        samples = gr.Image(label="Samples per class (model input)", type="pil", interactive=False,
                           show_label=False)
    per_class = gr.Dataframe(headers=PER_CLASS_HEADERS, label="Per-class precision / recall / F1",
                             interactive=False, elem_id="analyze-per-class")
    figures = gr.Gallery(label="Confusion matrices, training curves, 2D t-SNE, calibration", columns=2,
                         height="auto", object_fit="contain", elem_id="analyze-figures")
    with gr.Row():
        tsne_model = gr.Dropdown(label="3D t-SNE of model", choices=[], interactive=True)
    tsne3d = gr.Plot(label="3D t-SNE of the embedding layer (drag to rotate)", elem_id="analyze-tsne3d")
    gr.Markdown("### Misclassified images\nClick one to see it large, with every model's answer and its "
                "distance to the class centroids in each model's feature space.")
    with gr.Row():
        wrong = gr.Gallery(label="Misclassified by at least one model", columns=8, height=320,
                           allow_preview=False, elem_id="analyze-misclassified", scale=3)
        with gr.Column(scale=2):
            wrong_image = gr.Image(label="Selected image", type="pil", interactive=False, height=240)
            wrong_detail = gr.Markdown(elem_id="analyze-detail")
    suspects = gr.Markdown()
    shown_rows = gr.State([])      # evaluated-image indices behind the gallery tiles

    def get(set_id, progress=None):
        try:
            return service.analysis(set_id, progress=progress)
        except (DatasetError, CheckpointError, KeyError, ImageError) as err:
            raise _user_error(err) from None

    def short(name: str) -> str:
        return name[:-len("_digits")] if name.endswith("_digits") else name

    def show(set_id, progress=gr.Progress()):
        analysis = get(set_id, lambda f, m: progress(f, desc=m))
        pictures = lambda name: Image.open(analysis.figures[name])  # noqa: E731
        gallery = [(pictures(f"confusion_{m}.png"), f"{m}: confusion matrix") for m in analysis.models]
        gallery += [(pictures("curves.png"), "training curves (dotted: fine-tuning starts)")]
        gallery += [(pictures(f"tsne2d_{m}.png"), f"{m}: 2D t-SNE") for m in analysis.models]
        gallery += [(pictures("calibration.png"), "reliability diagrams and ECE"),
                    (pictures("misclassified.png"), "misclassified images and distance ratios")]
        rows = analysis.misclassified()
        tiles = [(to_display(analysis.model_input(r["index"]), 4),
                  f"true {short(r['true'])} · " + " · ".join(
                      f"{m} {short(a['predicted'])}{'' if a['correct'] else ' ✗'}" for m, a in r["models"].items()))
                 for r in rows]
        table = pd.DataFrame(analysis.comparison(), columns=COMPARISON_HEADERS).round(4)
        suspects_list = analysis.suspects()
        suspect_text = (f"**Likely mislabelled or ambiguous** (closer to another class's centroid than to their "
                        f"own label's in every model): {len(suspects_list)} image(s)" +
                        (": " + ", ".join(html.escape(f"{r['path'].split('/')[-1]} (labelled {short(r['true'])})")
                                          for r in suspects_list[:30]) if suspects_list else "."))
        data = analysis.result.data
        leak = (f"Leakage check: {len(analysis.result.duplicates)} near-duplicate(s) of training images "
                f"among the evaluated ones." if data.get("n_train_checked") else "Leakage check not run.")
        first = analysis.models[0]
        return (f"Evaluated on the {html.escape(data['description'])}. {leak}",
                table, pictures("distribution.png"), pictures("samples.png"),
                pd.DataFrame(analysis.per_class(), columns=PER_CLASS_HEADERS).round(4), gallery,
                gr.Dropdown(choices=analysis.models, value=first), _tsne3d(analysis, first),
                tiles, [r["index"] for r in rows], suspect_text, None, "")

    def rotate(set_id, model):
        if not model:
            return None
        analysis = get(set_id)
        if model not in analysis.models:
            raise gr.Error("That model is not in the analysed set; press 'Refresh'.")
        return _tsne3d(analysis, model)

    def pick(set_id, indices, evt: gr.SelectData):
        if not indices or evt.index is None or evt.index >= len(indices):
            return None, ""
        analysis = get(set_id)
        detail = analysis.detail(indices[evt.index])
        try:
            picture = decode(detail["path"]).image
        except ImageError:       # the file moved since the analysis: show the model input instead
            picture = Image.fromarray(to_display(analysis.model_input(detail["index"]), 8))
        lines = [f"**{html.escape(detail['path'].split('/')[-1])}**, labelled **{short(detail['true'])}**\n",
                 "| model | says | confidence | d(true centroid) | d(predicted centroid) | nearest centroid |",
                 "|---|---|---|---|---|---|"]
        for m, a in detail["models"].items():
            nearest = min(a["centroid_distances"], key=a["centroid_distances"].get)
            lines.append(f"| {m} | {short(a['predicted'])}{'' if a['predicted'] == detail['true'] else ' ✗'} | "
                         f"{a['confidence']:.2f} | {a['d_true']:.2f} | {a['d_pred']:.2f} | {short(nearest)} |")
        return picture, "\n".join(lines)

    def make_bundle(set_id, progress=gr.Progress()):
        import shutil
        import tempfile
        from pathlib import Path

        try:
            path = service.report_bundle(set_id, progress=lambda f, m: progress(f, desc=m))
        except (DatasetError, CheckpointError, KeyError, ImageError) as err:
            raise _user_error(err) from None
        except RuntimeError as err:        # a TFLite conversion that failed its check
            raise gr.Error(f"The bundle could not be built: {html.escape(str(err))}") from None
        # Gradio serves files from its temp dir, cwd or allowed_paths: hand it a copy in temp
        served = Path(tempfile.gettempdir()) / "cvdemo-bundles" / path.name
        if not served.exists():
            served.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, served)
        return gr.File(value=str(served), visible=True), "Report bundle ready: download it below."

    outputs = [status, comparison, distribution, samples, per_class, figures, tsne_model, tsne3d, wrong,
               shown_rows, suspects, wrong_image, wrong_detail]
    load_btn.click(show, model_set, outputs, api_name="analysis", concurrency_limit=1,
                   concurrency_id="analysis")
    if tab is not None:            # opening the tab shows the analysis (cached after the first time)
        tab.select(show, model_set, outputs, api_name=False, concurrency_limit=1, concurrency_id="analysis")
    tsne_model.input(rotate, [model_set, tsne_model], tsne3d, api_name="analysis_tsne3d")
    wrong.select(pick, [model_set, shown_rows], [wrong_image, wrong_detail], api_name=False)
    bundle_btn.click(make_bundle, model_set, [bundle_file, status], api_name="report_bundle",
                     concurrency_limit=1, concurrency_id="analysis")


# ----------------------------------------------------------------------------- app

def _set_notice(set_id: str, trained: bool = False) -> str:
    if set_id == SHIPPED:
        return "Using the **shipped models** (`checkpoints/`)."
    if trained:
        return ("**Your session now uses the models you just trained** (other visitors keep theirs; "
                "switch back with the dropdown).")
    return "Using a set of models trained in this app (your choice applies to your session only)."


def build_app(service: Service) -> gr.Blocks:
    """The whole UI for one loaded :class:`Service`."""
    with gr.Blocks(title="cvdemo: handwritten digits") as demo:
        model_set = gr.State(SHIPPED)   # per session: the model set this browser tab uses
        SHARED["model_set"] = model_set
        SHARED["to_retrieve"] = gr.State(None)
        with gr.Row(equal_height=True):
            with gr.Column(scale=3, min_width=300):
                gr.Markdown("## ✍️ cvdemo: handwritten digits\nA CNN trained from scratch next to a "
                            "fine-tuned pretrained backbone: draw, train, retrieve, analyse.")
            with gr.Column(scale=2, min_width=280):
                set_picker = gr.Dropdown(service.available_sets(), value=SHIPPED, label="Models in use",
                                         elem_id="model-set")
                notice = gr.Markdown(_set_notice(SHIPPED), elem_id="set-notice")
        with gr.Tabs(elem_id="tabs") as tabs:
            SHARED["tabs"] = tabs
            with gr.Tab("Classify", id="classify"):
                classify_tab(service, model_set)
            with gr.Tab("Train", id="train"):
                train_tab(service, model_set, set_picker, notice, demo)
            with gr.Tab("Retrieve", id="retrieve"):
                retrieve_tab(service)
            with gr.Tab("Analyze", id="analyze") as analyze:
                analyze_tab(service, analyze)

        def choose_set(set_id):
            try:
                service.model_set(set_id)
            except (KeyError, CheckpointError):
                raise gr.Error("That model set is not available.") from None
            return set_id, _set_notice(set_id)

        def refresh_sets(set_id):
            return gr.Dropdown(choices=service.available_sets(), value=set_id)

        set_picker.input(choose_set, set_picker, [model_set, notice], api_name="choose_model_set")
        demo.load(refresh_sets, model_set, set_picker, api_name="list_model_sets")
    return demo


def launch(demo: gr.Blocks, service: Service | None = None, **kwargs):
    """Queue and launch with the project's limits; extra kwargs go to ``Blocks.launch``."""
    # Served to anyone: only runs/ (the trained .keras files the Train tab offers). Examples are
    # copied into Gradio's cache when the UI is built; retrieval thumbnails are sent as images.
    folders = [config.RUNS_DIR]
    if service is not None:
        folders.append(service.runs)
    options = dict(
        ssr_mode=False,
        max_file_size=f"{config.MAX_UPLOAD_MB}mb",
        allowed_paths=sorted({str(p) for p in folders}),
        theme=gr.themes.Soft(),
        css=CSS,
        js=PICK_BRUSH_JS,
        footer_links=["api", "gradio"],
    )
    options.update(kwargs)
    return demo.queue(max_size=64, default_concurrency_limit=2).launch(**options)


def main() -> None:
    started = time.perf_counter()
    # CVDEMO_CHECKPOINTS: a different checkpoint folder (tests use tiny ones); read only here.
    checkpoints = os.environ.get("CVDEMO_CHECKPOINTS", str(config.CHECKPOINT_DIR))
    service = Service(checkpoints=checkpoints)
    demo = build_app(service)
    print(f"cvdemo: models loaded and UI built in {time.perf_counter() - started:.1f} s")
    # Once the server is up: warm the retrieval engine, then compute the shipped set's analysis,
    # so the first visitor finds both ready (Service.analysis computes each set only once).
    warm = threading.Timer(5.0, _warm_up, args=(service,))
    warm.daemon = True
    warm.start()
    launch(demo, service)


def _warm_up(service: Service) -> None:
    timings = service.warm_up()
    print("cvdemo: warmed up in the background: " + ", ".join(
        f"{step} {'failed' if seconds < 0 else f'{seconds:.1f} s'}" for step, seconds in timings.items()))


if __name__ == "__main__":
    main()
