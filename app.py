"""Gradio app: classify, train, retrieve and analyse handwritten digits.

Wires components to plain ``cvdemo`` functions: one small function per tab, handlers that call
one service method and return plain data. Knows nothing about Keras or numpy maths.
"""
from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from cvdemo import config  # noqa: E402
from cvdemo.service import SHIPPED, Service  # noqa: E402


# ----------------------------------------------------------------------------- tabs

def classify_tab(service: Service, model_set: gr.State) -> None:
    gr.Markdown("Classification loads here.")


def train_tab(service: Service, model_set: gr.State) -> None:
    gr.Markdown("Training loads here.")


def retrieve_tab(service):
    gr.Markdown("Retrieval loads here.")


def analyze_tab(service):
    gr.Markdown("Analysis loads here.")


# ----------------------------------------------------------------------------- app

def build_app(service: Service) -> gr.Blocks:
    """The whole UI for one loaded :class:`Service`."""
    with gr.Blocks(title="cvdemo: handwritten digits") as demo:
        model_set = gr.State(SHIPPED)   # per-session: the model set this browser uses
        with gr.Tab("Classify"):
            classify_tab(service, model_set)
        with gr.Tab("Train"):
            train_tab(service, model_set)
        with gr.Tab("Retrieve"):
            retrieve_tab(service)
        with gr.Tab("Analyze"):
            analyze_tab(service)
    return demo


def launch(demo: gr.Blocks, **kwargs):
    """Queue and launch with the project's limits; extra kwargs go to ``Blocks.launch``."""
    options = dict(
        ssr_mode=False,
        max_file_size=f"{config.MAX_UPLOAD_MB}mb",
        allowed_paths=[str(p) for p in (config.QUERY_DIR, config.DATABASE_DIR, config.RUNS_DIR)],
        theme=gr.themes.Soft(),
    )
    options.update(kwargs)
    return demo.queue(max_size=64).launch(**options)


def main() -> None:
    checkpoints = os.environ.get("CVDEMO_CHECKPOINTS", str(config.CHECKPOINT_DIR))
    service = Service(checkpoints=checkpoints)
    launch(build_app(service))


if __name__ == "__main__":
    main()
