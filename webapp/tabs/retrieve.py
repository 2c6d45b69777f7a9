"""Retrieve: drop a query digit; the k most similar database images with rank, file, class and
distance, checked against the classifiers' prediction. New images can be added."""
from __future__ import annotations

import html
from types import SimpleNamespace

import gradio as gr
import pandas as pd

from cvdemo import config
from cvdemo.config import class_display_name
from cvdemo.service import CheckpointError, ImageError, MilvusError, Service, to_display

from ..common import GONE_SET, empty_verdict, error_verdict, file_path, image_file, owner_of, said, user_error
from ..context import Shared

RESULT_HEADERS = ["rank", "path", "label", "distance"]
WAITING = "Drop a digit to find the most similar database images."


def agreement_html(agreement, note: str) -> str:
    """The verdict banner: do the neighbours' classes agree with the classifiers?"""
    near = agreement.majority
    head = (f"Neighbours: mostly class <b>{html.escape(near)}</b> ({agreement.votes} of {agreement.hits})"
            if near is not None else "Neighbours have no class folder")
    small = f"<br><small>{html.escape(note)}</small>"
    if not agreement.classified:
        extra = f" ({html.escape(agreement.why_not)})" if agreement.why_not else ""
        return f"<div class='empty'>{head}.{extra}{small}</div>"
    said = ", ".join(f"{html.escape(n)} says <b>{html.escape(str(class_display_name(label)))}</b>"
                     for n, label in agreement.said.items())
    if agreement.agree:
        return (f"<div class='agree'><span class='big'>The neighbours agree with the classifiers: "
                f"{html.escape(near)}</span><br>{head}; {said}.{small}</div>")
    outside = (f" (the classifiers only know classes {', '.join(str(class_display_name(k)) for k in agreement.known)})"
               if agreement.unknown_to_classifiers else "")
    return (f"<div class='disagree'><span class='big'>The neighbours and the classifiers disagree</span>"
            f"<br>{head}; {said}{html.escape(outside)}.{small}</div>")


