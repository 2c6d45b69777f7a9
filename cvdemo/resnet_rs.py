"""ResNet-RS-50 (Bello et al. 2021, "Revisiting ResNets: Improved Training and Scaling Strategies")
for Keras 3, whose ``keras.applications`` no longer ships the ResNet-RS family.

A ResNet-D (four-conv stem, average-pooled projection shortcuts) with a squeeze-and-excitation
unit in every bottleneck. Layer names and order follow tf.keras 2.x's ``applications.resnet_rs``
so that its ImageNet file has a place to load into. Preprocessing is part of the model
(rescaling to [0, 1], then ImageNet's mean and variance), so ``preprocess_input`` passes images
through unchanged, as tf.keras's did. Knows nothing about the rest of cvdemo.
"""
from __future__ import annotations

import keras

IMAGENET_ORIGIN = "https://storage.googleapis.com/tensorflow/keras-applications/resnet_rs/"
IMAGENET_FILE = "resnet-rs-50-i160_notop.h5"
IMAGENET_MD5 = "90daa68cd26c95aa6c5d25451e095529"
GROUPS_50 = ((64, 3), (128, 4), (256, 6), (512, 3))     # (bottleneck width, blocks) per group
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_CONV = dict(use_bias=False, padding="same",
             kernel_initializer=keras.initializers.VarianceScaling(2.0, "fan_out", "truncated_normal"))
_BN = dict(momentum=0.9, epsilon=1e-5)


def preprocess_input(x):
    """Images in 0..255 pass through: the model rescales and normalises them itself."""
    return x


def _conv_bn(x, filters: int, kernel: int, name: str, bn_name: str, strides: int = 1, act: str | None = "relu"):
    x = keras.layers.Conv2D(filters, kernel, strides=strides, name=name, **_CONV)(x)
    x = keras.layers.BatchNormalization(name=bn_name, **_BN)(x)
    return keras.layers.Activation(act, name=f"{name}_act")(x) if act else x


def _stem(x):
    """Four 3x3 convs (32, 32, 64, 64 filters), the first and last with stride 2: a /4 stem."""
    for i, (filters, strides) in enumerate(((32, 2), (32, 1), (64, 1), (64, 2)), start=1):
        x = _conv_bn(x, filters, 3, f"stem_1_stem_conv_{i}", f"stem_1_stem_batch_norm_{i}", strides)
    return x


def _squeeze_excite(x, filters: int, name: str):
    """Channel attention: pool, reduce to a quarter of the block's output width, expand, gate."""
    channels = 4 * filters
    gate = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_se_squeeze")(x)
    gate = keras.layers.Conv2D(max(1, channels // 4), 1, activation="relu", name=f"{name}_se_reduce")(gate)
    gate = keras.layers.Conv2D(channels, 1, activation="sigmoid", name=f"{name}_se_expand")(gate)
    return keras.layers.Multiply(name=f"{name}_se_excite")([x, gate])


def _bottleneck(x, filters: int, strides: int, project: bool, name: str):
    shortcut = x
    if project:
        if strides == 2:
            shortcut = keras.layers.AveragePooling2D(2, 2, padding="same", name=f"{name}_projection_pooling")(shortcut)
        shortcut = _conv_bn(shortcut, 4 * filters, 1, f"{name}_projection_conv", f"{name}_projection_batch_norm",
                            act=None)
    x = _conv_bn(x, filters, 1, f"{name}_conv_1", f"{name}batch_norm_1")
    x = _conv_bn(x, filters, 3, f"{name}_conv_2", f"{name}_batch_norm_2", strides)
    x = _conv_bn(x, 4 * filters, 1, f"{name}_conv_3", f"{name}_batch_norm_3", act=None)
    x = _squeeze_excite(x, filters, f"{name}_se")
    x = keras.layers.Add(name=f"{name}_add")([x, shortcut])
    return keras.layers.Activation("relu", name=f"{name}_output_act")(x)


def ResNetRS50(include_top: bool = False, weights: str | None = None, input_shape=(160, 160, 3),
               pooling: str | None = None) -> keras.Model:
    """ResNet-RS-50 without its classifier. ``weights``: None, "imagenet" (Keras's cache, then a
    download) or a weights file; ``pooling``: None, "avg" or "max". Keras's keyword names."""
    if include_top:
        raise ValueError("cvdemo's ResNet-RS-50 is a feature extractor: include_top must be False")
    inputs = keras.Input(input_shape, name="input")
    x = keras.layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    x = keras.layers.Normalization(mean=list(IMAGENET_MEAN), variance=[s * s for s in IMAGENET_STD],
                                   name="normalize")(x)
    x = _stem(x)
    for group, (filters, blocks) in enumerate(GROUPS_50, start=2):
        for block in range(blocks):
            x = _bottleneck(x, filters, 2 if group > 2 and block == 0 else 1, block == 0,
                            f"BlockGroup{group}__block_{block}_")
    if pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    model = keras.Model(inputs, x, name="resnet-rs-50")
    if weights == "imagenet":
        weights = keras.utils.get_file(IMAGENET_FILE, IMAGENET_ORIGIN + IMAGENET_FILE, cache_subdir="models",
                                       file_hash=IMAGENET_MD5)
    if weights is not None:
        model.load_weights(weights)
    return model
