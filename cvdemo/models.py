"""Model registry: the scratch CNN, the LeNet baseline and fine-tuned backbones, by name.

Every classifier takes preprocessed images (see :mod:`cvdemo.images`) and names its penultimate
layer ``embedding`` so one feature extractor serves all of them. Knows nothing about
training loops, files on disk beyond weight files, or the UI.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import keras

from . import config
from .layers import BackbonePreprocess, FusedBatchNormalization


class WeightsUnavailable(RuntimeError):
    """Pretrained weights cannot be had (offline, missing file). ``str(err)`` says what to do."""


# ----------------------------------------------------------------------------- backbones

@dataclass(frozen=True)
class BackboneSpec:
    """A pretrained network usable as a feature extractor."""

    name: str
    input_size: int                       # square input side the backbone runs at
    application: str                      # keras.applications attribute
    module: str                           # keras.applications submodule with preprocess_input
    imagenet_file: str                    # file name Keras caches under $KERAS_HOME/models
    fine_tune_from: str                   # first layer unfrozen in phase 2
    kwargs: tuple = ()

    def preprocess_input(self, x):
        return getattr(keras.applications, self.module).preprocess_input(x)

    def build(self, weights: str | None, input_shape: tuple[int, int, int] | None = None) -> keras.Model:
        """The backbone without its top, global-average pooled. ``weights``: None, 'imagenet' or a file."""
        shape = input_shape or (self.input_size, self.input_size, 3)
        make = getattr(keras.applications, self.application)
        return make(include_top=False, weights=weights, input_shape=shape, pooling="avg", **dict(self.kwargs))


BACKBONES: dict[str, BackboneSpec] = {
    "mobilenet_v2": BackboneSpec(
        "mobilenet_v2", 96, "MobileNetV2", "mobilenet_v2",
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5",
        fine_tune_from="block_3_expand", kwargs=(("alpha", 0.35),)),
    "vgg16": BackboneSpec(
        "vgg16", 64, "VGG16", "vgg16", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        fine_tune_from="block5_conv1"),
    "resnet50": BackboneSpec(
        "resnet50", 64, "ResNet50", "resnet50", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        fine_tune_from="conv5_block3_1_conv"),
}


# The project's own offline weight sources, made by ``python -m cvdemo pretrain``:
# "digits" saw MNIST 3-9 only, so fine-tuning on 0/1/2 from it leaks nothing into validation;
# "digits_all" saw the whole pool of 0-9 (never the held-out queries) and serves retrieval only.
OWN_WEIGHTS = {"digits": config.PRETRAIN_CLASSES, "digits_all": tuple(range(10))}


def digits_weights_path(backbone: str, checkpoints: Path = config.CHECKPOINT_DIR, tag: str = "digits") -> Path:
    """Where ``python -m cvdemo pretrain`` writes the project's own offline backbone weights."""
    return Path(checkpoints) / f"backbone_{backbone}_{tag}.weights.h5"


def pretrained_cnn_name(model: str = "scratch", tag: str = "digits_all") -> str:
    """Checkpoint name of a registry CNN pretrained by ``python -m cvdemo pretrain --backbone scratch``."""
    return f"pretrained_{model}_{tag}"


def describe_weights(source: str) -> str:
    """A short human label for a weight source, shown wherever a model is shown."""
    if source == "imagenet":
        return "ImageNet (Keras download)"
    if source == "digits":
        return "digits 3-9 (cvdemo pretrain, offline)"
    if source == "digits_all":
        return "digits 0-9 (cvdemo pretrain, offline; retrieval only)"
    if source in ("none", "", None):
        return "random init (not pretrained)"
    return f"local file {Path(source).name}"


def build_backbone(name: str, weights: str = "digits",
                   checkpoints: Path = config.CHECKPOINT_DIR) -> keras.Model:
    """Build a registered backbone with weights from 'imagenet', 'digits', 'none' or a file path.

    Raises WeightsUnavailable with a message naming the file, where to put it and the offline
    alternative when the weights cannot be had.
    """
    if name not in BACKBONES:
        raise KeyError(f"unknown backbone {name!r}; choose from {', '.join(BACKBONES)}")
    spec = BACKBONES[name]
    if weights in ("none", None, ""):
        return spec.build(None)
    if weights == "imagenet":
        cached = config.KERAS_HOME / "models" / spec.imagenet_file
        if not cached.exists() and os.environ.get("HF_HUB_OFFLINE") == "1" and os.environ.get("CVDEMO_OFFLINE") == "1":
            raise WeightsUnavailable(_offline_message(spec, cached))
        try:
            return spec.build("imagenet")
        except Exception as err:  # Keras raises bare Exception("URL fetch failure ...")
            if cached.exists():
                raise
            raise WeightsUnavailable(_offline_message(spec, cached, err)) from None
    path = digits_weights_path(name, checkpoints, weights) if weights in OWN_WEIGHTS else Path(weights)
    if not path.is_file():
        if weights in OWN_WEIGHTS:
            raise WeightsUnavailable(
                f"The offline '{name}' {weights} backbone {path.name} is missing from {path.parent}. "
                f"Create it with: python -m cvdemo pretrain --backbone {name} --weights {weights}")
        raise WeightsUnavailable(f"Weights file {path} does not exist.")
    try:
        return spec.build(str(path))
    except Exception as err:
        raise WeightsUnavailable(f"Weights file {path.name} does not fit the {name} backbone: {err}") from None


def _offline_message(spec: BackboneSpec, cached: Path, err: Exception | None = None) -> str:
    why = "there is no network" if err is None or "URL fetch failure" in str(err) else str(err)
    return (f"ImageNet weights for {spec.name} could not be downloaded ({why}). Put the file "
            f"{spec.imagenet_file} in {cached.parent} (or set KERAS_HOME), pass a local file with "
            f"--weights PATH, or use the offline backbone: --weights digits.")


# ----------------------------------------------------------------------------- classifiers

def _head(x, n_classes: int, width: int, dropout: float, name: str):
    x = keras.layers.Dense(width, activation="relu", name="embedding")(x)
    x = keras.layers.Dropout(dropout)(x)
    return keras.layers.Dense(n_classes, activation="softmax", name="probabilities")(x)


def build_scratch(input_shape: tuple[int, int, int], n_classes: int) -> keras.Model:
    """The from-scratch CNN: a 5x5 conv at full size, two 3x3 at half, one at a quarter, a 128-wide embedding.

    Batch norm after every conv, by the fused kernel (``layers.FusedBatchNormalization``). Sized
    to train 10 epochs of the sample set in under 20 s on 2 CPU cores: 15M multiply-adds per
    image where two 3x3 convs at full size made 22M, and still 98% or more on each robustness
    set over six seeds. The pair of convs at half size is what typed fonts need: with one conv
    per block, fonts fell to 80-91%.
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


def split_finetuned(model: keras.Model) -> tuple[keras.Model, keras.Model]:
    """(features, head) halves of a fine-tuned model: image -> pooled features, features -> probs.

    Lets training compute the frozen backbone's features once and fit the head on them.
    """
    base = model.get_layer("backbone")
    features = keras.Model(model.inputs, model.get_layer("feature_dropout").input, name="features")
    head_in = keras.Input(base.output.shape[1:], name="features")
    x = model.get_layer("feature_dropout")(head_in)
    x = model.get_layer("embedding")(x)
    x = model.layers[-2](x)
    head = keras.Model(head_in, model.get_layer("probabilities")(x), name="head")
    return features, head
