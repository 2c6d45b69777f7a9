"""Classify: draw or upload a digit; every model of the session's set answers side by side."""
from __future__ import annotations

import html
import os
from types import SimpleNamespace

import gradio as gr

from cvdemo import config
from cvdemo.service import SHIPPED, CheckpointError, ImageError, Service, canvas_array, to_display

from ..canvas import drawing_canvas
from ..common import GONE_SET, caption, empty_verdict, error_verdict, figure, file_path, inline_image, said, user_error
from ..context import Shared
from . import teach

ORDER = config.MODEL_ORDER
RAW_LABEL = "Your input"
RAW_SIDE = 320            # an uploaded photo is shown reduced to this side


def seen_label(name: str) -> str:
    return f"{name} sees"


def name_of(label) -> str:
    return html.escape(str(config.class_display_name(label)))


def each_model(answers) -> str:
    """One compact line of every model's answer: on a phone the verdict sits in a bar at the
    bottom of the screen (style.css) where the model columns are out of sight."""
    parts = [f"{html.escape(name)} <b>{name_of(a.label)}</b> {a.probabilities.get(a.label, 0.0):.0%}"
             + (" ✗" if a.known is False else "") for name, a in answers.items()]
    return f"<div class='each-model'>{' · '.join(parts)}</div>"


def verdict(result, neighbours: str = "", notice: str = "") -> str:
    kind, text = _banner(result)
    said = f"<p class='notice'>{html.escape(notice)}</p>" if notice else ""
    return f"<div class='{kind}'>{said}{text}{neighbours}{each_model(result.models)}</div>"


def hint(profile: str) -> str:
    return ("These models read **colour photos**: upload one in the next tab. A drawing can be classified, "
            "but it is not what they were trained on." if profile == "photo" else
            "Draw one digit, large and centred: the models answer after each stroke.")


def seen_note(model_set) -> str:
    extra = " A photo of paper also shows how the digit was found on it." if model_set.profile == "digits" else ""
    return f"**What the model sees**: your input, then {model_set.input_words}.{extra}"


DRAWN_ON_PHOTOS = ("These models were trained on colour photos, not drawings: below is what they make of one "
                   "anyway.")


def _banner(result) -> tuple[str, str]:
    """(the banner's class, its HTML)."""
    answers = result.models
    if result.known is False:
        known = [name_of(c) for c in next(iter(answers.values())).probabilities]
        classes = ", ".join(known)
        looks = result.looks_like
        said = ", ".join(f"{html.escape(n)} {name_of(a.label)}" for n, a in answers.items())
        if looks and looks.label and name_of(looks.label) in known:
            # unlike the training images, yet its neighbours are one of the known classes (a faint
            # photo, an odd hand): "not one of 0, 1, 2, it looks like a 2" would contradict itself
            return "unknown", (f"<span class='big'>Unsure: perhaps a {name_of(looks.label)}</span><br>It is unlike "
                               f"the digits the models were taught, but its nearest database images are "
                               f"{name_of(looks.label)}s.<br><small>The models say: {said}.</small>")
        like = (f"It looks like a <b>{name_of(looks.label)}</b>: its nearest database images are "
                f"{name_of(looks.label)}s." if looks and looks.label else "")
        return "unknown", (f"<span class='big'>Not one of {classes}</span><br>{like}<br><small>The models were "
                           f"only taught {classes}; forced to choose, they would say: {said}.</small>")
    if result.agree:
        who = "Both models" if len(answers) == 2 else f"All {len(answers)} models"
        return "agree", f"<span class='big'>{who} say {name_of(next(iter(answers.values())).label)}</span><br>They agree."
    said = "; ".join(f"<b>{html.escape(n)}</b> says <b>{name_of(a.label)}</b>" for n, a in answers.items())
    return "disagree", f"<span class='big'>The models disagree</span><br>{said}"


