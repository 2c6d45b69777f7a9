"""Feature extractors by name: each turns preprocessed (N, 28, 28, 1) digits into (N, D) vectors.

``EXTRACTORS`` is the registry; ``version`` names an extractor's weights cheaply (a file hash)
so an index can be confirmed current without loading Keras. Knows nothing about indexes or search.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .. import config
from ..backbones import pretrained_cnn_name
from ..fsutil import sha256_file

BATCH = 64
Extract = Callable[[np.ndarray], np.ndarray]   # (N, 28, 28, 1) float32 -> (N, D) float32


@dataclass(frozen=True)
class ExtractorSpec:
    """A named way to turn preprocessed digits into feature vectors.

    ``version(checkpoints)`` is cheap (a file hash, no model built) so an up-to-date index is
    confirmed without loading Keras; it returns None when only building can tell.
    """

    name: str
    description: str
    build: Callable[[Path], tuple[Extract, str]]     # checkpoints dir -> (extract fn, version)
    version: Callable[[Path], str | None]


def _compiled(model, checkpoints: Path, shape=(config.DIGIT_SIZE, config.DIGIT_SIZE, 1)) -> Extract:
    """``litert.fast_inference`` over batches of ``BATCH``, flattened to (N, D) float32."""
    from ..litert import fast_inference

    served = fast_inference(model, shape, beside=Path(checkpoints) / "litert")

    def extract(batch: np.ndarray) -> np.ndarray:
        out = [served.infer(batch[i:i + BATCH]) for i in range(0, len(batch), BATCH)]
        return np.concatenate(out).reshape(len(batch), -1).astype(np.float32)
    return extract


def _weights_file(backbone: str, weights: str, checkpoints: Path) -> Path:
    from ..backbones import BACKBONES, digits_weights_path

    if weights in ("digits", "digits_all"):
        return digits_weights_path(backbone, checkpoints, weights)
    return config.KERAS_HOME / "models" / BACKBONES[backbone].imagenet_file


_DIGESTS: dict[tuple, str] = {}     # (path, size, mtime_ns) -> sha256: weights files are hashed once


def _cached_digest(path: Path) -> str | None:
    try:
        st = path.stat()
    except OSError:
        return None
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = sha256_file(path)
    return _DIGESTS[key]


def _backbone_version(backbone: str, weights: str) -> Callable[[Path], str | None]:
    def version(checkpoints: Path) -> str | None:
        digest = _cached_digest(_weights_file(backbone, weights, checkpoints))
        return f"{weights}:{digest[:16]}" if digest else None
    return version


def _backbone_extractor(backbone: str, weights: str) -> Callable[[Path], tuple[Extract, str]]:
    def build(checkpoints: Path) -> tuple[Extract, str]:
        import keras

        from ..backbones import BACKBONES, build_backbone
        from ..layers import BackbonePreprocess

        spec = BACKBONES[backbone]
        base = build_backbone(backbone, weights, checkpoints)   # WeightsUnavailable says what to do
        inputs = keras.Input((config.DIGIT_SIZE, config.DIGIT_SIZE, 1), name="image")
        x = keras.layers.Resizing(spec.input_size, spec.input_size, name="resize")(inputs)
        x = BackbonePreprocess(backbone, name="backbone_preprocess")(x)
        model = keras.Model(inputs, base(x, training=False), name=f"{backbone}_{weights}_features")
        return _compiled(model, checkpoints), _backbone_version(backbone, weights)(checkpoints) or weights
    return build


def _checkpoint_version(name: str) -> Callable[[Path], str | None]:
    def version(checkpoints: Path) -> str | None:
        try:
            meta = json.loads((Path(checkpoints) / f"{name}.json").read_text())
            return f"{name}:{meta['model_sha256'][:16]}"
        except (OSError, ValueError, KeyError, TypeError):
            return None
    return version


def _checkpoint_extractor(name: str, layer: str = "embedding",
                          made_by: str | None = None) -> Callable[[Path], tuple[Extract, str]]:
    """Features of a saved model: its 'embedding' layer, or its pooled conv activations.
    ``made_by``: the command that creates the checkpoint, named when it is missing."""
    def build(checkpoints: Path) -> tuple[Extract, str]:
        from .. import checkpoints as ckpt
        from ..models import embedding_model, pooled_model

        present = any(path.exists() for stem in (name, f"{name}.prev")
                      for path in ckpt.paths_for(Path(checkpoints), stem))
        if made_by and not present:
            raise ckpt.CheckpointError(f"The offline extractor {name}.keras is missing from {checkpoints}. "
                                       f"Create it with: {made_by}")
        checkpoint = ckpt.load(Path(checkpoints), name)
        if checkpoint.profile != "digits":
            raise ckpt.CheckpointError(f"The {name} checkpoint was trained on photos, not digits; "
                                       "it cannot index the digit database.")
        version = f"{name}:{checkpoint.meta.get('model_sha256', '')[:16]}"
        features = pooled_model if layer == "pooled" else embedding_model
        return _compiled(features(checkpoint.model), checkpoints, tuple(checkpoint.input_shape)), version
    return build


def _pixels(checkpoints: Path) -> tuple[Extract, str]:
    return (lambda batch: np.asarray(batch, np.float32).reshape(len(batch), -1)), "pixels"


_PRETRAINED_CNN = pretrained_cnn_name("scratch", "digits_all")

EXTRACTORS: dict[str, ExtractorSpec] = {spec.name: spec for spec in (
    ExtractorSpec("digits_all_cnn", "the scratch CNN pretrained offline on MNIST digits 0-9 (never the "
                  f"held-out queries), pooled conv activations (checkpoints/{_PRETRAINED_CNN})",
                  _checkpoint_extractor(_PRETRAINED_CNN, "pooled",
                                        "python -m cvdemo pretrain --backbone scratch --weights digits_all"),
                  _checkpoint_version(_PRETRAINED_CNN)),
    ExtractorSpec("digits_mobilenet_v2", "MobileNetV2 pretrained offline on MNIST digits 3-9, pooled features",
                  _backbone_extractor("mobilenet_v2", "digits"), _backbone_version("mobilenet_v2", "digits")),
    ExtractorSpec("digits_all_mobilenet_v2", "MobileNetV2 pretrained offline on MNIST digits 0-9 "
                  "(never the held-out queries), pooled features",
                  _backbone_extractor("mobilenet_v2", "digits_all"), _backbone_version("mobilenet_v2", "digits_all")),
    ExtractorSpec("finetuned", "the fine-tuned classifier's 'embedding' layer (checkpoints/finetuned)",
                  _checkpoint_extractor("finetuned"), _checkpoint_version("finetuned")),
    ExtractorSpec("scratch", "the scratch CNN's 'embedding' layer (checkpoints/scratch)",
                  _checkpoint_extractor("scratch"), _checkpoint_version("scratch")),
    ExtractorSpec("imagenet_mobilenet_v2", "MobileNetV2 with ImageNet weights, pooled features",
                  _backbone_extractor("mobilenet_v2", "imagenet"), _backbone_version("mobilenet_v2", "imagenet")),
    ExtractorSpec("imagenet_vgg16", "VGG16 with ImageNet weights, pooled features",
                  _backbone_extractor("vgg16", "imagenet"), _backbone_version("vgg16", "imagenet")),
    ExtractorSpec("pixels", "the preprocessed 28x28 pixels themselves (a baseline; no model)", _pixels,
                  lambda checkpoints: "pixels"),
)}
# The default is the first whose weights are present; the order is the measured ranking of
# docs/decisions.md ("Retrieval extractors").
PREFERENCE = ("digits_all_cnn", "digits_all_mobilenet_v2", "finetuned", "digits_mobilenet_v2", "pixels")
DEFAULT_EXTRACTOR = PREFERENCE[0]
# Trained on all ten digits: these can say what an input the 0-1-2 classifiers reject looks like.
ALL_DIGITS = ("digits_all_cnn", "digits_all_mobilenet_v2")


def default_extractor(checkpoints: Path = config.CHECKPOINT_DIR) -> str:
    """The best-ranked extractor whose weights are available in ``checkpoints``."""
    for name in PREFERENCE:
        if EXTRACTORS[name].version(Path(checkpoints)) is not None:
            return name
    return PREFERENCE[-1]


def extractor_key(name: str, version: str) -> str:
    """What an index records: extractor, its weights, and the preprocessing it saw."""
    return f"{name}@{version}@p{config.PREPROCESSING_VERSION}"


@dataclass
class Extractor:
    """A built extractor: ``extract`` maps (N, 28, 28, 1) to (N, D); ``version`` names its weights."""

    name: str
    version: str
    extract: Extract

    @property
    def key(self) -> str:
        return extractor_key(self.name, self.version)


def build_extractor(name: str = DEFAULT_EXTRACTOR, checkpoints: Path = config.CHECKPOINT_DIR) -> Extractor:
    """Build a registered extractor. Raises KeyError for an unknown name, WeightsUnavailable or
    CheckpointError (with what to do) when its weights cannot be had."""
    if name not in EXTRACTORS:
        raise KeyError(f"unknown extractor {name!r}; choose from {', '.join(EXTRACTORS)}")
    extract, version = EXTRACTORS[name].build(Path(checkpoints))
    return Extractor(name, version, extract)
