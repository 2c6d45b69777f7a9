"""Analysis of trained classifiers on labelled images, for the Analyze tab, ``report`` and the bundle.

Bottom up: ``selection`` picks the images, ``compute`` measures (metrics, calibration, t-SNE,
centroid distances, leakage, latency) into a ``result``; ``figures`` and ``markdown`` show it;
``cache`` keeps each analysis on disk by checkpoint hash and data fingerprint; ``bundle`` zips it
with the models. Never imports Gradio.
"""
from .bundle import ConversionError, bundle, tflite_predict, to_tflite
from .cache import Analysis, analyze_cached, export
from .compute import (
    analyze,
    cache_key,
    calibration,
    centroid_distances,
    class_centroids,
    confusion_normalised,
    embed_tsne,
    near_duplicates,
)
from .figures import confusion_matrices_figure
from .result import AnalysisResult, ModelResult

__all__ = ["ConversionError", "bundle", "tflite_predict", "to_tflite", "Analysis", "analyze_cached", "export",
           "analyze", "cache_key", "calibration", "centroid_distances", "class_centroids", "confusion_normalised",
           "embed_tsne", "near_duplicates", "confusion_matrices_figure", "AnalysisResult", "ModelResult"]
