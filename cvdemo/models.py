"""Model registry: the scratch CNN, the LeNet baseline and fine-tuned backbones, by name.

Every classifier takes preprocessed images (see :mod:`cvdemo.images`) and names its penultimate
layer ``embedding`` so one feature extractor serves all of them. Knows nothing about
training loops, files on disk beyond weight files, or the UI.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import keras
import numpy as np

from . import config
from .backbones import BACKBONES, build_backbone
from .layers import BackbonePreprocess, FusedBatchNormalization

# ----------------------------------------------------------------------------- classifiers

def _head(x, n_classes: int, width: int, dropout: float, name: str):
    x = keras.layers.Dense(width, activation="relu", name="embedding")(x)
    x = keras.layers.Dropout(dropout)(x)
    return keras.layers.Dense(n_classes, activation="softmax", name="probabilities")(x)


def build_scratch(input_shape: tuple[int, int, int], n_classes: int) -> keras.Model:
    """The from-scratch CNN: a 5x5 conv at full size, two 3x3 at half, one at a quarter, a 128-wide embedding.

    Batch norm after every conv, by the fused kernel (``layers.FusedBatchNormalization``). The
    single 5x5 conv at full size keeps 10 epochs of the sample set inside the training-time
    budget on 2 CPU cores; the pair of convs at half size is what typed fonts need. The measured
    trade-offs are in docs/decisions.md ("The scratch CNN").
    """
    inputs = keras.Input(input_shape, name="image")
    x = inputs
    blocks = (((32, 5),), ((64, 3), (64, 3)), ((128, 3),))
    for block, convs in enumerate(blocks):
        for conv, (filters, size) in zip("ab", convs):
            x = keras.layers.Conv2D(filters, size, padding="same", use_bias=False, name=f"conv{block}{conv}")(x)
            x = FusedBatchNormalization(momentum=0.9, name=f"bn{block}{conv}")(x)
            x = keras.layers.ReLU()(x)
        if block < len(blocks) - 1:
            x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    return keras.Model(inputs, _head(x, n_classes, 128, 0.3, "scratch"), name="scratch")


def build_lenet(input_shape: tuple[int, int, int], n_classes: int) -> keras.Model:
    """LeNet-5 style baseline (LeCun et al. 1998): the reference point the scratch CNN must beat."""
    inputs = keras.Input(input_shape, name="image")
    x = keras.layers.Conv2D(6, 5, padding="same", activation="tanh")(inputs)
    x = keras.layers.AveragePooling2D(2)(x)
    x = keras.layers.Conv2D(16, 5, activation="tanh")(x)
    x = keras.layers.AveragePooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(120, activation="tanh")(x)
    x = keras.layers.Dense(84, activation="tanh", name="embedding")(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="lenet")


def build_finetuned(input_shape: tuple[int, int, int], n_classes: int, backbone: str = "mobilenet_v2",
                    weights: str = "digits", checkpoints: Path = config.CHECKPOINT_DIR,
                    frozen_statistics: bool = True) -> keras.Model:
    """A pretrained backbone with a new head. Preprocessing lives inside the model.

    Layout: image -> Resizing(backbone size) -> BackbonePreprocess -> backbone (pooled)
    -> Dense 'embedding' -> softmax. The backbone is a nested model named 'backbone'.
    ``frozen_statistics=False`` (pretraining from random init only) lets BatchNorm learn.
    """
    spec = BACKBONES[backbone]
    base = build_backbone(backbone, weights, checkpoints)
    base.name = "backbone"
    inputs = keras.Input(input_shape, name="image")
    x = keras.layers.Resizing(spec.input_size, spec.input_size, name="resize")(inputs)
    x = BackbonePreprocess(backbone, name="backbone_preprocess")(x)
    # fine-tuning keeps BatchNorm in inference mode (keras transfer-learning guide)
    features = base(x, training=False) if frozen_statistics else base(x)
    x = keras.layers.Dropout(0.2, name="feature_dropout")(features)
    return keras.Model(inputs, _head(x, n_classes, 128, 0.3, "finetuned"), name=f"finetuned_{backbone}")


MODELS: dict[str, Callable[..., keras.Model]] = {
    "scratch": build_scratch,
    "lenet": build_lenet,
    "finetuned": build_finetuned,
}


def build_model(name: str, input_shape: tuple[int, int, int], n_classes: int, **kwargs) -> keras.Model:
    """Build a registered model by name (``MODELS``)."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    return MODELS[name](input_shape, n_classes, **kwargs)


