"""The components every tab may read or update, built once by ``build_app`` before any tab."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr


@dataclass(frozen=True)
class Shared:
    """Components shared between tabs.

    ``model_set``: the session's model-set id (``cvdemo.service.SHIPPED`` by default).
    ``to_retrieve``: the image Classify sends to Retrieve (a 2-D uint8 drawing, 255 = paper, or an
    image file path); its ``.change`` fires on send. ``tabs``: return ``gr.Tabs(selected=...)`` to
    switch tab. ``set_picker`` and ``notice``: the "Models in use" dropdown and its line of text.
    ``page``: the Blocks, for ``.load`` events. ``to_explain``: the input Classify sends to
    Explain (same forms as ``to_retrieve``). ``current_input``: the input Classify last answered
    (same forms), which Analyze places on its map.
    """

    model_set: gr.State
    to_retrieve: gr.State
    to_explain: gr.State
    current_input: gr.State
    tabs: gr.Tabs
    set_picker: gr.Dropdown
    notice: gr.Markdown
    page: gr.Blocks
