"""Backbones by name: pretrained networks with their input size, preprocessing and weight sources.

``BACKBONES`` is the registry the fine-tuned classifier, pretraining and retrieval build from;
each spec knows its Keras application, its own ``preprocess_input`` and where its ImageNet file
is cached. Knows nothing about classifier heads, training or the UI.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path

from . import config


class WeightsUnavailable(RuntimeError):
    """Pretrained weights cannot be had (offline, missing file). ``str(err)`` says what to do."""


@dataclass(frozen=True)
class BackboneSpec:
    """A pretrained network usable as a feature extractor, declared by where its code lives."""

    name: str
    input_size: int                       # square input side the backbone runs at
    application: str                      # the builder's name in ``module`` (Keras's keyword arguments)
    module: str                           # the module with the builder and its own ``preprocess_input``
    imagenet_file: str                    # file name Keras caches under $KERAS_HOME/models
    fine_tune_from: str                   # first layer unfrozen in phase 2
    teach_from: str                       # first layer teaching trains (cvdemo.teaching): the last block or so
    kwargs: tuple = ()

    def preprocess_input(self, x):
        return importlib.import_module(self.module).preprocess_input(x)

    def build(self, weights: str | None, input_shape: tuple[int, int, int] | None = None):
        """The backbone without its top, global-average pooled. ``weights``: None, 'imagenet' or a file."""
        shape = input_shape or (self.input_size, self.input_size, 3)
        make = getattr(importlib.import_module(self.module), self.application)
        return make(include_top=False, weights=weights, input_shape=shape, pooling="avg", **dict(self.kwargs))


BACKBONES: dict[str, BackboneSpec] = {
    "mobilenet_v2": BackboneSpec(
        "mobilenet_v2", 96, "MobileNetV2", "keras.applications.mobilenet_v2",
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5",
        fine_tune_from="block_3_expand", teach_from="block_16_expand", kwargs=(("alpha", 0.35),)),
    "vgg16": BackboneSpec(
        "vgg16", 64, "VGG16", "keras.applications.vgg16", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        fine_tune_from="block5_conv1", teach_from="block5_conv3"),
    "resnet50": BackboneSpec(
        "resnet50", 64, "ResNet50", "keras.applications.resnet50",
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5", fine_tune_from="conv5_block3_1_conv",
        teach_from="conv5_block3_1_conv"),
    # Keras 3 dropped ResNet-RS from keras.applications: cvdemo builds it itself (cvdemo.resnet_rs)
    "resnet_rs50": BackboneSpec(
        "resnet_rs50", 64, "ResNetRS50", "cvdemo.resnet_rs", "resnet-rs-50-i160_notop.h5",
        fine_tune_from="BlockGroup5__block_2__conv_1",
        teach_from="BlockGroup5__block_2__conv_1"),
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
                   checkpoints: Path = config.CHECKPOINT_DIR):
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
