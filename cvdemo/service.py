"""What the app and the CLI call: loaded model sets, classification, and background training.

Holds the only long-lived state (loaded models, the training job) behind locks. Model sets are
immutable once loaded: a finished training becomes a *new* set, which the session that trained
it switches to; nobody else's answers change. Never imports Gradio.
"""
from __future__ import annotations

import json
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import config
from .config import FinetuneConfig, TrainConfig
from .images import ImageError, decode, preprocess

SHIPPED = "shipped"
DISPLAY_ORDER = ("scratch", "finetuned", "lenet")


class BusyError(RuntimeError):
    """Another training is running; ``str(err)`` is for the user."""


@dataclass
class ModelAnswer:
    name: str
    label: str
    probabilities: dict[str, float]
    ms: float
    weights: str                       # human label of where the weights came from
    model_input: np.ndarray            # what the model received, (S, S, C) float32


@dataclass
class Classification:
    models: dict[str, ModelAnswer]
    set_id: str

    @property
    def agree(self) -> bool:
        return len({answer.label for answer in self.models.values()}) <= 1

    def as_dict(self) -> dict:
        return {name: {"label": a.label, "probabilities": a.probabilities} for name, a in self.models.items()}


class ServedModel:
    """A checkpoint plus a compiled, warmed-up inference function (safe to call from threads)."""

    def __init__(self, checkpoint):
        import tensorflow as tf

        self.checkpoint = checkpoint
        self.name = checkpoint.name
        self.meta = checkpoint.meta
        shape = tuple(checkpoint.input_shape)
        model = checkpoint.model
        self._fn = tf.function(lambda x: model(x, training=False),
                               input_signature=[tf.TensorSpec((None, *shape), tf.float32)])
        self._fn(np.zeros((1, *shape), np.float32))   # trace now, never under load

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self._fn(np.asarray(batch, np.float32)).numpy()

    @property
    def weights_label(self) -> str:
        return self.meta.get("weights_label", "")


@dataclass
class ModelSet:
    id: str
    label: str
    folder: Path
    models: dict[str, ServedModel]

    @property
    def class_names(self) -> list[str]:
        return next(iter(self.models.values())).checkpoint.class_names


@dataclass
class TrainingJob:
    id: str
    owner: str | None
    events: list[dict] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    error: str | None = None
    set_id: str | None = None           # the new model set, once saved
    started: float = field(default_factory=time.time)

    def snapshot(self, since: int = 0) -> list[dict]:
        return self.events[since:]


