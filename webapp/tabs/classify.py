"""Classify: draw or upload a digit; every model of the session's set answers side by side."""
from __future__ import annotations

import html
from types import SimpleNamespace

import gradio as gr

from cvdemo import config
from cvdemo.service import SHIPPED, CheckpointError, ImageError, Service, to_display

from ..common import GONE_SET, caption, empty_verdict, file_path, image_file, user_error
from ..context import Shared

ORDER = config.MODEL_ORDER
CLICK_CLEAR_CANVAS_JS = "() => { document.querySelector('#sketch button[aria-label=\"Clear canvas\"]')?.click(); }"


def verdict(result) -> str:
    answers = result.models
    if result.known is False:
        classes = ", ".join(html.escape(str(config.class_display_name(c)))
                            for c in next(iter(answers.values())).probabilities)
        looks = result.looks_like
        like = (f"It looks like a <b>{html.escape(str(config.class_display_name(looks.label)))}</b>: its nearest "
                f"database images are {html.escape(str(config.class_display_name(looks.label)))}s."
                if looks and looks.label else "")
        said = ", ".join(f"{html.escape(n)} {html.escape(str(config.class_display_name(a.label)))}"
                         for n, a in answers.items())
        return (f"<div class='unknown'><span class='big'>Not one of {classes}</span><br>{like}"
                f"<br><small>The models were only taught {classes}; forced to choose, they would say: "
                f"{said}.</small></div>")
    if result.agree:
        label = config.class_display_name(next(iter(answers.values())).label)
        who = "Both models" if len(answers) == 2 else f"All {len(answers)} models"
        return (f"<div class='agree'><span class='big'>{who} say {html.escape(label)}</span>"
                f"<br>They agree.</div>")
    said = "; ".join(f"<b>{html.escape(n)}</b> says <b>{html.escape(config.class_display_name(a.label))}</b>"
                     for n, a in answers.items())
    return f"<div class='disagree'><span class='big'>The models disagree</span><br>{said}</div>"


def photo_steps(result) -> gr.Image:
    """The photo steps (light evened out, lines and table removed, the digit boxed), shown only for photos."""
    picture = result.steps_picture()
    return gr.Image(value=image_file(picture) if picture is not None else None, visible=picture is not None)


def drawing(value):
    """The sketchpad's flattened drawing, or None for an untouched or cleared canvas."""
    return value.get("composite") if isinstance(value, dict) else None


