"""The drawing canvas: a ``gr.HTML`` holding a plain canvas whose value is its PNG data URL.

Gradio's ``Sketchpad`` exports and uploads every layer before each ``change`` (about 0.9 s from
the end of a stroke to the request, in Chromium on 2 cores); this canvas sends one small PNG in
the request itself. ``cvdemo.service.canvas_array`` turns the value into the drawing.
"""
from __future__ import annotations

from pathlib import Path

import gradio as gr

SIDE = 320    # the canvas's own pixels; CSS scales it down on a phone (see style.css)
TEMPLATE = f"""
<div class="draw-canvas">
  <canvas width="{SIDE}" height="{SIDE}" role="img"
          aria-label="Drawing canvas: draw one digit here with the mouse, a finger or a pen"></canvas>
  <div class="draw-tools">
    <button type="button" data-action="undo" id="undo-drawing" aria-label="Undo the last stroke">↶ Undo</button>
    <button type="button" data-action="clear" id="clear-drawing" aria-label="Clear the drawing">✕ Clear</button>
  </div>
</div>
"""
SCRIPT = (Path(__file__).resolve().parent / "static" / "canvas.js").read_text()


def drawing_canvas(elem_id: str = "sketch") -> gr.HTML:
    """The canvas; its ``.change`` fires when a stroke ends, with "" once it is cleared."""
    return gr.HTML(value="", html_template=TEMPLATE, js_on_load=SCRIPT, elem_id=elem_id, label="Drawing",
                   apply_default_css=True)
