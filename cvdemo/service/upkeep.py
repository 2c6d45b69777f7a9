"""The service's side of ``cvdemo.housekeeping``: which folders it writes, and which of their
files are in use now (so that no sweep removes them)."""
from __future__ import annotations

from pathlib import Path

from .. import config
from ..housekeeping import Area, Housekeeper


class Upkeep:
    """Mixed into ``Service``: the areas it writes and the paths it holds."""

    def written_areas(self, extra: tuple[Area, ...] = ()) -> list[Area]:
        """Every folder the service writes outside checkpoints/ and the database, and ``extra``
        (the UI's: Gradio's upload and output cache)."""
        cache = Path(self.analysis_cache)
        return [Area(self.runs, "folders"), Area(cache / "analysis", "folders"), Area(cache / "additions", "folders"),
                Area(cache / "examples", "folders"),
                Area(cache / "bundles", "files"), Area(config.LITERT_CACHE, "files"),
                *[Area(config.TEMP_DIR / name, units) for name, units in config.TEMP_AREAS.items()], *extra]

    def held_paths(self) -> list[Path]:
        """What must stay: the loaded model sets, their analyses, the running training (its data
        and its staging folder), the runs of sessions still open, and live sessions' additions."""
        with self._lock:
            held = [s.folder for s in self._sets.values()]
        held += self._analyses.held()
        held += [self.runs / run for run in list(self._run_owners)]
        held += self.private.held()
        held += self.examples.held()
        job = self.job
        if job is not None and not job.done.is_set():
            held += [self.runs / job.id, *self.runs.glob(f".{job.id}-*")]
            held += [job.data] if job.data is not None else []
        return held

    def housekeeper(self, extra: tuple[Area, ...] = (), held: tuple[Path, ...] = (),
                    interval_s: float = 30.0) -> Housekeeper:
        """A :class:`Housekeeper` over the service's areas within ``config.CACHE_MB`` and
        ``config.MAX_RUNS`` (not started); ``held``: paths the UI keeps for good (its examples)."""
        self._housekeeper = Housekeeper(lambda: self.written_areas(extra), lambda: [*self.held_paths(), *held],
                                        self.runs, config.CACHE_MB * 2**20, config.MAX_RUNS, config.HOLD_S,
                                        interval_s=interval_s)
        return self._housekeeper