def photo_steps(result) -> str:
    """The photo steps (light evened out, lines and table removed, the digit boxed), for photos only."""
    picture = result.steps_picture()
    if picture is None:
        return ""
    return ("<figure class='photo-steps'><figcaption>How the photo was read</figcaption>"
            f"{inline_image(picture, 'How the photo was read: the steps that found the digit on the paper')}</figure>")


def drawing(value):
    """The canvas's drawing (2-D uint8, 255 = paper), or None for an untouched or cleared canvas.
    Raises ImageError for a value that is not a PNG data URL (only an API caller can send one)."""
    return canvas_array(value) if value else None


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

    def show(self, result, raw_value, source, notice: str = "") -> list:
        # Values only, no component updates: Gradio rebuilds a component's whole config for each
        # update (a third of an answer's server time). The columns follow the model set instead.
        slots = [result.models.get(name) for name in ORDER]
        return [
            verdict(result, self.neighbours(result), notice), figure(RAW_LABEL, self.picture(raw_value)),
            # names for people ("2", not the folder's "2_digits"); the API keeps the real names
            *[{config.class_display_name(c): p for c, p in a.probabilities.items()} if a else None for a in slots],
            *[caption(n, a) for n, a in zip(ORDER, slots)],
            *[figure(seen_label(n), to_display(a.model_input), f"what {n} received", "model-input") if a else figure(seen_label(n))
              for n, a in zip(ORDER, slots)],
            photo_steps(result), result.as_dict(), source,
        ]

    def picture(self, raw):
        """The input as shown beside what the models see: a drawing as it is, a file reduced."""
        if not isinstance(raw, (str, os.PathLike)):
            return raw
        try:
            return self.service.thumbnail(raw, RAW_SIDE)
        except ImageError:
            return None

    def neighbours(self, result) -> str:
        """The database images a rejected input resembles, as thumbnails inside its banner."""
        looks = result.looks_like
        items = []
        for hit in (looks.neighbours.hits if looks else []):
            try:
                label = config.class_display_name(hit.label) if hit.label is not None else "unlabelled"
                items.append(inline_image(self.service.thumbnail(hit.path, 96),
                                          f"database image: {label}, distance {hit.distance:.2f}"))
            except ImageError:
                continue
        return f"<div class='looks-like' id='looks-like'>{''.join(items)}</div>" if items else ""

    def columns(self, set_id):
        """The columns of the models in the session's set and the words for what it reads (when
        the set changes)."""
        try:
            model_set = self.service.model_set(set_id or SHIPPED)
        except (KeyError, CheckpointError):
            return [gr.skip()] * (3 * len(ORDER) + 2)
        return [*[component(visible=name in model_set.models) for component in (gr.Label, gr.Markdown, gr.HTML)
                  for name in ORDER], hint(model_set.profile), seen_note(model_set)]

    def drawn_notice(self, set_id) -> str:
        """What a drawing classified by a set that reads photos is told."""
        try:
            return DRAWN_ON_PHOTOS if self.service.model_set(set_id or SHIPPED).profile == "photo" else ""
        except (KeyError, CheckpointError):
            return ""

    @staticmethod
    def nothing(text: str, error: bool = False) -> list:
        return [(error_verdict if error else empty_verdict)(text), figure(RAW_LABEL), *[None] * len(ORDER),
                *[caption(n) for n in ORDER], *[figure(seen_label(n)) for n in ORDER], "", None, None]

    def drawing(self, value, set_id):
        try:
            picture = drawing(value)
        except ImageError as err:
            raise user_error(err) from None
        if picture is None:
            raise gr.Error("Draw a digit first.")
        return self.show(self.classify(picture, set_id, name="The drawing"), picture, picture,
                         self.drawn_notice(set_id))

    def drawing_pressed(self, value, set_id):
        """The "Classify drawing" button: an empty canvas or a refusal said in the verdict, once."""
        try:
            return self.drawing(value, set_id)
        except gr.Error as err:
            return self.nothing(said(err), error=True)

    def drawing_live(self, value, set_id):
        try:
            picture = drawing(value)
        except ImageError as err:
            return self.nothing(str(err))
        if picture is None:        # cleared or untouched: reset quietly, no error toast while drawing
            return self.nothing("Draw a digit first.")
        try:
            result = self.service.classify(picture, set_id or SHIPPED, name="The drawing")
        except ImageError as err:
            return self.nothing(str(err))
        except (KeyError, CheckpointError):
            return self.nothing("That model set is not available any more.")
        return self.show(result, picture, picture, self.drawn_notice(set_id))

    def upload(self, payload, set_id):
        path, name = file_path(payload)
        if path is None:
            raise gr.Error("Upload, paste or capture an image first.")
        return self.show(self.classify(path, set_id, name=name), path, path)

    def upload_here(self, payload, set_id, pressed: bool = False):
        """An upload, paste or webcam picture in the page; the outputs plus the drop zone. A file
        that cannot be read is said in the verdict, once, and leaves the drop zone (a toast would
        say it far from the file, beside a broken-image frame)."""
        path, name = file_path(payload)
        if path is None:        # emptied by us after an error, or by its own x (which .clear answers)
            return [*self.nothing("Upload, paste or capture an image first.", error=True), gr.skip()] if pressed \
                else [gr.skip()] * (len(self.nothing("")) + 1)
        try:
            result = self.service.classify(path, set_id or SHIPPED, name=name)
        except ImageError as err:
            return [*self.nothing(str(err), error=True), None]
        except (KeyError, CheckpointError):
            return [*self.nothing(GONE_SET, error=True), gr.skip()]
        return [*self.show(result, path, path), gr.skip()]

    def upload_pressed(self, payload, set_id):
        return self.upload_here(payload, set_id, pressed=True)

    def api(self, payload, set_id):
        path, name = file_path(payload)
        if path is None:
            raise gr.Error("Send one image file (gradio_client.handle_file(path)).")
        return self.classify(path, set_id or SHIPPED, name=name).as_dict()

    @staticmethod
    def send_to_retrieve(source):
        """"Find similar images": to Retrieve with the input; without one, said in the verdict."""
        if source is None:
            return gr.skip(), gr.skip(), error_verdict("Draw or upload a digit first, then send it to Retrieve.")
        return source, gr.Tabs(selected="retrieve"), gr.skip()

    @staticmethod
    def send_to_explain(source):
        if source is None:
            return gr.skip(), gr.skip(), error_verdict("Draw or upload a digit first, then ask why.")
        return source, gr.Tabs(selected="explain"), gr.skip()


