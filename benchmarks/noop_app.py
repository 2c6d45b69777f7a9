"""The framework's floor: an empty Gradio app whose ``/classify`` and ``/classify_drawing_live``
answer a constant at once, served with Gradio's defaults. The bench's ``classroom`` section loads it
beside ``app.py`` in the same run, so the app's figures read as ratios to what Gradio alone costs.

    GRADIO_SERVER_PORT=7861 python benchmarks/noop_app.py
"""
from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

ANSWER = {"scratch": {"label": "0", "probabilities": {"0": 1.0}}}


def build() -> gr.Blocks:
    with gr.Blocks() as demo:
        image = gr.Image(type="filepath")
        drawing = gr.Textbox()
        out = gr.JSON()
        gr.Button().click(lambda path: ANSWER, image, out, api_name="classify")
        drawing.change(lambda value: ANSWER, drawing, out, api_name="classify_drawing_live")
    return demo


if __name__ == "__main__":
    build().launch(ssr_mode=False)
