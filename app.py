"""Gradio app (placeholder until the full UI lands): serves the shipped models."""
