"""Custom Keras layers that saved models contain, registered so safe-mode loading accepts them.

No ``Lambda`` layers anywhere: Keras's safe mode refuses to deserialise their code.
"""
from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="cvdemo")
class RandomStrokeWidth(keras.layers.Layer):
    """Training-only: thickens (3x3 dilation) or thins (3x3 erosion) a white-on-black drawing.

    Each image is dilated with probability ``rate / 2``, eroded with ``rate / 2``, else left alone.
    """

    def __init__(self, rate: float = 0.5, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.rate = rate
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=True):
        if not training:
            return images
        thick = ops.max_pool(images, pool_size=3, strides=1, padding="same")
        thin = -ops.max_pool(-images, pool_size=3, strides=1, padding="same")
        draw = keras.random.uniform((ops.shape(images)[0], 1, 1, 1), seed=self.generator)
        half = self.rate / 2
        return ops.where(draw < half, thick, ops.where(draw < self.rate, thin, images))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


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
