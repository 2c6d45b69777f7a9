"""Where a model looked: Grad-CAM (Selvaraju et al. 2017) and occlusion sensitivity (Zeiler and
Fergus 2014), each as a heat map over the model's input, scaled to [0, 1].

Grad-CAM weights the last convolutional activations by the gradient of the class score. In a
fine-tuned model that layer is inside the nested backbone, which the outer graph cannot reach
(``model.get_layer`` on the outer model only sees the backbone as one layer), so the gradient
model runs the outer layers in order and calls a copy of the backbone that also returns its
last conv activations. Occlusion needs no gradients: it greys out patches and measures how much
the class probability drops, one batched forward pass, so it checks Grad-CAM on any model.
"""
from __future__ import annotations

import numpy as np

OCCLUSION_PATCH = 0.25            # the patch's side as a share of the input's side
OCCLUSION_STRIDE = 0.1


def _is_conv_map(layer) -> bool:
    import keras

    shape = getattr(layer, "output", None)
    shape = getattr(shape, "shape", None)
    pooling = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D, keras.layers.Dropout)
    return shape is not None and len(shape) == 4 and not isinstance(layer, (keras.layers.InputLayer, *pooling))


def last_conv_layer(model):
    """(nested model or None, name) of the last layer with a spatial output, looking inside a
    nested backbone when there is one."""
    import keras

    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if nested:
        inner = nested[-1]
        names = [layer.name for layer in inner.layers if _is_conv_map(layer)]
        if names:
            return inner, names[-1]
    names = [layer.name for layer in model.layers if _is_conv_map(layer)]
    if not names:
        raise ValueError(f"{model.name} has no convolutional layer to explain")
    return None, names[-1]


class GradCam:
    """Grad-CAM of one model, its gradient model built and traced once (reuse it across calls)."""

    def __init__(self, model):
        import keras
        import tensorflow as tf

        self.model = model
        self.backbone, self.layer = last_conv_layer(model)
        if self.backbone is None:
            self._split = keras.Model(model.input, [model.get_layer(self.layer).output, model.output])
        else:
            self._inner = keras.Model(self.backbone.input,
                                      [self.backbone.get_layer(self.layer).output, self.backbone.output])
        shape, n_classes = tuple(model.input.shape[1:]), model.output.shape[-1]
        self._maps = tf.function(self._cams, input_signature=[tf.TensorSpec((None, *shape), tf.float32),
                                                               tf.TensorSpec((None, n_classes), tf.float32)])

    def _forward(self, images):
        if self.backbone is None:
            return self._split(images, training=False)
        x, conv = images, None
        for layer in self.model.layers[1:]:        # the outer graph is one chain of layers
            if layer is self.backbone:
                conv, x = self._inner(x, training=False)
            else:
                x = layer(x, training=False)
        return conv, x

    def _cams(self, images, picked):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            conv, probabilities = self._forward(images)
            score = tf.reduce_sum(probabilities * picked, axis=1)
        grads = tape.gradient(score, conv)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * conv, axis=-1, keepdims=True))
        return tf.image.resize(cam, tf.shape(images)[1:3], method="bilinear")[..., 0]

    def __call__(self, images: np.ndarray, classes: np.ndarray | list[int]) -> np.ndarray:
        """(N, S, S, C) inputs and the class index to explain for each -> (N, S, S) maps in [0, 1]."""
        picked = np.eye(self.model.output.shape[-1], dtype=np.float32)[np.asarray(classes, np.int64)]
        return _unit(self._maps(np.asarray(images, np.float32), picked).numpy())


def occlusion(predict, image: np.ndarray, class_index: int, patch: float = OCCLUSION_PATCH,
              stride: float = OCCLUSION_STRIDE) -> np.ndarray:
    """How much covering each region lowers ``class_index``'s probability -> (S, S) in [0, 1].

    ``predict`` maps a batch of inputs to probabilities. The patch is filled with the image's
    background (its darkest value: ink is white on black), all patches in one batch.
    """
    side = image.shape[0]
    size, step = max(2, round(side * patch)), max(1, round(side * stride))
    starts = list(range(0, side - size + 1, step))
    if starts[-1] != side - size:
        starts.append(side - size)
    background = float(image.min())
    batch = np.repeat(image[None], len(starts) ** 2, axis=0)
    spots = [(y, x) for y in starts for x in starts]
    for n, (y, x) in enumerate(spots):
        batch[n, y:y + size, x:x + size] = background
    base = float(predict(image[None])[0][class_index])
    drops = np.maximum(base - predict(batch)[:, class_index], 0.0)
    heat, cover = np.zeros((side, side), np.float32), np.zeros((side, side), np.float32)
    for drop, (y, x) in zip(drops, spots):
        heat[y:y + size, x:x + size] += drop
        cover[y:y + size, x:x + size] += 1
    return _unit((heat / np.maximum(cover, 1))[None])[0]


def _unit(maps: np.ndarray) -> np.ndarray:
    """Each map scaled to [0, 1] by its own maximum (an all-zero map stays zero)."""
    maps = np.asarray(maps, np.float32)
    peak = maps.reshape(len(maps), -1).max(axis=1).reshape(-1, *([1] * (maps.ndim - 1)))
    return np.where(peak > 0, maps / np.where(peak > 0, peak, 1), 0.0).astype(np.float32)


def feature_maps(model, image: np.ndarray, per_block: int = 16) -> list[tuple[str, np.ndarray]]:
    """The activations of each conv block for one input -> [(name, (H, W, per_block))], the
    channels that respond most first, so a student sees edges, then strokes, then parts.

    Blocks are where the spatial size changes (the output before each pooling, and the last).
    """
    import keras

    spatial = [layer for layer in model.layers if _is_conv_map(layer) and not isinstance(layer, keras.Model)]
    blocks, last_size = [], None
    for layer in reversed(spatial):
        size = layer.output.shape[1]
        if size != last_size:
            blocks.append(layer)
            last_size = size
    blocks.reverse()
    probe = keras.Model(model.input, [layer.output for layer in blocks])
    outputs = probe(np.asarray(image, np.float32)[None], training=False)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    found = []
    for layer, out in zip(blocks, outputs):
        maps = np.asarray(out)[0]
        order = np.argsort(-maps.reshape(-1, maps.shape[-1]).mean(axis=0))[:per_block]
        found.append((layer.name, maps[..., order]))
    return found
