"""Keeping what the app writes bounded for months: a total size over every folder it writes
(outside ``checkpoints/`` and ``images_database/``) and a number of training runs.

An *area* is one such folder; its *units* are its files, or its sub-folders when a sub-folder
only makes sense whole (a training run, an extracted dataset, one upload in Gradio's cache).
A sweep removes the least recently used units that nobody holds until the total is under the
bound; a unit is held when it lies under a path the caller says is in use (a loaded model set,
a running training's data, a live session's additions) or was used in the last ``hold_s``
seconds (a file a visitor's page still shows). Runs beyond ``max_runs`` go oldest first, held
ones never. Knows only the file system.
"""
from __future__ import annotations

import os
import shutil
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable


@dataclass(frozen=True)
class Area:
    path: Path
    units: str = "files"          # "files": each file is a unit; "folders": each sub-folder (and loose file)


@dataclass
class Unit:
    path: Path
    size: int
    used: float                   # the newest modification time inside it (content_file touches on reuse)


@dataclass
class Sweep:
    before: int                   # bytes in every area before the sweep
    after: int
    removed: list[Path] = field(default_factory=list)
    runs_removed: list[Path] = field(default_factory=list)
    held: int = 0                 # bytes the sweep could not remove because they are in use


def tree_size(folder: Path) -> tuple[int, float]:
    """(bytes, newest modification time) of the files under ``folder`` and of the folder itself;
    anything removed while it is walked (another sweep, a finished staging) is skipped."""
    size, used = 0, os.lstat(folder).st_mtime
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                info = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                size, used = size + info.st_size, max(used, info.st_mtime)
    return size, used


def _measure(path: Path) -> Unit | None:
    try:
        if path.is_symlink() or not path.is_dir():
            info = path.lstat()
            return Unit(path, info.st_size, info.st_mtime)
        return Unit(path, *tree_size(path))
    except OSError:               # removed meanwhile (another sweep, a finished staging)
        return None


def units(area: Area) -> list[Unit]:
    """The area's units, measured (an area that does not exist has none)."""
    root = Path(area.path)
    if not root.is_dir():
        return []
    if area.units == "folders":
        paths = list(root.iterdir())
    else:                         # os.walk: a folder removed while it is walked is skipped, not an error
        paths = [Path(folder) / name for folder, _, files in os.walk(root) for name in files]
    return [u for u in (_measure(p) for p in paths) if u is not None]


def _remove(path: Path) -> bool:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
        return True
    except FileNotFoundError:
        return True
    except OSError:
        return False


def _under(path: Path, held: Iterable[Path]) -> bool:
    path = Path(path).resolve()
    return any(path == h or h in path.parents or path in h.parents for h in held)


def prune_runs(runs: Path, max_runs: int, held: Iterable[Path] = (), hold_s: float = 0.0,
               now: float | None = None) -> list[Path]:
    """Remove the oldest ``run-*`` folders beyond ``max_runs``, never a held one; the ones removed."""
    now = time.time() if now is None else now
    held = [Path(h).resolve() for h in held]
    found = [u for u in (_measure(p) for p in Path(runs).glob("run-*") if p.is_dir()) if u is not None]
    found.sort(key=lambda u: u.path.name)            # run-<date>-<time>-<id>: oldest first
    removed, left = [], len(found)
    for unit in found:
        if left <= max_runs:
            break
        if _under(unit.path, held) or now - unit.used < hold_s:
            continue
        if _remove(unit.path):
            removed.append(unit.path)
            left -= 1
    return removed


def sweep(areas: Iterable[Area], limit_bytes: int, held: Iterable[Path] = (), hold_s: float = 0.0,
          now: float | None = None) -> Sweep:
    """Remove the least recently used units nobody holds until the areas total ≤ ``limit_bytes``."""
    now = time.time() if now is None else now
    held = [Path(h).resolve() for h in held]
    found = [u for area in areas for u in units(area)]
    total = before = sum(u.size for u in found)
    report = Sweep(before, before)
    locked = 0
    for unit in sorted(found, key=lambda u: u.used):
        if total <= limit_bytes:
            break
        if _under(unit.path, held) or now - unit.used < hold_s:
            locked += unit.size
            continue
        if _remove(unit.path):
            total -= unit.size
            report.removed.append(unit.path)
    report.after, report.held = total, locked
    return report


class Housekeeper:
    """Sweeps ``areas`` and prunes ``runs`` every ``interval_s`` in a daemon thread, and on ``poke``."""

    def __init__(self, areas: Callable[[], list[Area]], held: Callable[[], list[Path]], runs: Path,
                 limit_bytes: int, max_runs: int, hold_s: float, interval_s: float = 30.0,
                 log: Callable[[str], None] = print):
        self.areas, self.held, self.runs = areas, held, Path(runs)
        self.limit_bytes, self.max_runs, self.hold_s, self.interval_s = limit_bytes, max_runs, hold_s, interval_s
        self.log = log
        self.last: Sweep | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def run_once(self) -> Sweep:
        with self._lock:             # one sweep at a time: the thread's and a poke's never interleave
            held = self.held()
            runs_removed = prune_runs(self.runs, self.max_runs, held, self.hold_s)
            report = sweep(self.areas(), self.limit_bytes, held, self.hold_s)
            report.runs_removed = runs_removed
            self.last = report
        if report.removed or runs_removed:
            self.log(f"cvdemo: housekeeping removed {len(report.removed)} cached item(s) and {len(runs_removed)} "
                     f"run(s): {report.before / 2**20:.0f} -> {report.after / 2**20:.0f} MB "
                     f"(bound {self.limit_bytes / 2**20:.0f} MB)")
        return report

    def start(self) -> Housekeeper:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="housekeeping", daemon=True)
            self._thread.start()
        return self

    def poke(self) -> None:
        """Sweep soon (a training run just finished)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception as err:   # noqa: BLE001 - housekeeping must never take the server down
                self.log(f"cvdemo: housekeeping failed: {type(err).__name__}: {err}")
            self._wake.wait(self.interval_s)
            self._wake.clear()
