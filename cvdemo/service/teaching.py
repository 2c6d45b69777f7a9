"""The service's side of teaching (``cvdemo.teaching``): a visitor's examples, kept per session,
and a teaching run that becomes a new model set for that session only, like a training run."""
from __future__ import annotations

import json
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from .. import config
from ..config import TeachConfig
from ..fsutil import atomic_write_bytes, staged_folder
from ..images import DECODE_SIDE, decode, prepare
from ..progress import RunProgress
from ..teaching import Example, ExampleError, ExamplesFull, check_examples, class_name
from .jobs import BusyError, NothingFinished, TrainingJob
from .sets import SHIPPED

TEACH_SECONDS_GUESS = 30.0           # a first teaching's length, until one has been timed


class Teaching:
    """Mixed into ``Service``: ``self.examples`` is its :class:`cvdemo.teaching.ExampleStore`."""

    teach_cfg: TeachConfig = TeachConfig()
    _last_teach_s: float | None = None

    def add_example(self, owner: str | None, source: Any, label: str, set_id: str = SHIPPED,
                    name: str | None = None, origin: str = "drawing") -> Example:
        """Keep ``source`` (a drawing, an image file) as an example of ``label`` (a class of the
        set, shown or real name, or a new class name), with what the set's models see of it."""
        model_set = self.model_set(set_id or SHIPPED)
        label = class_name(label, model_set.class_names, self.teach_cfg.max_class_chars)
        decoded = decode(source, name=name, max_side=DECODE_SIDE)
        served = next(iter(model_set.models.values())).checkpoint
        seen = prepare(decoded.image, served.profile, size=served.input_shape[0]).array
        return self.examples.add(owner, decoded.image, seen, label, origin)

    def import_examples(self, owner: str | None, zip_path: Path, set_id: str = SHIPPED) -> tuple[int, list[str]]:
        """Add every image of a zip of class folders (checked like a dataset zip) as examples:
        (added, reasons for the ones skipped)."""
        from ..data import extract_zip_cached
        from ..images import ImageError
        from ..teaching import example_files

        root = extract_zip_cached(Path(zip_path))
        added, skipped = 0, []
        for path, label in example_files(root):
            try:
                self.add_example(owner, path, label, set_id, name=path.name, origin="zip")
                added += 1
            except (ImageError, ExampleError) as err:
                skipped.append(f"{label}/{path.name}: {err}")
                if isinstance(err, ExamplesFull):
                    break
        if not added and not skipped:
            raise ExampleError("The zip holds no images in class folders.")
        return added, skipped

    def remove_example(self, owner: str | None, example_id: str) -> bool:
        return self.examples.remove(owner, example_id)

    def reset_examples(self, owner: str | None) -> None:
        self.examples.forget(owner)

    def examples_zip(self, owner: str | None) -> Path:
        return self.examples.zip(owner, config.TEMP_DIR / "cvdemo-bundles")

    def teach_wait_s(self) -> float:
        """About how long the run in progress still takes (the busy message's wait)."""
        job = self.job
        if job is None or job.done.is_set():
            return 0.0
        expected = self._last_teach_s or TEACH_SECONDS_GUESS
        return max(3.0, expected - (time.time() - job.started))

    def start_teaching(self, owner: str | None, base_set: str = SHIPPED) -> tuple[TrainingJob, RunProgress]:
        """Teach the set ``base_set`` the owner's examples in a background thread. Raises
        ExampleError (nothing or too little to teach) or BusyError (a run is in progress)."""
        model_set = self.model_set(base_set or SHIPPED)
        counts = self.examples.counts(owner)
        check_examples(counts, model_set.class_names, self.teach_cfg)
        if not self._train_lock.acquire(blocking=False):
            raise BusyError(f"The server is busy teaching or training for someone; try again in about "
                            f"{self.teach_wait_s():.0f} s (classification keeps working meanwhile).")
        job = TrainingJob(id=f"run-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}", owner=owner)
        try:
            # the run reads a copy: the visitor may go on adding and removing examples meanwhile
            job.data = self.examples.snapshot(owner, self.runs / f".{job.id}-examples")
            self.job = job
            threading.Thread(target=self._run_teaching, name=f"teach-{job.id}", daemon=True,
                             args=(job, model_set, counts)).start()
        except BaseException:
            self._train_lock.release()
            raise
        return job, RunProgress(models=tuple(model_set.models), epochs=self.teach_cfg.epochs)

    def _run_teaching(self, job: TrainingJob, model_set, counts: dict[str, int]) -> None:
        from ..teaching import teach

        started = time.perf_counter()
        try:
            with staged_folder(self.runs / job.id) as staging:
                results = teach(model_set.folder, job.data, staging, self.teach_cfg, on_event=job.events.append,
                                stop=job.stop, source="this session's examples")
                finished = [name for name, r in results.items() if not r.stopped]
                if not finished:
                    raise NothingFinished
                new = results[finished[0]].meta["taught"]["new_classes"]
                label = (f"taught {time.strftime('%H:%M:%S')}: +{sum(counts.values())} examples"
                         + (f", new class{'es' if len(new) > 1 else ''} "
                            + ", ".join(config.class_display_name(c) for c in new) if new else "")
                         + f" (from {model_set.label})")[:160]
                atomic_write_bytes(staging / "run.json", json.dumps(
                    {"label": label, "models": finished, "data": "taught examples", "base": model_set.id,
                     "report": {n: {"before": r.before, "after": r.after, "seconds": round(r.seconds, 2)}
                                for n, r in results.items()}}).encode())
            self.model_set(job.id)
            self._run_owners[job.id] = job.owner
            job.set_id = job.id
            self._last_teach_s = time.perf_counter() - started
            job.events.append({"kind": "activated", "set_id": job.id, "label": label})
        except NothingFinished:
            pass
        except Exception as err:   # reported to the visitor through the job, never raised in a thread
            from . import USER_ERRORS

            job.error = str(err) if isinstance(err, USER_ERRORS) else f"Teaching failed: {type(err).__name__}: {err}"
            job.events.append({"kind": "error", "message": job.error})
        finally:
            from . import _return_freed_memory

            _return_freed_memory()
            shutil.rmtree(job.data, ignore_errors=True)
            job.done.set()
            self._train_lock.release()
            if self._housekeeper is not None:
                self._housekeeper.poke()

    def teach_report(self, set_id: str) -> dict | None:
        """The before/after scores of a taught set's models (from its run.json), or None."""
        try:
            return json.loads((self._folder(set_id) / "run.json").read_text()).get("report")
        except (OSError, ValueError, KeyError):
            return None
