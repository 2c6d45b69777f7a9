"""Configuration in one typed place: repository paths, image limits and training defaults.

Knows nothing about Keras, Gradio or the command line; only the CLI and the UI turn user input
into these dataclasses (with ``dataclasses.replace``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT_DIR = ROOT / "checkpoints"
SAMPLE_DATA_DIR = ROOT / "Hand_written_digits"
DATABASE_DIR = ROOT / "images_database"
QUERY_DIR = ROOT / "query_images"
RUNS_DIR = ROOT / "runs"          # models trained from the app land here, never over checkpoints/
CACHE_DIR = ROOT / ".cache"       # analysis caches (git-ignored)

# Where Keras keeps downloaded ImageNet weights. Keras reads KERAS_HOME itself; we only need the
# path to tell a user where to put a file by hand when there is no network.
KERAS_HOME = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))

SEED = 1337
PREPROCESSING_VERSION = 4

# Digits: canonical model input, MNIST-like: white ink on black, digit fitted in a 20-px box,
# centred in 28x28.
DIGIT_SIZE = 28
DIGIT_BOX = 20
PHOTO_SIZE = 64                   # photo profile: colour kept, resized to PHOTO_SIZE square

IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp")
MAX_IMAGE_PIXELS = 25_000_000     # well below Pillow's 89M default; checked before decoding
MAX_IMAGE_BYTES = 10 * 1024 * 1024
MAX_UPLOAD_MB = 10                # the app's max_file_size for any single upload
MAX_ZIP_BYTES = 200 * 1024 * 1024  # uncompressed total of a dataset zip
MAX_ZIP_FILES = 20_000

SAMPLE_CLASSES = (0, 1, 2)        # the course task: digits 0, 1, 2
PRETRAIN_CLASSES = (3, 4, 5, 6, 7, 8, 9)
SAMPLE_IMAGE_SIZE = 100
QUERY_RESERVE = 20                # per class, held out from every training set and the database
STRATEGIES = ("default", "mirrored", "multiworker")   # TrainConfig.strategy; see train.distribution_strategy


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters shared by both models; every field is overridable from the CLI/UI."""

    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 2e-3
    val_fraction: float = 0.2
    seed: int = SEED
    augment: bool = True
    profile: str | None = None    # "digits" | "photo" | None (detect)
    max_images_per_class: int | None = None
    strategy: str = "default"     # tf.distribute: "default" (none) | "mirrored" | "multiworker"


@dataclass(frozen=True)
class FinetuneConfig:
    """The transfer-learning recipe: frozen backbone + new head, then the top unfrozen."""

    backbone: str = "mobilenet_v2"
    weights: str = "digits"       # "imagenet" | "digits" | "none" | a path to a weights file
    head_fraction: float = 0.3    # share of the epochs spent on phase 1 (frozen backbone)
    head_learning_rate: float = 2e-3
    fine_tune_learning_rate: float = 5e-4
    unfreeze_from: str | None = None  # first backbone layer trained in phase 2; None: the backbone's default
    augmented_copies: int = 2     # augmented views of the train set in the feature cache


@dataclass(frozen=True)
class Limits:
    """Bounds on what a public user may ask for."""

    max_epochs: int = 50
    max_upload_mb: int = MAX_UPLOAD_MB
    max_image_pixels: int = MAX_IMAGE_PIXELS


@dataclass(frozen=True)
class Paths:
    """Folders a run reads and writes; tests point these at tmp_path."""

    checkpoints: Path = CHECKPOINT_DIR
    sample_data: Path = SAMPLE_DATA_DIR
    database: Path = DATABASE_DIR
    queries: Path = QUERY_DIR
    runs: Path = RUNS_DIR
    cache: Path = CACHE_DIR
    extra: dict = field(default_factory=dict)
