"""What the app and the CLI call: loaded model sets, classification, and background training.

Holds the only long-lived state (loaded models, the training job, the retrieval index, the
analyses) behind locks of its own instance. Model sets are immutable once loaded: a finished
training becomes a *new* set, which the session that trained it switches to; nobody else's
answers change. Never imports Gradio.
"""
from __future__ import annotations

import json
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from .. import config
from ..backbones import BACKBONES, WeightsUnavailable
from ..checkpoints import CheckpointError
from ..config import FinetuneConfig, TrainConfig
from ..data import DatasetError
from ..fsutil import atomic_write_bytes, staged_folder
from ..images import DECODE_SIDE, ImageError, TooLargeError, canvas_array, decode, prepare, to_display, too_large
from ..progress import RunProgress
from ..retrieval import PrivateAdditions
from ..retrieval.milvus import MilvusError
from ..teaching import ExampleError, ExampleStore
from ..teaching import warm as warm_teaching
from .analyses import Analyses
from .explaining import Explaining
from .jobs import BusyError, NothingFinished, TrainingJob
from .retrieving import Retrieval
from .sets import SHIPPED, Classification, ModelAnswer, ModelSet, ServedModel
from .teaching import Teaching
from .upkeep import Upkeep

TRAINABLE = ("scratch", "finetuned")          # what the app's Train tab may train
WEIGHT_SOURCES = ("digits", "imagenet", "none")
# The errors whose message is meant for the person who caused them (shown as they are).
USER_ERRORS = (DatasetError, ImageError, CheckpointError, WeightsUnavailable, ExampleError, KeyError)

__all__ = ["BACKBONES", "RunProgress", "SHIPPED", "TRAINABLE", "USER_ERRORS", "BusyError", "CheckpointError",
           "Classification", "DatasetError", "ExampleError", "ImageError", "MilvusError", "TooLargeError",
           "ModelAnswer", "ModelSet", "Service", "ServedModel",
           "TrainingJob", "canvas_array", "to_display", "too_large"]


