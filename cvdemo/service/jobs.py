"""A background training job: its events as they arrive, its stop flag and its outcome."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ..progress import RunProgress


class BusyError(RuntimeError):
    """Another training is running; ``str(err)`` is for the user."""


@dataclass
class TrainingJob:
    id: str
    owner: str | None
    events: list[dict] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    error: str | None = None
    set_id: str | None = None           # the new model set, once saved
    data: Path | None = None            # the folder it trains on (held while it runs)
    started: float = field(default_factory=time.time)

    def snapshot(self, since: int = 0) -> list[dict]:
        return self.events[since:]

    def follow(self, progress: RunProgress, poll: float = 0.5) -> Iterator[RunProgress]:
        """Fold the job's events into ``progress`` as they come, yielding it whenever it changed,
        until the job is done and every event is in."""
        seen, shown = 0, -1
        while True:
            finished = self.done.wait(poll)
            events = self.snapshot(seen)
            seen += len(events)
            progress.extend(events)
            if len(progress.lines) != shown or events:
                shown = len(progress.lines)
                yield progress
            if finished and seen == len(self.events):
                return


class NothingFinished(Exception):
    """A training stopped before any model finished: nothing is saved and nothing changes."""