class Handlers:
    """The tab's event functions over one service: each calls ``Service.classify`` and shapes the outputs."""

    def __init__(self, service: Service):
        self.service = service

    def classify(self, source, set_id: str, name: str | None = None):
        try:
            return self.service.classify(source, set_id or SHIPPED, name=name)
        except ImageError as err:
            raise user_error(err) from None
        except (KeyError, CheckpointError):
            raise gr.Error(GONE_SET) from None

    def show(self, result, raw_value, source) -> list:
        slots = {name: result.models.get(name) for name in ORDER}
        return [
            verdict(result), raw_value,
            # names for people ("2", not the folder's "2_digits"); the API keeps the real names
            *[gr.Label(value={config.class_display_name(c): p for c, p in a.probabilities.items()} if a else None,
                       visible=a is not None) for a in slots.values()],
            *[gr.Markdown(value=caption(n, a), visible=a is not None) for n, a in slots.items()],
            *[gr.Image(value=image_file(to_display(a.model_input)) if a else None, visible=a is not None)
              for a in slots.values()],
            photo_steps(result), self.neighbours(result), result.as_dict(), source,
        ]

    def neighbours(self, result) -> gr.Gallery:
        """The database images a rejected input resembles, shown only when it was rejected."""
        looks = result.looks_like
        items = []
        for hit in (looks.neighbours.hits if looks else []):
            try:
                items.append((image_file(self.service.thumbnail(hit.path, 96)),
                              f"{hit.label if hit.label is not None else '-'} · {hit.distance:.2f}"))
            except ImageError:
                continue
        return gr.Gallery(value=items, visible=bool(items))

    @staticmethod
    def nothing(text: str) -> list:
        return [empty_verdict(text), None, *[None] * len(ORDER), *[caption(n) for n in ORDER],
                *[None] * len(ORDER), gr.Image(value=None, visible=False), gr.Gallery(value=[], visible=False),
                None, None]

    def drawing(self, value, set_id):
        picture = drawing(value)
        if picture is None:
            raise gr.Error("Draw a digit first.")
        return self.show(self.classify(picture, set_id, name="The drawing"), picture, picture)

    def drawing_live(self, value, set_id):
        picture = drawing(value)
        if picture is None:        # cleared or untouched: reset quietly, no error toast while drawing
            return self.nothing("Draw a digit first.")
        try:
            result = self.service.classify(picture, set_id or SHIPPED, name="The drawing")
        except ImageError as err:
            return self.nothing(str(err))
        except (KeyError, CheckpointError):
            return self.nothing("That model set is not available any more.")
        return self.show(result, picture, picture)

    def upload(self, payload, set_id):
        path, name = file_path(payload)
        if path is None:
            raise gr.Error("Upload, paste or capture an image first.")
        return self.show(self.classify(path, set_id, name=name), path, path)

    def upload_live(self, payload, set_id):
        if file_path(payload)[0] is None:
            return self.nothing("Draw a digit or upload an image.")
        return self.upload(payload, set_id)

    def api(self, payload, set_id):
        path, name = file_path(payload)
        if path is None:
            raise gr.Error("Send one image file (gradio_client.handle_file(path)).")
        return self.classify(path, set_id or SHIPPED, name=name).as_dict()

    @staticmethod
    def send_to_retrieve(source):
        if source is None:
            raise gr.Error("Draw or upload a digit first, then send it to Retrieve.")
        return source, gr.Tabs(selected="retrieve")

    @staticmethod
    def send_to_explain(source):
        if source is None:
            raise gr.Error("Draw or upload a digit first, then ask why.")
        return source, gr.Tabs(selected="explain")


def layout(service: Service) -> SimpleNamespace:
    """The tab's components (a declarative layout, nothing wired)."""
    ui = SimpleNamespace(labels={}, captions={}, seen={})
    # the shipped set's columns from the start: one appearing with the first answer moves the page
    try:
        shown = set(service.model_set().models)
    except CheckpointError:
        shown = {"scratch", "finetuned"}
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=320):
            with gr.Tabs():
                with gr.Tab("Draw", id="draw"):
                    gr.Markdown("Draw one digit, large and centred. The predictions update as you draw; "
                                "undo or clear with the toolbar or the Clear button.")
                    ui.sketch = gr.Sketchpad(
                        show_label=False, type="numpy", image_mode="L", canvas_size=(320, 320), fixed_canvas=True,
                        brush=gr.Brush(default_size=22, colors=["#000000"], color_mode="fixed"),
                        eraser=gr.Eraser(default_size=30), layers=False, transforms=(), label="Drawing",
                        elem_id="sketch")
                    with gr.Row():
                        ui.draw_btn = gr.Button("Classify drawing", variant="primary", elem_id="classify-drawing")
                        ui.clear_btn = gr.Button("Clear", elem_id="clear-drawing")
                with gr.Tab("Upload, paste or webcam", id="upload"):
                    ui.upload = gr.Image(type="filepath", sources=["upload", "clipboard", "webcam"],
                                         label=f"A digit image (PNG, JPEG, WEBP, GIF, BMP; at most "
                                               f"{config.MAX_UPLOAD_MB} MB)", elem_id="upload", height=320)
                    ui.upload_btn = gr.Button("Classify image", variant="primary", elem_id="classify-upload")
                    examples = service.example_images()
                    if examples:
                        gr.Examples([[str(p)] for p in examples], inputs=[ui.upload], cache_examples=False,
                                    examples_per_page=12, label="Examples from query_images/ (one click)")
            with gr.Row():
                ui.explain_btn = gr.Button("Explain this answer", size="sm", variant="secondary",
                                           elem_id="send-to-explain", min_width=140)
                ui.send_btn = gr.Button("Find similar images", size="sm", elem_id="send-to-retrieve", min_width=140)
        with gr.Column(scale=3, min_width=320):
            ui.verdict = gr.HTML(empty_verdict("Draw a digit or upload an image."), elem_id="verdict",
                                 elem_classes=["verdict"])
            ui.looks_like = gr.Gallery(label="Looks like: nearest database images",
                                       columns=5,
                                       height=150, object_fit="contain", visible=False, elem_id="looks-like")
            with gr.Row():
                for name in ORDER:
                    with gr.Column(min_width=200):
                        ui.captions[name] = gr.Markdown(caption(name), visible=name in shown,
                                                        elem_id=f"caption-{name}")
                        ui.labels[name] = gr.Label(num_top_classes=3, show_label=False, label=name,
                                                   visible=name in shown, elem_id=f"label-{name}")
            gr.Markdown("**What the model sees**: your input, then the 28×28 image each model "
                        "actually received after preprocessing (white ink on black, like MNIST). A photo of "
                        "paper also shows how the digit was found on it.")
            with gr.Row(elem_id="seen-row"):     # min_width 140: two per line on a phone, not one
                ui.raw = gr.Image(label="Your input", interactive=False, height=200, elem_id="raw-input",
                                  buttons=[], min_width=140)
                for name in ORDER:
                    ui.seen[name] = gr.Image(label=f"{name} sees", interactive=False, height=200, buttons=[],
                                             visible=name in shown, elem_id=f"seen-{name}", min_width=140)
            ui.steps = gr.Image(label="How the photo was read", interactive=False, visible=False, buttons=[],
                                elem_id="photo-steps")
            ui.api_json = gr.JSON(visible=False)
    return ui