class Service(Retrieval, Explaining, Teaching, Upkeep):
    """Loaded models and jobs for one process. Thread-safe."""

    def __init__(self, checkpoints: Path = config.CHECKPOINT_DIR, runs: Path = config.RUNS_DIR,
                 warm: bool = True, max_sets: int = 4, database: Path = config.DATABASE_DIR,
                 retrieval_extractor: str | None = None, analysis_cache: Path = config.CACHE_DIR,
                 queries: Path = config.QUERY_DIR, limits: config.Limits = config.PUBLIC_LIMITS,
                 retrieval_backend: str = config.RETRIEVAL_BACKEND, milvus_uri: str | None = config.MILVUS_URI,
                 shared_additions: bool = config.SHARED_ADDITIONS, inference: str | None = None):
        """``retrieval_extractor``: None picks ``retrieval.default_extractor(checkpoints)``;
        ``retrieval_backend`` and ``milvus_uri`` as ``retrieval.FeatureIndex`` takes them;
        ``shared_additions``: a visitor's added images go into the database for everyone;
        ``inference``: "keras" serves every model on Keras (default ``config.INFERENCE_BACKEND``)."""

        self.checkpoints = Path(checkpoints)
        self.database = Path(database)
        self.runs = Path(runs)
        self.queries = Path(queries)
        self.limits = limits
        self.retrieval_extractor = retrieval_extractor
        self.retrieval_backend = retrieval_backend
        self.milvus_uri = milvus_uri
        self.analysis_cache = Path(analysis_cache)
        self.shared_additions = shared_additions
        self.inference = inference
        self.private = PrivateAdditions(self.analysis_cache / "additions")
        self.examples = ExampleStore(self.analysis_cache / "examples", self.teach_cfg)   # teaching, per session
        self._retrieval = None             # the FeatureIndex, created on first retrieve
        self._retrieval_lock = threading.Lock()
        self._sets: OrderedDict[str, ModelSet] = OrderedDict()
        self._max_sets = max_sets
        self._lock = threading.Lock()
        self._train_lock = threading.Lock()
        self._analyses = Analyses(analysis_cache)
        self.job: TrainingJob | None = None
        self._housekeeper = None           # Upkeep.housekeeper, when the app keeps its disk bounded
        # who trained each run of this process; in memory only (runs/ is served to anyone)
        self._run_owners: dict[str, str | None] = {}
        if warm:
            self.model_set(SHIPPED)

    # ------------------------------------------------------------------ model sets
    def _folder(self, set_id: str) -> Path:
        if set_id == SHIPPED:
            return self.checkpoints
        if (not set_id.startswith("run-") or len(set_id) > 64      # a user-sent id: never a long path
                or not set_id[4:].replace("-", "").isalnum() or not set_id.isascii()):
            raise KeyError(f"unknown model set {set_id!r}")
        return self.runs / set_id

    def available_sets(self, owner: str | None = None) -> list[tuple[str, str]]:
        """(label, id) pairs: the shipped models and, newest first, the finished training runs
        ``owner`` (a visitor's session) trained, or every run when ``owner`` is None."""
        found = [("Shipped models (checkpoints/)", SHIPPED)]
        if self.runs.is_dir():
            for folder in sorted(self.runs.glob("run-*"), reverse=True):
                if owner is not None and self._run_owners.get(folder.name) != owner:
                    continue
                info = folder / "run.json"
                if info.exists():
                    try:
                        found.append((json.loads(info.read_text())["label"], folder.name))
                    except (OSError, ValueError, KeyError):
                        continue
        return found

    def model_set(self, set_id: str = SHIPPED) -> ModelSet:
        """Load (once) and return a model set; the least recently used ones are dropped."""
        from .. import checkpoints as ckpt

        with self._lock:
            if set_id in self._sets:
                self._sets.move_to_end(set_id)
                return self._sets[set_id]
        folder = self._folder(set_id)
        loaded = ckpt.load_all(folder)
        if not loaded:
            raise ckpt.CheckpointError(f"No models in {folder}. Train some with: python -m cvdemo train")
        served = {name: ServedModel(loaded[name], self.inference) for name in sorted(loaded, key=config.display_rank)}
        label = SHIPPED if set_id == SHIPPED else json.loads((folder / "run.json").read_text())["label"]
        model_set = ModelSet(set_id, label, folder, served)
        with self._lock:
            self._sets[set_id] = model_set
            while len(self._sets) > self._max_sets:
                oldest = next(iter(self._sets))
                if oldest == SHIPPED:
                    self._sets.move_to_end(SHIPPED)
                    oldest = next(iter(self._sets))
                self._sets.pop(oldest)
        return model_set

    # ------------------------------------------------------------------ classify
    def classify(self, source: Any, set_id: str = SHIPPED, name: str | None = None,
                 looks_like: bool = True) -> Classification:
        """Decode once, preprocess once per input profile, run every model of the set.

        When the models reject the input as none of their classes, ``looks_like`` asks the
        retrieval database what it resembles instead.
        """
        model_set = self.model_set(set_id)
        # said before decoding: the batcher waits for this input while it is being prepared
        with model_set.batcher.expecting() as submit:
            decoded = decode(source, name=name, max_side=DECODE_SIDE)
            inputs: dict[tuple, np.ndarray] = {}
            steps = None
            for served in model_set.models.values():
                key = model_set.input_key(served)
                if key not in inputs:
                    prepared = prepare(decoded.image, served.checkpoint.profile, size=key[1][0])
                    inputs[key], steps = prepared.array, steps or prepared.steps
            outputs = submit(inputs)
        answers = {}
        for model_name, served in model_set.models.items():
            proba, novelty, ms = outputs[model_name]
            classes = served.checkpoint.class_names
            answers[model_name] = ModelAnswer(
                model_name, classes[int(proba.argmax())], {c: float(p) for c, p in zip(classes, proba)}, ms,
                served.weights_label, inputs[model_set.input_key(served)], novelty, served.backend)
        result = Classification(answers, set_id, steps, set_threshold=model_set.novelty_threshold)
        digits = inputs.get(("digits", (config.DIGIT_SIZE, config.DIGIT_SIZE, 1)))
        # the database holds digits: it can say what a rejected digit looks like, not a photo
        if looks_like and result.known is False and digits is not None:
            result.looks_like = self.looks_like(digits)
        return result

    # ------------------------------------------------------------------ training
    def start_training(self, data_dir: Path, model_names: tuple[str, ...], cfg: TrainConfig = TrainConfig(),
                       ft: FinetuneConfig = FinetuneConfig(), owner: str | None = None,
                       base_set: str = SHIPPED, data_name: str | None = None) -> TrainingJob:
        """Start a training in a background thread; raise BusyError if one is running.

        The finished models are saved under runs/<job id>/ (never over checkpoints/), together
        with copies of ``base_set``'s other models, and become a new model set, named after
        ``data_name`` (the uploaded zip's name; default: the data folder's).
        """
        if not self._train_lock.acquire(blocking=False):
            raise BusyError("A training run is already in progress. Please wait for it to finish "
                            "(classification and retrieval keep working meanwhile).")
        job = TrainingJob(id=f"run-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}", owner=owner,
                          data=Path(data_dir))
        self.job = job
        thread = threading.Thread(target=self._run_training, name=f"train-{job.id}", daemon=True,
                                  args=(job, Path(data_dir), model_names, cfg, ft, base_set, data_name))
        try:
            thread.start()
        except BaseException:
            self._train_lock.release()
            raise
        return job

    def _run_training(self, job: TrainingJob, data_dir: Path, model_names, cfg, ft, base_set,
                      data_name: str | None = None) -> None:
        from ..train import train

        try:
            # the set appears whole (staged, then renamed) or not at all
            with staged_folder(self.runs / job.id) as staging:
                results = train(data_dir, model_names, cfg, ft, out=staging, on_event=job.events.append,
                                stop=job.stop, checkpoints=self.checkpoints)
                finished = [name for name, r in results.items() if not r.stopped]
                if not finished:
                    raise NothingFinished
                label = self._complete_run(staging, results, finished, data_dir, base_set, data_name)
            self.model_set(job.id)           # load + warm now, before anyone asks
            self._run_owners[job.id] = job.owner
            job.set_id = job.id
            job.events.append({"kind": "activated", "set_id": job.id, "label": label})
        except NothingFinished:
            pass
        except Exception as err:   # reported to the user through the job, never raised in a thread
            known = (DatasetError, ImageError, WeightsUnavailable, CheckpointError)
            job.error = str(err) if isinstance(err, known) else f"Training failed: {type(err).__name__}: {err}"
            job.events.append({"kind": "error", "message": job.error})
        finally:
            _return_freed_memory()
            job.done.set()
            self._train_lock.release()
            if self._housekeeper is not None:
                self._housekeeper.poke()     # one more run: prune beyond MAX_RUNS now

    def _complete_run(self, staging: Path, results: dict, finished: list[str], data_dir: Path,
                      base_set: str, data_name: str | None = None) -> str:
        """Copy the base set's other models beside the trained ones and write run.json; returns the label."""
        from .. import checkpoints as ckpt

        base = self._folder(base_set)
        classes = results[finished[0]].meta["class_names"]
        for name in ckpt.list_names(base):
            if name not in finished and ckpt.read_meta(base, name)["class_names"] == classes:
                for suffix in (".keras", ".json"):
                    shutil.copy2(base / f"{name}{suffix}", staging / f"{name}{suffix}")
        label = (f"Trained {time.strftime('%H:%M:%S')}: " + ", ".join(
            f"{n} {results[n].meta['val_accuracy']:.1%}" for n in finished) +
            f" on {data_name or data_dir.name} ({len(classes)} classes)")
        # no owner session hash here: runs/ is served to anyone (the trained models download)
        atomic_write_bytes(staging / "run.json", json.dumps(
            {"label": label, "models": finished, "data": str(data_dir)}).encode())
        return label

    def check_training(self, models, backbone: str, weights: str, epochs) -> tuple[tuple[str, ...], int]:
        """A visitor's training request checked against what the app trains and the limits:
        (models, epochs). Raises ValueError with the message for the visitor."""
        chosen = tuple(m for m in (models or []) if m in TRAINABLE)
        if not chosen:
            raise ValueError("Pick at least one model to train.")
        if backbone not in BACKBONES or weights not in WEIGHT_SOURCES:
            raise ValueError("Unknown backbone or weight source.")
        return chosen, self.limits.epochs(epochs)

    def train_from(self, data_dir: Path, models, backbone: str, weights: str, epochs, owner: str | None = None,
                   base_set: str = SHIPPED, data_name: str | None = None) -> tuple[TrainingJob, RunProgress]:
        """Start a visitor's training request (see ``check_training``) and return the job with the
        progress to follow it by. Raises ValueError or BusyError."""
        chosen, epochs = self.check_training(models, backbone, weights, epochs)
        job = self.start_training(data_dir, chosen, TrainConfig(epochs=epochs),
                                  FinetuneConfig(backbone=backbone, weights=weights), owner=owner,
                                  base_set=base_set or SHIPPED, data_name=data_name)
        return job, RunProgress(models=chosen, epochs=epochs)

    def trained_confusions(self, set_id: str, progress: RunProgress):
        """The validation confusion matrices of the models a finished run trained (a Figure), or None."""
        from ..analysis import confusion_matrices_figure

        served = self.model_set(set_id).models
        trained = [n for n in progress.results if n in served and not progress.results[n]["stopped"]]
        if not trained:
            return None
        return confusion_matrices_figure({n: served[n].meta["metrics"]["confusion_matrix"] for n in trained},
                                         served[trained[0]].checkpoint.class_names)

    def stop_training(self, owner: str | None) -> None:
        """Ask the owner's running training to stop at the next batch; KeyError when there is none."""
        job = self.job
        if job is None or job.done.is_set() or owner is None or job.owner != owner:
            raise KeyError("No training of yours is running.")
        job.stop.set()

    def end_session(self, owner: str | None) -> None:
        """A visitor left: forget the images they added and their teaching examples, and stop
        their training at the next batch."""
        self.private.forget(owner)
        self.examples.forget(owner)
        for run, trained_by in list(self._run_owners.items()):
            if owner is not None and trained_by == owner:
                del self._run_owners[run]     # no longer held: the housekeeping may remove it in time
        job = self.job
        if owner is not None and job is not None and job.owner == owner and not job.done.is_set():
            job.stop.set()

    @property
    def training(self) -> bool:
        return self._train_lock.locked()

    # ------------------------------------------------------------------ datasets and examples
    def example_images(self, folder: Path | None = None, per_class: int = 2, limit: int = 24) -> list[Path]:
        """A few query images for one-click examples (``data.example_images`` of the query folder)."""
        from ..data import example_images

        return example_images(Path(folder) if folder is not None else self.queries, per_class, limit)

    def dataset_from_zip(self, zip_path: Path) -> Path:
        """Unpack an uploaded dataset zip once (keyed by its content hash) under the system temp dir."""
        from ..data import extract_zip_cached

        return extract_zip_cached(Path(zip_path))

    def sample_dataset(self) -> Path:
        """The sample dataset's folder, written on first use."""
        from ..data import ensure_sample_dataset

        return ensure_sample_dataset()

    def dataset_counts(self, folder: Path) -> dict[str, int]:
        """Images per class of a class-folder dataset. Raises DatasetError."""
        from ..data import scan_folder

        return scan_folder(Path(folder)).counts()

    def run_files(self, set_id: str) -> list[Path]:
        """The ``.keras`` files trained by one run (not the models it copied from its base set)."""
        folder = self._folder(set_id)
        trained = json.loads((folder / "run.json").read_text())["models"] if set_id != SHIPPED else []
        return [folder / f"{name}.keras" for name in trained if (folder / f"{name}.keras").exists()]

    # ------------------------------------------------------------------ analysis
    def analysis(self, set_id: str = SHIPPED, data_dir: Path | None = None, progress=None):
        """The cached :class:`cvdemo.analysis.Analysis` of a model set (computed on first call).

        ``progress(fraction, message)`` is called while computing. ``data_dir``: evaluate every
        image of that labelled folder instead of the models' validation split.
        """
        return self._analyses.get(set_id, self.model_set(set_id).checkpoints, data_dir, progress)

    def warm_up(self, analysis: bool = True) -> dict[str, float]:
        """Make the first visitor's requests fast: the retrieval index and extractor, the
        explanations, what a first teaching replays, then the shipped set's analysis. Returns
        seconds per step; a failing step is skipped (reported as -1).
        """
        timings: dict[str, float] = {}
        started = time.perf_counter()
        try:
            index = self.retrieval_index()
            index.ensure_fresh()
            index.features_of(np.zeros((1, config.DIGIT_SIZE, config.DIGIT_SIZE, 1), np.float32))
            timings["retrieval"] = time.perf_counter() - started
        except Exception:  # noqa: BLE001 - no database or extractor: retrieval reports it on use
            timings["retrieval"] = -1.0
        started = time.perf_counter()
        try:
            self.warm_explain(SHIPPED)
            timings["explain"] = time.perf_counter() - started
        except Exception:  # noqa: BLE001 - the Explain tab builds what it needs on first use instead
            timings["explain"] = -1.0
        started = time.perf_counter()
        try:
            warm_teaching(self.model_set(SHIPPED).folder)
            timings["teaching"] = time.perf_counter() - started
        except Exception:  # noqa: BLE001 - the first teaching does the same work itself and reports its errors
            timings["teaching"] = -1.0
        if analysis:
            started = time.perf_counter()
            try:
                self.analysis(SHIPPED)
                timings["analysis"] = time.perf_counter() - started
            except Exception:  # noqa: BLE001 - the Analyze tab reports the same error on use
                timings["analysis"] = -1.0
        return timings

    def report_bundle(self, set_id: str = SHIPPED, progress=None) -> Path:
        """The report zip of a model set: figures, report.md, metrics.json, .keras + .tflite, usage."""
        return self._analyses.bundle(set_id, self.model_set(set_id).checkpoints, progress)


def _return_freed_memory() -> None:
    """After a training: collect its models and hand glibc's freed heap back to the system
    (measured: about 70 MB less resident after a few runs; the slope per run stays)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):     # not glibc: nothing to hand back this way
        pass
