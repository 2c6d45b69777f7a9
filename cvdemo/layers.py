"""Custom Keras layers that saved models contain, registered so safe-mode loading accepts them.

No ``Lambda`` layers anywhere: Keras's safe mode refuses to deserialise their code.
"""
from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from .backbones import BACKBONES


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
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` computed by TensorFlow's fused kernel, same numbers.

    Keras 3 builds batch norm from separate ops (moments, then the normalisation), each a pass
    over the activations, and as many again in the gradient. Keras 2 ran TensorFlow's
    ``FusedBatchNormV3``, one kernel each way, which makes the scratch CNN's training step
    markedly faster on a CPU (docs/decisions.md). Same weights, config and results as the Keras layer, so
    weights move between the two. Anything the fused kernel does not cover falls back to the
    Keras code: masks, renorm, a channel axis other than the last, inputs that are not 4-D
    float32 images.
    """

    def _fusable(self, inputs, mask) -> bool:
        return (mask is None and not self.renorm and self.axis in (-1, len(inputs.shape) - 1)
                and len(inputs.shape) == 4 and inputs.dtype == "float32")

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        channels = inputs.shape[-1]
        gamma = self.gamma if self.scale else tf.ones((channels,), inputs.dtype)
        beta = self.beta if self.center else tf.zeros((channels,), inputs.dtype)
        if not (training and self.trainable):
            outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
                inputs, gamma, beta, mean=self.moving_mean, variance=self.moving_variance,
                epsilon=self.epsilon, is_training=False)
            return outputs
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(inputs, gamma, beta, epsilon=self.epsilon,
                                                                   is_training=True)
        # the kernel reports the unbiased (n - 1) variance; Keras's moving average keeps the biased one
        n = tf.cast(tf.reduce_prod(tf.shape(inputs)[:-1]), variance.dtype)
        variance = variance * (n - 1.0) / tf.maximum(n, 1.0)
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return outputs


@keras.saving.register_keras_serializable(package="cvdemo")
class BackbonePreprocess(keras.layers.Layer):
    """[0, 1] images (grey or RGB) -> what a backbone expects: 3 channels, its preprocess_input."""

    def __init__(self, backbone: str, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone

    def call(self, images):
        if images.shape[-1] == 1:
            images = ops.concatenate([images, images, images], axis=-1)
        return BACKBONES[self.backbone].preprocess_input(images * 255.0)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 3)

    def get_config(self):
        return {**super().get_config(), "backbone": self.backbone}


@keras.saving.register_keras_serializable(package="cvdemo")
class RandomFoot(_RandomPerImage):
    """Training-only, digits profile: adds a foot (a bar under the glyph) or a flag (a serif at its top).

    Typed fonts and many writers put a foot under a 1; MNIST almost never does, so a model
    trained on it alone learns "bar at the bottom means 2". Drawing feet on random digits of
    every class teaches that a foot is not evidence for any class. The foot is centred under
    the ink of the glyph's bottom rows (a slanted 1 gets it under its end, not under the image
    centre, which would draw an "L") and is 1 or 2 px thick, as bold fonts' feet are. Works on
    the canonical 28x28 layout, where a tall glyph spans rows 4-23.
    """

    def __init__(self, rate: float = 0.3, seed: int | None = None, **kwargs):
        super().__init__(rate, seed, **kwargs)

    @staticmethod
    def _ink_centre(band, cols, default):
        """Column centre of the ink in a band of rows, per image; ``default`` where it is empty."""
        weights = ops.sum(band, axis=1)                                   # (B, W)
        mass = ops.sum(weights, axis=1)
        centre = ops.sum(weights * cols, axis=1) / ops.maximum(mass, 1e-6)
        return ops.where(mass > 0.5, centre, default)

    def call(self, images, training=True):
        if not training:
            return images
        batch = ops.shape(images)[0]
        height, width = images.shape[1], images.shape[2]
        draws = keras.random.uniform((batch, 6), seed=self.generator)
        cols = ops.cast(ops.arange(width), "float32")[None, :]
        rows = ops.cast(ops.arange(height), "float32")[None, :]
        ink = ops.cast(images[..., 0], "float32")
        bottom = self._ink_centre(ink[:, height - 9:height - 4, :], cols, width / 2)   # rows 19-23
        top = self._ink_centre(ink[:, 4:8, :], cols, width / 2)                       # rows 4-7
        centre = bottom + (draws[:, 0] - 0.5) * 2                   # +-1 px
        half = 2.5 + draws[:, 1] * 5.5                              # 5-16 px wide
        low = height - 5 - ops.cast(draws[:, 2] > 0.5, "float32")   # bottom row 22 or 23
        thick = 1.0 + ops.cast(draws[:, 4] > 0.5, "float32")        # 1 or 2 px
        in_cols = ops.cast(ops.abs(cols - centre[:, None]) <= half[:, None], "float32")   # (B, W)
        in_rows = ops.cast((rows <= low[:, None]) & (rows > low[:, None] - thick[:, None]), "float32")
        foot = in_rows[:, :, None] * in_cols[:, None, :]
        apply = ops.cast(draws[:, 3] < self.rate, "float32")[:, None, None]
        foot = (foot * apply)[..., None]
        # a flag: a short stroke from the glyph's top ink down to the left, as steep as a
        # handwritten 1's or as flat as a typeface's, 1 or 2 px thick
        length = 3.0 + draws[:, 1] * 4.0                            # 3-7 px to the left
        slope = 0.4 + draws[:, 5] * 0.6                             # 22-45 degrees
        tolerance = 0.6 + 0.5 * ops.cast(draws[:, 4] > 0.5, "float32")
        dy = rows[:, :, None] - 4.0                     # (1, H, 1) rows below the top edge
        dx = top[:, None, None] - cols[:, None, :]      # (B, 1, W) columns left of the top ink
        on_line = ops.cast(ops.abs(dy - slope[:, None, None] * dx) <= tolerance[:, None, None], "float32")
        flag = on_line * ops.cast((dx >= 0) & (dx <= length[:, None, None]), "float32")
        flag = flag * ops.cast(draws[:, 2] < self.rate / 2, "float32")[:, None, None]
        marks = ops.maximum(foot, flag[..., None])
        return ops.maximum(images, ops.cast(marks, images.dtype))