class Handlers:
    """The tab's event functions over one service."""

    def __init__(self, service: Service):
        self.service = service

    def search(self, source, k, set_id, name=None, owner=None):
        try:
            answer, agreement = self.service.retrieve_compared(source, k, set_id, name=name, owner=owner)
        except (ValueError, ImageError, MilvusError) as err:
            raise user_error(err) from None
        items = []
        for hit in answer.hits:
            caption = (f"#{hit.rank} · {hit.path.name} · class {hit.label if hit.label is not None else '-'}"
                       f" · d={hit.distance:.3f}{agreement.mark(hit)}" + (" · yours" if answer.is_private(hit) else ""))
            try:
                items.append((image_file(self.service.thumbnail(hit.path)), caption))
            except ImageError:            # deleted or changed since indexing: leave it out, keep the rest
                continue
        # paths relative to the database's folder (images_database/2/2_1.png): never the server's own
        listing = pd.DataFrame([[h["rank"], h["path"], h["label"], round(h["distance"], 3)] for h in answer.as_list()],
                               columns=RESULT_HEADERS)
        note = f"extractor {answer.extractor} · {answer.backend} search · {answer.ms:.0f} ms"
        return items, listing, agreement_html(agreement, note), image_file(to_display(answer.query_input))

    def search_file(self, payload, k, set_id=None, request: gr.Request = None):
        path, name = file_path(payload)
        if path is None:
            raise gr.Error("Drop, paste or pick a query image first.")
        return self.search(path, k, set_id, name=name, owner=owner_of(request))

    def search_here(self, payload, k, set_id=None, pressed: bool = False, request: gr.Request = None):
        """A query dropped, pasted or searched in the page; the outputs plus the drop zone. A file
        that cannot be searched is said in the verdict, once, with the last results cleared and
        the drop zone emptied (a toast would say it far from the file, beside a broken frame)."""
        path, name = file_path(payload)
        if path is None:        # emptied by us after an error, or by its own x (which .clear answers)
            return ([[], None, error_verdict("Drop, paste or pick a query image first."), None, gr.skip()] if pressed
                    else [gr.skip()] * 5)
        try:
            return [*self.search(path, k, set_id, name=name, owner=owner_of(request)), gr.skip()]
        except gr.Error as err:
            return [[], None, error_verdict(said(err)), None, None]
        except (KeyError, CheckpointError):
            return [[], None, error_verdict(GONE_SET), None, gr.skip()]

    def search_pressed(self, payload, k, set_id=None, request: gr.Request = None):
        return self.search_here(payload, k, set_id, pressed=True, request=request)

    @staticmethod
    def cleared():
        return [], None, empty_verdict(WAITING), None

    def add(self, files, label, request: gr.Request = None):
        paths = [f if isinstance(f, str) else file_path(f)[0] for f in (files or [])]
        paths = [p for p in paths if p]
        if not paths:
            raise gr.Error("Choose one or more image files to add.")
        owner = owner_of(request)
        try:
            report = self.service.add_to_database(paths, label=label or None, owner=owner)
        except (ValueError, MilvusError) as err:
            raise user_error(err) from None
        if not report.added:
            raise gr.Error("Nothing was added. " + " ".join(
                f"{html.escape(n)}: {html.escape(r.rstrip('.'))}." for n, r in report.skipped))
        whose = ("they are in the database for everyone now" if self.private_off(owner)
                 else "only you can find them, until you close this page")
        lines = [f"Added **{len(report.added)}** image(s); {whose}."]
        lines += [f"- added `{html.escape(p.name)}`" for p in report.added]
        lines += [f"- skipped `{html.escape(n)}`: {html.escape(r)}" for n, r in report.skipped]
        return ("\n".join(lines), None, *self.mine(owner))

    def add_here(self, files, label, request: gr.Request = None):
        """The page's "Add to database": a refusal is said in the report under the button, once,
        and the files stay chosen (the API's add raises it instead)."""
        try:
            return self.add(files, label, request)
        except gr.Error as err:
            return (f"**Not added.** {err.message}", gr.skip(), gr.skip(), gr.skip(), gr.skip())

    def remove_here(self, addition_id, request: gr.Request = None):
        try:
            return self.remove(addition_id, request)
        except gr.Error as err:
            return (f"**Not removed.** {err.message}", gr.skip(), gr.skip(), gr.skip())

    def private_off(self, owner) -> bool:
        return owner is None or self.service.shared_additions

    def mine(self, owner) -> tuple:
        """The visitor's own additions: thumbnails, and the choices of the "remove" dropdown."""
        additions = self.service.additions(owner)
        tiles = []
        for a in additions:
            try:
                tiles.append((image_file(self.service.thumbnail(a.path, 96)), a.shown))
            except ImageError:
                continue
        return (gr.Gallery(value=tiles, visible=bool(tiles)),
                gr.Dropdown(choices=[(a.shown, a.id) for a in additions], value=None, visible=bool(additions)),
                gr.Button(visible=bool(additions)))

    def remove(self, addition_id, request: gr.Request = None):
        if not addition_id:
            raise gr.Error("Pick one of the images you added first.")
        owner = owner_of(request)
        try:
            self.service.remove_addition(owner, addition_id)
        except KeyError as err:
            raise user_error(err) from None
        return ("Removed: it is no longer found by your searches.", *self.mine(owner))

    def api_additions(self, request: gr.Request = None) -> list[dict]:
        """The caller's own additions: [{"id", "file"}] (API only; a "path" key would make
        gradio_client download it)."""
        return [{"id": a.id, "file": "your additions/" + a.shown} for a in self.service.additions(owner_of(request))]