def layout(service: Service) -> SimpleNamespace:
    """The tab's components (a declarative layout, nothing wired)."""
    ui = SimpleNamespace(labels={}, captions={}, seen={})
    # the shipped set's columns from the start: one appearing with the first answer moves the page
    try:
        shown, shipped = set(service.model_set().models), True
    except CheckpointError:
        shown, shipped = {"scratch", "finetuned"}, False
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=320):
            with gr.Tabs():
                with gr.Tab("Draw", id="draw"):
                    ui.hint = gr.Markdown(hint("digits"), elem_id="draw-hint")
                    ui.sketch = drawing_canvas()
                    ui.draw_btn = gr.Button("Classify drawing", variant="primary", elem_id="classify-drawing")
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
            with gr.Row():
                for name in ORDER:
                    with gr.Column(min_width=200):
                        ui.captions[name] = gr.Markdown(caption(name), visible=name in shown,
                                                        elem_id=f"caption-{name}")
                        ui.labels[name] = gr.Label(num_top_classes=3, show_label=False, label=name,
                                                   visible=name in shown, elem_id=f"label-{name}")
            ui.seen_note = gr.Markdown(seen_note(service.model_set()) if shipped else "", elem_id="seen-note")
            with gr.Row(elem_id="seen-row"):     # min_width 140: two per line on a phone, not one
                ui.raw = gr.HTML(figure(RAW_LABEL), elem_id="raw-input", min_width=140, padding=False)
                for name in ORDER:
                    ui.seen[name] = gr.HTML(figure(seen_label(name)), visible=name in shown, elem_id=f"seen-{name}",
                                            min_width=140, padding=False)
            ui.steps = gr.HTML("", elem_id="photo-steps")
            ui.teach = teach.layout()
            ui.api_json = gr.JSON(visible=False)
    return ui


