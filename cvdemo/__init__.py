"""cvdemo: handwritten-digit classification (a scratch CNN vs a fine-tuned pretrained network),
image retrieval and analysis, usable from the CLI, tests and notebooks. Never imports Gradio;
importing the package is cheap (TensorFlow loads only when a model is needed).
"""
__version__ = "1.0.0"
