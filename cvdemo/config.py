"""Configuration in one typed place: repository paths, image limits and training defaults.

Knows nothing about Keras, Gradio or the command line; only the CLI and the UI turn user input
into these dataclasses (with ``dataclasses.replace``).
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT_DIR = ROOT / "checkpoints"
SAMPLE_DATA_DIR = ROOT / "Hand_written_digits"
DATABASE_DIR = ROOT / "images_database"
QUERY_DIR = ROOT / "query_images"
# models trained from the app land here, never over checkpoints/; CVDEMO_RUNS moves them
RUNS_DIR = Path(os.environ.get("CVDEMO_RUNS", ROOT / "runs"))
CACHE_DIR = Path(os.environ.get("CVDEMO_CACHE_DIR", ROOT / ".cache"))   # analysis caches (git-ignored)

# Where Keras keeps downloaded ImageNet weights. Keras reads KERAS_HOME itself; we only need the
# path to tell a user where to put a file by hand when there is no network.
KERAS_HOME = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))

# Which search serves the app's retrieval (the CLI's --backend says it per command): auto (numpy,
# FAISS HNSW from 50k vectors), numpy, faiss, faiss-flat or milvus; and where Milvus is: a Milvus
# Lite file (default <database>/.index/milvus.db) or http://host:19530 for a server or cluster.
RETRIEVAL_BACKEND = os.environ.get("CVDEMO_RETRIEVAL_BACKEND", "auto")
MILVUS_URI = os.environ.get("CVDEMO_MILVUS_URI") or None

# Images a visitor adds to the retrieval database: by default searchable by that visitor only,
# removable, and forgotten when the session ends (or after PRIVATE_ADDITIONS_TTL_S without use).
# CVDEMO_SHARED_ADDITIONS=1 writes them into the database itself, for everyone and for good:
# a setting for a private server, never for a public Space.
SHARED_ADDITIONS = os.environ.get("CVDEMO_SHARED_ADDITIONS", "0") == "1"
PRIVATE_ADDITIONS_PER_SESSION = 200
PRIVATE_ADDITIONS_TTL_S = 3600

# Serving inference: "auto" runs each model on LiteRT when its conversion answers like Keras
# (cvdemo.litert), "keras" always on the compiled Keras function. LITERT_POOL interpreters per
# model serve that many calls at once (one per core); each runs on LITERT_THREADS threads.
INFERENCE_BACKEND = os.environ.get("CVDEMO_INFERENCE", "auto")
LITERT_POOL = int(os.environ.get("CVDEMO_LITERT_POOL", "2"))
LITERT_THREADS = int(os.environ.get("CVDEMO_LITERT_THREADS", "1"))
# A model with no conversion yet (a set just trained): converted in the "background" while Keras
# serves it, "now" (before it serves), or "off" (Keras only; the tests' default, to spare their cores).
LITERT_CONVERT = os.environ.get("CVDEMO_LITERT_CONVERT", "background")
LITERT_CACHE = Path(os.environ.get("CVDEMO_LITERT_CACHE", CACHE_DIR / "litert"))   # converted models

# Micro-batching (cvdemo.service.batching): classifications in flight together run as one forward
# pass per model, of at most BATCH_MAX inputs; the worker waits at most BATCH_WAIT_MS for callers
# still preparing their input (a lone caller waits for nobody).
BATCH_MAX = int(os.environ.get("CVDEMO_BATCH_MAX", "32"))
BATCH_WAIT_MS = float(os.environ.get("CVDEMO_BATCH_WAIT_MS", "4"))

# Everything the app writes outside checkpoints/ and images_database/ stays under CACHE_MB in all
# (cvdemo.housekeeping): least recently used first, never what a live session holds or used in
# the last HOLD_S seconds; at most MAX_RUNS training runs in runs/, oldest removed first. The
# app's scratch files live in TEMP_DIR, each in one of TEMP_AREAS ("files" or "folders" units).
CACHE_MB = int(os.environ.get("CVDEMO_CACHE_MB", "1024"))
MAX_RUNS = int(os.environ.get("CVDEMO_MAX_RUNS", "20"))
HOLD_S = float(os.environ.get("CVDEMO_HOLD_S", "900"))
HOUSEKEEPING_S = float(os.environ.get("CVDEMO_HOUSEKEEPING_S", "30"))   # between two sweeps
TEMP_DIR = Path(tempfile.gettempdir())
TEMP_AREAS = {"cvdemo-images": "files", "cvdemo-bundles": "files", "cvdemo-datasets": "folders"}

# Gradio's queue (webapp.launch), chosen by measurement (BENCHMARKS.md, "Serving a classroom"):
# at most QUEUE_SIZE waiting events; CLASSIFY_CONCURRENCY classifications at once (the batcher
# merges them); queue positions sent after every answer ("auto", Gradio's default) or every
# QUEUE_STATUS_S seconds (1.0 measured no faster for 30 gradio_client sessions: the client's own
# CPU is the limit on a shared machine).
QUEUE_SIZE = int(os.environ.get("CVDEMO_QUEUE_SIZE", "64"))
CLASSIFY_CONCURRENCY = int(os.environ.get("CVDEMO_CLASSIFY_CONCURRENCY", "4"))
QUEUE_STATUS_S = os.environ.get("CVDEMO_QUEUE_STATUS_S", "auto")

# The REST API (webapp.rest) answers 429 beyond this many requests at once.
REST_MAX_INFLIGHT = int(os.environ.get("CVDEMO_REST_MAX_INFLIGHT", "64"))

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
STRATEGIES = ("default", "mirrored", "multiworker")   # TrainConfig.strategy; see fitting.distribution_strategy
MODEL_ORDER = ("scratch", "finetuned", "lenet")      # how models are listed wherever they are shown

# Novelty (cvdemo.explain.novelty): k-th nearest neighbour among NOVELTY_BANK training embeddings
# (the training images and NOVELTY_AUGMENTED_COPIES augmented views); the threshold is the
# NOVELTY_QUANTILE of the validation images' scores, so about 1% of genuine ones are rejected.
NOVELTY_K = 10
NOVELTY_BANK = 2000
NOVELTY_AUGMENTED_COPIES = 4
NOVELTY_QUANTILE = 0.99
# The baseline does not vote on the input's novelty: LeNet is the reference the others must beat,
# and its own novelty separates 3-9 from 0-2 much worse (AUROC 0.87 vs 0.96, docs/decisions.md).
NOVELTY_BASELINES = ("lenet",)
LOOKS_LIKE_K = 5                  # database neighbours that say what a rejected input looks like


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
class TeachConfig:
    """Teaching the models a visitor's examples (``cvdemo.teaching``): how the examples are kept
    and how both models learn them from their current weights."""

    # benchmarks/teach.py chose these (docs/decisions.md): 3 epochs at a 0.75 share take the
    # scratch CNN's held-out MNIST 3s from 70% to 100% (val 0/1/2 99.3%)
    epochs: int = 3               # passes over the training split plus the oversampled examples
    learning_rate: float = 1e-3   # end to end (the from-scratch models): low, the weights are good already
    # the fine-tuned model's last backbone block and head (BackboneSpec.teach_from up), on the
    # cached activations of the frozen layers below
    top_learning_rate: float = 2e-3
    top_passes: int = 2           # passes over the cached activations per reported epoch (they are cheap)
    example_share: float = 0.75   # each taught class weighs at least this share of an old class's images
    top_example_share: float = 0.5     # the same for the fine-tuned model's top (more costs old classes)
    min_new_class: int = 5        # examples a class the models do not know yet needs
    holdout_from: int = 10        # a class with this many examples keeps every holdout_every-th one aside
    holdout_every: int = 5
    max_examples: int = 200       # per session
    max_session_mb: int = 20      # the session's example files, originals and model views together
    ttl_s: float = 3600           # a session's examples are forgotten after this long unused
    max_class_chars: int = 24
    seed: int = SEED


@dataclass(frozen=True)
class Limits:
    """Bounds on what a public user may ask for, checked the same way by the UI and the CLI."""

    max_epochs: int = 50
    max_k: int = 50

    def epochs(self, value) -> int:
        """``value`` as a number of epochs; ValueError with the user's message when out of bounds."""
        return _bounded(value, 1, self.max_epochs, "Epochs")

    def k(self, value) -> int:
        """``value`` as a number of retrieval results; ValueError with the user's message."""
        return _bounded(value, 1, self.max_k, "k")


PUBLIC_LIMITS = Limits()                               # what a visitor of the app may ask for
LOCAL_LIMITS = Limits(max_epochs=10_000, max_k=1_000_000)  # the command line: the machine's own user


def _bounded(value, low: int, high: int, what: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a whole number.") from None
    if not low <= number <= high:
        raise ValueError(f"{what} must be between {low} and {high}.")
    return number


def class_display_name(name: str | None) -> str | None:
    """How a class is shown and compared: a trailing ``_digits`` dropped (``2_digits`` reads ``2``)."""
    if name is None:
        return None
    text = str(name)
    return text[:-len("_digits")] if text.endswith("_digits") and len(text) > len("_digits") else text


def display_rank(model: str) -> tuple[int, str]:
    """Sort key that puts models in ``MODEL_ORDER``, unknown ones after, by name."""
    return (MODEL_ORDER.index(model) if model in MODEL_ORDER else len(MODEL_ORDER), model)