class Service:
    """Loaded models and jobs for one process. Thread-safe."""

    def __init__(self, checkpoints: Path = config.CHECKPOINT_DIR, runs: Path = config.RUNS_DIR,
                 warm: bool = True, max_sets: int = 4, database: Path = config.DATABASE_DIR):
        self.checkpoints = Path(checkpoints)
        self.database = Path(database)
        self._retrieval = None             # the FeatureIndex, created on first retrieve
        self._retrieval_lock = threading.Lock()
        self.runs = Path(runs)
        self._sets: OrderedDict[str, ModelSet] = OrderedDict()
        self._max_sets = max_sets
        self._lock = threading.Lock()
        self._train_lock = threading.Lock()
        self.job: TrainingJob | None = None
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

    def available_sets(self) -> list[tuple[str, str]]:
        """(label, id) pairs: the shipped models and every finished training run, newest first."""
        found = [("Shipped models (checkpoints/)", SHIPPED)]
        if self.runs.is_dir():
            for folder in sorted(self.runs.glob("run-*"), reverse=True):
                info = folder / "run.json"
                if info.exists():
                    try:
                        found.append((json.loads(info.read_text())["label"], folder.name))
                    except (OSError, ValueError, KeyError):
                        continue
        return found

    def model_set(self, set_id: str = SHIPPED) -> ModelSet:
        """Load (once) and return a model set; the least recently used ones are dropped."""
        from . import checkpoints as ckpt

        with self._lock:
            if set_id in self._sets:
                self._sets.move_to_end(set_id)
                return self._sets[set_id]
        folder = self._folder(set_id)
        loaded = ckpt.load_all(folder)
        if not loaded:
            raise ckpt.CheckpointError(f"No models in {folder}. Train some with: python -m cvdemo train")
        served = {name: ServedModel(loaded[name]) for name in sorted(loaded, key=_display_rank)}
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
    def classify(self, source: Any, set_id: str = SHIPPED, name: str | None = None) -> Classification:
        """Decode once, preprocess once per input profile, run every model of the set."""
        model_set = self.model_set(set_id)
        decoded = decode(source, name=name)
        inputs: dict[tuple, np.ndarray] = {}
        answers = {}
        for model_name, served in model_set.models.items():
            shape = tuple(served.checkpoint.input_shape)
            key = (served.checkpoint.profile, shape)
            started = time.perf_counter()
            if key not in inputs:
                inputs[key] = preprocess(decoded.image, served.checkpoint.profile, size=shape[0])
            proba = served(inputs[key][None])[0]
            ms = (time.perf_counter() - started) * 1000
            classes = served.checkpoint.class_names
            answers[model_name] = ModelAnswer(
                model_name, classes[int(proba.argmax())],
                {c: float(p) for c, p in zip(classes, proba)}, ms, served.weights_label, inputs[key])
        return Classification(answers, set_id)

    # ------------------------------------------------------------------ training
    def start_training(self, data_dir: Path, model_names: tuple[str, ...], cfg: TrainConfig = TrainConfig(),
                       ft: FinetuneConfig = FinetuneConfig(), owner: str | None = None,
                       base_set: str = SHIPPED) -> TrainingJob:
        """Start a training in a background thread; raise BusyError if one is running.

        The finished models are saved under runs/<job id>/ (never over checkpoints/), together
        with copies of ``base_set``'s other models, and become a new model set.
        """
        if not self._train_lock.acquire(blocking=False):
            raise BusyError("A training run is already in progress. Please wait for it to finish "
                            "(classification and retrieval keep working meanwhile).")
        job = TrainingJob(id=f"run-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}", owner=owner)
        self.job = job
        thread = threading.Thread(target=self._run_training, name=f"train-{job.id}", daemon=True,
                                  args=(job, Path(data_dir), model_names, cfg, ft, base_set))
        try:
            thread.start()
        except BaseException:
            self._train_lock.release()
            raise
        return job

    def _run_training(self, job: TrainingJob, data_dir: Path, model_names, cfg, ft, base_set) -> None:
        from . import checkpoints as ckpt
        from .train import train

        folder = self.runs / job.id
        staging = self.runs / f".{job.id}.partial"
        try:
            results = train(data_dir, model_names, cfg, ft, out=staging, on_event=job.events.append,
                            stop=job.stop, checkpoints=self.checkpoints)
            finished = [name for name, r in results.items() if not r.stopped]
            if finished:
                base = self._folder(base_set)
                classes = results[finished[0]].meta["class_names"]
                for name in ckpt.list_names(base):
                    if name not in finished and ckpt.read_meta(base, name)["class_names"] == classes:
                        for suffix in (".keras", ".json"):
                            shutil.copy2(base / f"{name}{suffix}", staging / f"{name}{suffix}")
                label = (f"Trained {time.strftime('%H:%M:%S')}: " + ", ".join(
                    f"{n} {results[n].meta['val_accuracy']:.1%}" for n in finished) +
                    f" on {data_dir.name} ({len(classes)} classes)")
                # no owner session hash here: runs/ is served to anyone (the trained models download)
                ckpt.atomic_write_bytes(staging / "run.json", json.dumps(
                    {"label": label, "models": finished, "data": str(data_dir)}).encode())
                staging.rename(folder)           # the set appears whole or not at all
                self.model_set(job.id)           # load + warm now, before anyone asks
                job.set_id = job.id
                job.events.append({"kind": "activated", "set_id": job.id, "label": label})
        except Exception as err:   # reported to the user through the job, never raised in a thread
            from .data import DatasetError
            from .models import WeightsUnavailable

            known = (DatasetError, ImageError, WeightsUnavailable, ckpt.CheckpointError)
            job.error = str(err) if isinstance(err, known) else f"Training failed: {type(err).__name__}: {err}"
            job.events.append({"kind": "error", "message": job.error})
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            job.done.set()
            self._train_lock.release()

    @property
    def training(self) -> bool:
        return self._train_lock.locked()

    # ------------------------------------------------------------------ retrieval
    retrieval_extractor: str | None = None     # None: retrieval.default_extractor(checkpoints)

    def retrieval_index(self):
        """The database's feature index (cvdemo.retrieval.FeatureIndex), created on first use."""
        from .retrieval import FeatureIndex

        with self._retrieval_lock:
            if self._retrieval is None:
                self._retrieval = FeatureIndex(self.database, self.retrieval_extractor,
                                               self.checkpoints)
            return self._retrieval

    def retrieve(self, source: Any, k: int = 4, name: str | None = None):
        """The k database images nearest to ``source`` -> retrieval.RetrievalAnswer. Raises ImageError."""
        from .retrieval import RetrievalAnswer

        index = self.retrieval_index()
        started = time.perf_counter()
        image, hits = index.search(source, max(1, int(k)), name=name)
        return RetrievalAnswer(hits, image, index.extractor_name, (time.perf_counter() - started) * 1000,
                               database=index.database)

    def add_to_database(self, files: list, label: str | None = None):
        """Copy image files into the database (never overwriting) and index them now -> AddReport."""
        from .retrieval import add_files

        index = self.retrieval_index()
        known = {entry.sha256 for entry in index.snapshot.entries}
        report = add_files(self.database, [Path(f) for f in files], label, known)
        if report.added:
            update = index.update()
            added = {str(path.relative_to(self.database).as_posix()) for path in report.added}
            for rel, reason in update.skipped:
                if rel in added:
                    report.skipped.append((Path(rel).name, reason))
        return report

    def database_info(self) -> dict:
        """Size, classes and extractor of the retrieval database (indexes it if needed)."""
        index = self.retrieval_index()
        snap = index.ensure_fresh()
        classes: dict[str, int] = {}
        for entry in snap.entries:
            classes[entry.label or "(none)"] = classes.get(entry.label or "(none)", 0) + 1
        return {"database": str(self.database), "images": len(snap), "classes": dict(sorted(classes.items())),
                "extractor": index.extractor_name, "extractor_key": snap.extractor_key,
                "skipped": [{"path": e.path, "reason": r} for e, r in snap.skipped]}

    # ------------------------------------------------------------------ app helpers (issue 3)
    def example_images(self, folder: Path = config.QUERY_DIR, per_class: int = 2,
                       limit: int = 24) -> list[Path]:
        """A few query images for one-click examples: ``per_class`` from each subfolder, then loose files."""
        folder = Path(folder)
        if not folder.is_dir():
            return []
        chosen: list[Path] = []
        for entry in sorted(folder.iterdir()):
            if entry.is_dir() and not entry.name.startswith("."):
                chosen += [p for p in sorted(entry.iterdir())
                           if p.suffix.lower() in config.IMAGE_EXTENSIONS][:per_class]
            elif entry.suffix.lower() in config.IMAGE_EXTENSIONS:
                chosen.append(entry)
        return chosen[:limit]

    def dataset_from_zip(self, zip_path: Path) -> Path:
        """Unpack an uploaded dataset zip once (keyed by its content hash) under the system temp dir."""
        import hashlib
        import tempfile

        from .data import extract_zip

        digest = hashlib.sha256(Path(zip_path).read_bytes()).hexdigest()[:16]
        base = Path(tempfile.gettempdir()) / "cvdemo-datasets"
        final = base / digest
        marker = final / ".root"
        if marker.exists():
            return final / marker.read_text()
        staging = Path(tempfile.mkdtemp(prefix=f".{digest}-", dir=_mkdir(base)))
        try:
            root = extract_zip(Path(zip_path), staging / "data")
            (staging / ".root").write_text(str(root.relative_to(staging)))
            try:
                staging.rename(final)
            except OSError:           # another request unpacked the same zip first
                pass
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return final / marker.read_text()

    def run_files(self, set_id: str) -> list[Path]:
        """The ``.keras`` files trained by one run (not the models it copied from its base set)."""
        folder = self._folder(set_id)
        trained = json.loads((folder / "run.json").read_text())["models"] if set_id != SHIPPED else []
        return [folder / f"{name}.keras" for name in trained if (folder / f"{name}.keras").exists()]

    # ------------------------------------------------------------------ analysis (cvdemo.report)
    analysis_cache: Path = config.CACHE_DIR       # tests point this at tmp_path
    _analysis_lock = threading.Lock()             # one analysis at a time: they are CPU-heavy

    def analysis(self, set_id: str = SHIPPED, data_dir: Path | None = None, progress=None):
        """The cached :class:`cvdemo.report.Analysis` of a model set (computed on first call).

        ``progress(fraction, message)`` is called while computing. ``data_dir``: evaluate every
        image of that labelled folder instead of the models' validation split.
        """
        from .report import analyze_cached

        model_set = self.model_set(set_id)
        key = (set_id, str(Path(data_dir).resolve()) if data_dir else None)
        memo = self.__dict__.setdefault("_analyses", {})   # model sets are immutable: safe to memoise

        def cached():
            found = memo.get(key) if data_dir is None else None
            return found if found is not None and found.folder.is_dir() else None

        if cached() is not None:
            return memo[key]
        checkpoints = {name: served.checkpoint for name, served in model_set.models.items()}
        if self._analysis_lock.locked() and progress is not None:
            progress(0.0, "waiting for an analysis that is already being computed")
        with self._analysis_lock:
            if cached() is not None:          # computed by the call we waited for: never twice
                return memo[key]
            memo[key] = analyze_cached(checkpoints, Path(data_dir) if data_dir else None, progress,
                                       cache_dir=self.analysis_cache)
            return memo[key]

    def warm_up(self, analysis: bool = True) -> dict[str, float]:
        """Make the first visitor's requests fast: the retrieval index and extractor, then the
        shipped set's analysis. Returns seconds per step; a failing step is skipped (reported as -1).
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
        from .report import bundle

        analysis = self.analysis(set_id, progress=(lambda f, m: progress(0.5 * f, m)) if progress else None)
        model_set = self.model_set(set_id)
        checkpoints = {name: served.checkpoint for name, served in model_set.models.items()}
        with self._analysis_lock:
            return bundle(analysis, checkpoints, cache_dir=self.analysis_cache,
                          progress=(lambda f, m: progress(0.5 + 0.5 * f, m)) if progress else None)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _display_rank(name: str) -> tuple[int, str]:
    return (DISPLAY_ORDER.index(name) if name in DISPLAY_ORDER else len(DISPLAY_ORDER), name)
