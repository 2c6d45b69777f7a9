"""What the tabs share: upload checks, turning cvdemo errors into gr.Error, image files for
outputs, verdict HTML and captions. Presentation only; every decision is a cvdemo function."""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import gradio as gr
import numpy as np

from cvdemo import config
from cvdemo.config import class_display_name
from cvdemo.fsutil import atomic_write_bytes, content_file
from cvdemo.service import SHIPPED

MODEL_TITLES = {"scratch": "CNN trained from scratch", "finetuned": "Fine-tuned pretrained backbone",
                "lenet": "LeNet-5"}
GONE_SET = "That model set is not available any more. Pick another in \"Models in use\" at the top of the page."


def user_error(err: Exception) -> gr.Error:
    """A gr.Error carrying a cvdemo message (which may quote a user's file name: escaped)."""
    message = err.args[0] if isinstance(err, KeyError) and err.args else err
    return gr.Error(html.escape(str(message)))


def said(err: gr.Error) -> str:
    """The plain text of a gr.Error raised with :func:`user_error` (unescaped again), for an
    answer that shows it in the page instead of raising it."""
    return html.unescape(str(err.message))


def owner_of(request) -> str | None:
    """The visitor's session, which owns what they train and add (None outside a request)."""
    return getattr(request, "session_hash", None) or None


def file_path(payload) -> tuple[str | None, str | None]:
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


def png_bytes(image) -> bytes:
    """A PIL image or a numpy array as PNG bytes."""
    from PIL import Image

    picture = image if isinstance(image, Image.Image) else Image.fromarray(image)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def image_file(image) -> str:
    """A PNG file for an image output (``fsutil.content_file`` under the temp dir).

    Gradio 6.31 rewrites its cached copy of a numpy/PIL output in place on every request
    (``save_pil_to_cache``), so two visitors getting the same picture at once can truncate each
    other's download; a file path is copied into its cache atomically instead.
    """
    return str(content_file(png_bytes(image), config.TEMP_DIR / "cvdemo-images", ".png"))


def figure(label: str, image=None, alt: str = "", css_class: str = "") -> str:
    """A labelled picture carried inside the answer (``inline_image``), or its empty frame.

    Used for what changes with every stroke: a data URL travels in the answer itself, where an
    image output would cost a file written, moved into Gradio's cache and fetched back, per
    picture and per stroke (BENCHMARKS.md, "Serving a classroom")."""
    body = inline_image(image, alt or label, css_class) if image is not None else "<div class='figure-empty'></div>"
    return f"<figure class='seen-figure'><figcaption>{html.escape(label)}</figcaption>{body}</figure>"


def inline_image(image, alt: str, css_class: str = "") -> str:
    """An <img> carrying its picture in a data URL: for small pictures inside an HTML output, which
    travel with the answer instead of as one more file for Gradio to cache and the page to fetch.
    A colour photo goes as JPEG (a tenth of its PNG), anything else as PNG."""
    from PIL import Image

    picture = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    if picture.mode == "RGB" and max(picture.size) > 128:
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=85)
        source = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    else:
        source = "data:image/png;base64," + base64.b64encode(png_bytes(picture)).decode("ascii")
    return f"<img src='{source}' alt='{html.escape(alt, quote=True)}' class='{css_class}'>"


def served_copy(path: Path, folder: str) -> str:
    """A copy of a file under the temp dir (Gradio serves files from there, cwd or allowed_paths)."""
    target = config.TEMP_DIR / folder / Path(path).name
    if not target.exists():
        atomic_write_bytes(target, Path(path).read_bytes())
    return str(target)


def empty_verdict(text: str) -> str:
    return f"<div class='empty'>{html.escape(text)}</div>"


def error_verdict(text: str) -> str:
    """Why an input could not be used, where its answer would have been."""
    return f"<div class='error' role='alert'>{html.escape(text)}</div>"


def caption(name: str, answer=None) -> str:
    title = f"**{name}**: {MODEL_TITLES.get(name, name)}"
    if answer is None:
        return title
    runtime = {"litert": " on LiteRT", "keras": " on Keras"}.get(answer.runtime, "")
    line = f"{title}  \n{answer.ms:.0f} ms{runtime} · weights: {html.escape(answer.weights)}"
    if answer.known is None:
        return line
    classes = ", ".join(html.escape(str(class_display_name(c))) for c in answer.probabilities)
    return line + ("  \n✓ known" if answer.known else f"  \n✗ **not one of {classes}**") + \
        f" (novelty {answer.novelty:.2f}; above 1 is unknown)"


def set_notice(set_id: str, trained: bool = False) -> str:
    if set_id == SHIPPED:
        return "Using the **shipped models** (`checkpoints/`)."
    if trained:
        return ("**Your session now uses the models you just trained** (other visitors keep theirs; "
                "switch back with the dropdown).")
    return "Using a set of models trained in this app (your choice applies to your session only)."
