"""The analyses of model sets a service has computed: one at a time (they are CPU-heavy), each
once, memoised in memory (model sets are immutable) over the on-disk cache of ``cvdemo.analysis``."""
from __future__ import annotations

import threading
from pathlib import Path


class Analyses:
    """``get`` computes or returns the analysis of a model set; ``bundle`` zips it with the models."""

    def __init__(self, cache_dir: Path):
        self.cache_dir = Path(cache_dir)
        self._lock = threading.Lock()
        self._memo: dict = {}

    def get(self, set_id: str, checkpoints: dict, data_dir: Path | None = None, progress=None):
        """The :class:`cvdemo.analysis.Analysis` of ``checkpoints`` (the set ``set_id``).

        ``progress(fraction, message)`` is called while computing. ``data_dir``: evaluate every
        image of that labelled folder instead of the models' validation split.
        """
        from ..analysis import analyze_cached

        key = (set_id, str(Path(data_dir).resolve()) if data_dir else None)

        def cached():
            found = self._memo.get(key) if data_dir is None else None
            return found if found is not None and found.folder.is_dir() else None

        if cached() is not None:
            return self._memo[key]
        if self._lock.locked() and progress is not None:
            progress(0.0, "waiting for an analysis that is already being computed")
        with self._lock:
            if cached() is not None:          # computed by the call we waited for: never twice
                return self._memo[key]
            self._memo[key] = analyze_cached(checkpoints, Path(data_dir) if data_dir else None, progress,
                                             cache_dir=self.cache_dir)
            return self._memo[key]

    def held(self) -> list[Path]:
        """The folders of the analyses in memory (the Analyze tab shows their figures)."""
        return [analysis.folder for analysis in list(self._memo.values())]

    def ready(self, set_id: str):
        """The analysis of a set on its validation split if already computed, else None (never waits)."""
        found = self._memo.get((set_id, None))
        return found if found is not None and found.folder.is_dir() else None

    def bundle(self, set_id: str, checkpoints: dict, progress=None) -> Path:
        """The report zip of a model set: figures, report.md, metrics.json, .keras + .tflite, usage."""
        from ..analysis import bundle

        analysis = self.get(set_id, checkpoints, progress=(lambda f, m: progress(0.5 * f, m)) if progress else None)
        with self._lock:
            return bundle(analysis, checkpoints, cache_dir=self.cache_dir,
                          progress=(lambda f, m: progress(0.5 + 0.5 * f, m)) if progress else None)