def build(ctx: Shared, service: Service) -> None:
    """Lay out the Classify tab and wire it to ``Service.classify``."""
    ui, on = layout(service), Handlers(service)
    teach.wire(ctx, service, ui.teach)
    ui.last_input = ctx.current_input
    outputs = [ui.verdict, ui.raw, *ui.labels.values(), *ui.captions.values(), *ui.seen.values(), ui.steps,
               ui.api_json, ui.last_input]
    columns = [*ui.labels.values(), *ui.captions.values(), *ui.seen.values(), ui.hint, ui.seen_note]
    ctx.model_set.change(on.columns, ctx.model_set, columns, api_name=False, show_progress="hidden")
    inputs = lambda source: [source, ctx.model_set]

    # A failed classification (gr.Error toast) would leave the previous input's verdict on show.
    def cleared(text):
        return lambda: on.nothing(text)

    unreadable = cleared("That input could not be classified.")
    common = dict(concurrency_limit=config.CLASSIFY_CONCURRENCY, concurrency_id="classify")
    # while drawing, only the verdict shows that an answer is on its way: the queue's position
    # and wait when the server is saturated, a small timer otherwise (no overlay at every stroke)
    ui.sketch.change(on.drawing_live, inputs(ui.sketch), outputs, trigger_mode="always_last",
                     show_progress="minimal", show_progress_on=[ui.verdict], api_name="classify_drawing_live",
                     **common)
    ui.draw_btn.click(on.drawing_pressed, inputs(ui.sketch), outputs, api_name=False, **common)
    # the API's drawing: an empty or broken one as an error (gradio_client raises it)
    gr.Button(visible=False).click(on.drawing, inputs(ui.sketch), outputs, api_name="classify_drawing", **common)
    ui.upload.change(on.upload_here, inputs(ui.upload), [*outputs, ui.upload], preprocess=False,
                     api_name="classify_upload_live", **common
                     ).failure(unreadable, None, outputs, api_name=False, show_progress="hidden")
    ui.upload.clear(cleared("Draw a digit or upload an image."), None, outputs, api_name=False, show_progress="hidden")
    ui.upload_btn.click(on.upload_pressed, inputs(ui.upload), [*outputs, ui.upload], preprocess=False, api_name=False,
                        **common).failure(unreadable, None, outputs, api_name=False, show_progress="hidden")
    # the API's upload: the Classify tab's outputs, a bad file as an error (gradio_client raises it)
    gr.Button(visible=False).click(on.upload, inputs(ui.upload), outputs, preprocess=False, api_name="classify_upload",
                                   **common)
    ui.send_btn.click(on.send_to_retrieve, [ui.last_input], [ctx.to_retrieve, ctx.tabs, ui.verdict],
                      api_name="send_to_retrieve")
    ui.explain_btn.click(on.send_to_explain, [ui.last_input], [ctx.to_explain, ctx.tabs, ui.verdict],
                         api_name="send_to_explain")

    # API-only endpoint: one image file in, {"<model>": {"label", "probabilities"}} out.
    api_image = gr.Image(type="filepath", visible=False, label="image")
    api_set = gr.Textbox(value=SHIPPED, visible=False, label="model_set")
    api_result = gr.JSON(visible=False, label="result")
    gr.Button(visible=False).click(on.api, [api_image, api_set], api_result, preprocess=False,
                                   api_name="classify", **common)