def embedding_model(model: keras.Model) -> keras.Model:
    """Same inputs, output of the layer named 'embedding': the features for t-SNE and retrieval."""
    return keras.Model(model.inputs, model.get_layer("embedding").output, name=f"{model.name}_embedding")


def pooled_model(model: keras.Model) -> keras.Model:
    """Same inputs, the head's input: a CNN's globally pooled conv activations (dropout is off
    at inference), the retrieval features of a pretrained CNN."""
    return keras.Model(model.inputs, model.get_layer("embedding").input, name=f"{model.name}_pooled")


def split_finetuned(model: keras.Model, at: str | None = None) -> tuple[keras.Model, keras.Model]:
    """(lower, upper) halves of a fine-tuned model: image -> activations, activations -> probabilities.

    ``at``: the backbone layer whose input is the cut, so that training computes the frozen
    lower layers' activations once and fits the layers above on them; None: the backbone's
    pooled output, the head alone above it.
    """
    lower, upper, _ = _split(model, at)
    return lower, upper


def with_embedding(model: keras.Model) -> keras.Model:
    """``model`` with two outputs, image -> (probabilities, ``embedding`` features): the served
    graph, one forward pass for the answer and its novelty."""
    return keras.Model(model.inputs, [model.output, model.get_layer("embedding").output])


def finetuned_tail(model: keras.Model, at: str | None = None) -> keras.Model:
    """The upper half of :func:`split_finetuned` with two outputs: activations -> (probabilities, embedding)."""
    return _split(model, at)[2]


def _split(model: keras.Model, at: str | None) -> tuple[keras.Model, keras.Model, keras.Model]:
    base = model.get_layer("backbone")
    if at is None:
        lower = keras.Model(model.inputs, model.get_layer("feature_dropout").input, name="features")
        upper_in = keras.Input(base.output.shape[1:], name="features")
        x = upper_in
    else:
        cut = base.get_layer(at).input
        x = model.inputs[0]
        for layer in model.layers[1:model.layers.index(base)]:      # resizing and the backbone's preprocessing
            x = layer(x)
        lower = keras.Model(model.inputs, keras.Model(base.input, cut, name="backbone_bottom")(x, training=False),
                            name="lower")
        upper_in = keras.Input(cut.shape[1:], name="activations")
        # training=False as in the whole model: BatchNorm keeps its statistics, the weights still learn
        x = keras.Model(cut, base.output, name="backbone_top")(upper_in, training=False)
    x = model.get_layer("feature_dropout")(x)
    embedding = model.get_layer("embedding")(x)
    probabilities = model.get_layer("probabilities")(model.layers[-2](embedding))
    return (lower, keras.Model(upper_in, probabilities, name="upper"),
            keras.Model(upper_in, [probabilities, embedding], name="tail"))


def batched(infer: Callable[[np.ndarray], np.ndarray], size: int = 256) -> Callable[[np.ndarray], np.ndarray]:
    """``infer`` (one output) over any number of images, ``size`` at a time."""
    def run(images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, np.float32)
        return np.concatenate([np.asarray(infer(images[i:i + size])) for i in range(0, max(len(images), 1), size)])
    return run


def compiled_inference(model: keras.Model, input_shape: tuple[int, ...]) -> Callable[[np.ndarray], np.ndarray]:
    """``model(x, training=False)`` traced once for any batch size, warmed up and safe from threads.

    A model with several outputs gives a list of arrays.

    Eager calls pay Python overhead per layer and ``predict`` retraces under concurrent callers;
    tracing here, before any request, means no tracing ever happens under load.
    """
    import tensorflow as tf

    fn = tf.function(lambda x: model(x, training=False),
                     input_signature=[tf.TensorSpec((None, *input_shape), tf.float32)])
    fn(np.zeros((1, *input_shape), np.float32))

    def infer(batch: np.ndarray):
        out = fn(np.asarray(batch, np.float32))
        return [t.numpy() for t in out] if isinstance(out, (list, tuple)) else out.numpy()
    return infer
