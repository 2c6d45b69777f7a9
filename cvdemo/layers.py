"""Custom Keras layers that saved models contain, registered so safe-mode loading accepts them.

No ``Lambda`` layers anywhere: Keras's safe mode refuses to deserialise their code.
"""
from __future__ import annotations

import keras
from keras import ops


class _RandomPerImage(keras.layers.Layer):
    """Shared shape of the training-only augmentations: a rate, a seed and their generator."""

    def __init__(self, rate: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.rate = rate
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


@keras.saving.register_keras_serializable(package="cvdemo")
class RandomStrokeWidth(_RandomPerImage):
    """Training-only: thickens (3x3 dilation) or thins (3x3 erosion) a white-on-black drawing.

    Each image is dilated with probability ``rate / 2``, eroded with ``rate / 2``, else left alone.
    """

    def __init__(self, rate: float = 0.5, seed: int | None = None, **kwargs):
        super().__init__(rate, seed, **kwargs)

    def call(self, images, training=True):
        if not training:
            return images
        thick = ops.max_pool(images, pool_size=3, strides=1, padding="same")
        thin = -ops.max_pool(-images, pool_size=3, strides=1, padding="same")
        draw = keras.random.uniform((ops.shape(images)[0], 1, 1, 1), seed=self.generator)
        half = self.rate / 2
        return ops.where(draw < half, thick, ops.where(draw < self.rate, thin, images))


@keras.saving.register_keras_serializable(package="cvdemo")
class BackbonePreprocess(keras.layers.Layer):
    """[0, 1] images (grey or RGB) -> what a backbone expects: 3 channels, its preprocess_input."""

    def __init__(self, backbone: str, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone

    def call(self, images):
        from .models import BACKBONES

        if images.shape[-1] == 1:
            images = ops.concatenate([images, images, images], axis=-1)
        return BACKBONES[self.backbone].preprocess_input(images * 255.0)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 3)

    def get_config(self):
        return {**super().get_config(), "backbone": self.backbone}


@keras.saving.register_keras_serializable(package="cvdemo")
class RandomFoot(_RandomPerImage):
    """Training-only, digits profile: adds a short horizontal bar under the glyph.

    Typed fonts and many writers put a foot under a 1; MNIST almost never does, so a model
    trained on it alone learns "bar at the bottom means 2". Drawing feet on random digits of
    every class teaches that a foot is not evidence for any class. Works on the canonical
    28x28 layout, where the glyph's bottom edge sits at row 23.
    """

    def __init__(self, rate: float = 0.3, seed: int | None = None, **kwargs):
        super().__init__(rate, seed, **kwargs)

    def call(self, images, training=True):
        if not training:
            return images
        batch = ops.shape(images)[0]
        height, width = images.shape[1], images.shape[2]
        draws = keras.random.uniform((batch, 4), seed=self.generator)
        centre = width / 2 + (draws[:, 0] - 0.5) * 6              # +-3 px
        half = 2.5 + draws[:, 1] * 5.5                              # 5-16 px wide
        row = height - 5 - ops.cast(draws[:, 2] > 0.5, "float32")   # rows 22-23
        cols = ops.cast(ops.arange(width), "float32")[None, :]
        rows = ops.cast(ops.arange(height), "float32")[None, :]
        in_cols = ops.cast(ops.abs(cols - centre[:, None]) <= half[:, None], "float32")   # (B, W)
        in_rows = ops.cast(ops.abs(rows - row[:, None]) <= 0.5, "float32")               # (B, H)
        foot = in_rows[:, :, None] * in_cols[:, None, :]
        apply = ops.cast(draws[:, 3] < self.rate, "float32")[:, None, None]
        foot = (foot * apply)[..., None]
        # a flag: a short diagonal from the glyph's top centre down to the left
        length = 3.0 + draws[:, 1] * 4.0
        dy = rows[:, :, None] - 4.0                     # (1, H, 1) rows below the top edge
        dx = centre[:, None, None] - cols[:, None, :]    # (B, 1, W) columns left of centre
        on_line = ops.cast(ops.abs(dx - dy) <= 0.7, "float32") * ops.cast(dy >= 0, "float32")
        flag = on_line * ops.cast(dy <= length[:, None, None], "float32")
        flag = flag * ops.cast(draws[:, 2] < self.rate / 2, "float32")[:, None, None]
        marks = ops.maximum(foot, flag[..., None])
        return ops.maximum(images, ops.cast(marks, images.dtype))