def build(ctx: Shared, service: Service) -> None:
    """Lay out the Classify tab and wire it to ``Service.classify``."""
    ui, on = layout(service), Handlers(service)
    ui.last_input = ctx.current_input
    outputs = [ui.verdict, ui.raw, *ui.labels.values(), *ui.captions.values(), *ui.seen.values(), ui.steps,
               ui.looks_like, ui.api_json, ui.last_input]
    inputs = lambda source: [source, ctx.model_set]

    # A failed classification (gr.Error toast) would leave the previous input's verdict on show.
    def cleared(text):
        return lambda: on.nothing(text)

    unreadable = cleared("That input could not be classified: the message at the top right says why.")
    common = dict(concurrency_limit=4, concurrency_id="classify")
    ui.sketch.change(on.drawing_live, inputs(ui.sketch), outputs, trigger_mode="always_last",
                     show_progress="hidden", api_name="classify_drawing_live", **common)
    ui.draw_btn.click(on.drawing, inputs(ui.sketch), outputs, api_name="classify_drawing", **common
                      ).failure(cleared("Draw a digit first."), None, outputs, api_name=False, show_progress="hidden")
    # Setting the editor's value to None from Python leaves it stuck loading in 6.31: press its own
    # "Clear canvas" instead, which empties the layers and fires .change (resetting the outputs).
    ui.clear_btn.click(None, None, None, api_name="clear_drawing", js=CLICK_CLEAR_CANVAS_JS)
    ui.upload.change(on.upload_live, inputs(ui.upload), outputs, preprocess=False, api_name="classify_upload_live",
                     **common).failure(unreadable, None, outputs, api_name=False, show_progress="hidden")
    ui.upload_btn.click(on.upload, inputs(ui.upload), outputs, preprocess=False, api_name="classify_upload",
                        **common).failure(unreadable, None, outputs, api_name=False, show_progress="hidden")
    ui.send_btn.click(on.send_to_retrieve, [ui.last_input], [ctx.to_retrieve, ctx.tabs], api_name="send_to_retrieve")
    ui.explain_btn.click(on.send_to_explain, [ui.last_input], [ctx.to_explain, ctx.tabs], api_name="send_to_explain")

    # API-only endpoint: one image file in, {"<model>": {"label", "probabilities"}} out.
    api_image = gr.Image(type="filepath", visible=False, label="image")
    api_set = gr.Textbox(value=SHIPPED, visible=False, label="model_set")
    api_result = gr.JSON(visible=False, label="result")
    gr.Button(visible=False).click(on.api, [api_image, api_set], api_result, preprocess=False,
                                   api_name="classify", **common)