def layout(service: Service) -> SimpleNamespace:
    """The tab's components (a declarative layout, nothing wired)."""
    ui = SimpleNamespace()
    with gr.Row(equal_height=False, elem_id="retrieve-row"):
        with gr.Column(scale=2, min_width=300, elem_id="retrieve-inputs"):
            # a short label: the image's corner icons sit over a long one
            ui.query = gr.Image(type="filepath", sources=["upload", "clipboard"], height=260, label="Query digit",
                                elem_id="retrieve-query")
            gr.Markdown(f"PNG, JPEG, WEBP, GIF or BMP; at most {config.MAX_UPLOAD_MB} MB.", elem_id="retrieve-formats")
            ui.k = gr.Slider(1, 20, value=4, step=1, label="Number of results (k)", elem_id="retrieve-k")
            ui.search = gr.Button("Find similar images", variant="primary", elem_id="retrieve-search")
            examples = service.example_images()
            if examples:
                with gr.Column(elem_id="retrieve-examples"):       # after the results on a phone (style.css)
                    gr.Examples([[str(p)] for p in examples], inputs=[ui.query], cache_examples=False,
                                examples_per_page=12, label="Queries from query_images/ (never in the database)")
        with gr.Column(scale=3, min_width=320, elem_id="retrieve-outputs"):
            ui.verdict = gr.HTML(empty_verdict(WAITING), elem_id="retrieve-verdict", elem_classes=["verdict"])
            ui.gallery = gr.Gallery(label="Most similar (rank · file · class · distance)", columns=4,
                                    height="fit-content", object_fit="contain", elem_id="retrieve-gallery")
            with gr.Row():
                ui.seen = gr.Image(label="What the extractor sees", interactive=False, height=150, buttons=[],
                                   elem_id="retrieve-seen", scale=1, min_width=150)
                # a table, not gr.JSON: gradio_client downloads any JSON dict with a "path" key as a file
                ui.results = gr.Dataframe(headers=RESULT_HEADERS, label="Ranked results", scale=3, min_width=260,
                                          interactive=False, elem_id="retrieve-results", max_height=200, wrap=True,
                                          column_widths=["16%", "38%", "20%", "26%"])
            with gr.Accordion("Add images to the database", open=False):
                gr.Markdown("Images you add are in the database for everyone, for good (this server's "
                            "setting)." if service.shared_additions else
                            "Images you add are searchable **by you only**, until you close this page; "
                            "nobody else sees them. Remove them below at any time.", elem_id="retrieve-add-note")
                with gr.Row():
                    ui.new_files = gr.File(file_count="multiple", type="filepath", elem_id="retrieve-add-files",
                                           file_types=list(config.IMAGE_EXTENSIONS), label="Images to add")
                    with gr.Column():
                        ui.new_label = gr.Dropdown([str(d) for d in range(10)], value=None, allow_custom_value=True,
                                                   label="Class folder (empty: no class)",
                                                   elem_id="retrieve-add-label")
                        ui.add_btn = gr.Button("Add to database", elem_id="retrieve-add")
                ui.add_report = gr.Markdown(elem_id="retrieve-add-report")
                ui.mine = gr.Gallery(label="Images you added", columns=6, height="auto", visible=False,
                                     allow_preview=False, elem_id="retrieve-mine")
                with gr.Row():
                    ui.remove_pick = gr.Dropdown([], label="Remove one of them", visible=False,
                                                 elem_id="retrieve-remove-pick")
                    ui.remove_btn = gr.Button("Remove", visible=False, elem_id="retrieve-remove")
    return ui


def build(ctx: Shared, service: Service) -> None:
    """Lay out the Retrieve tab and wire it to ``Service.retrieve_compared`` and ``add_to_database``."""
    ui, on = layout(service), Handlers(service)
    inputs, outputs = [ui.query, ui.k, ctx.model_set], [ui.gallery, ui.results, ui.verdict, ui.seen]
    common = dict(concurrency_limit=4, concurrency_id="retrieve")
    ui.search.click(on.search_pressed, inputs, [*outputs, ui.query], preprocess=False, api_name=False, **common)
    ui.query.change(on.search_here, inputs, [*outputs, ui.query], preprocess=False, api_name="retrieve_live",
                    show_progress="minimal", **common)
    ui.query.clear(on.cleared, None, outputs, api_name=False, show_progress="hidden")
    # the API's search: a bad file as an error (gradio_client raises it)
    gr.Button(visible=False).click(on.search_file, inputs, outputs, preprocess=False, api_name="retrieve", **common)
    mine = [ui.mine, ui.remove_pick, ui.remove_btn]
    adding = dict(concurrency_limit=1, concurrency_id="add_to_database")
    ui.add_btn.click(on.add_here, [ui.new_files, ui.new_label], [ui.add_report, ui.new_files, *mine], api_name=False,
                     **adding)
    ui.remove_btn.click(on.remove_here, ui.remove_pick, [ui.add_report, *mine], api_name=False)
    # the API's add and remove: a refusal as an error (gradio_client raises it)
    gr.Button(visible=False).click(on.add, [ui.new_files, ui.new_label], [ui.add_report, ui.new_files, *mine],
                                   api_name="add_to_database", **adding)
    gr.Button(visible=False).click(on.remove, ui.remove_pick, [ui.add_report, *mine], api_name="remove_addition")
    api_out = gr.JSON(visible=False, label="additions")
    gr.Button(visible=False).click(on.api_additions, None, api_out, api_name="my_additions")
    # Classify's "Find similar images": show it here; .change searches
    ctx.to_retrieve.change(lambda source: source, ctx.to_retrieve, ui.query, api_name="receive_query",
                           show_progress="hidden")
