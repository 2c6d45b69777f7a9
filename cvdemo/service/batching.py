"""Micro-batching: classification requests that arrive together run as one forward pass per model.

Each caller says it is coming (``expecting``) before it decodes and preprocesses its image, then
hands the prepared input in. One worker thread per batcher takes the first input waiting and,
while more callers are known to be on their way, waits for them up to ``max_wait_s`` (never
longer, never past ``max_batch``). A lone caller therefore waits for nobody, and under load the
batch grows with the number of callers in flight instead of their requests queueing one by one.
The worker exits after ``idle_s`` without work and starts again on the next input.
"""
from __future__ import annotations

import contextlib
import threading
import time
from typing import Any, Callable, Iterator

from .. import config


class _Slot:
    """One caller's place in a batch: its input, then its result or the error that replaced it."""

    __slots__ = ("item", "done", "result", "error")

    def __init__(self, item):
        self.item, self.done, self.result, self.error = item, threading.Event(), None, None


class MicroBatcher:
    """``run(items) -> results`` (same length, same order) called on batches of concurrent inputs."""

    def __init__(self, run: Callable[[list], list], max_batch: int = config.BATCH_MAX,
                 max_wait_s: float = config.BATCH_WAIT_MS / 1000, idle_s: float = 5.0, name: str = "batch"):
        self._run = run
        self.max_batch = max(1, int(max_batch))
        self.max_wait_s = max(0.0, float(max_wait_s))
        self.idle_s = idle_s
        self.name = name
        self._cond = threading.Condition()
        self._waiting: list[_Slot] = []
        self._coming = 0                    # callers between ``expecting`` and their input
        self._worker: threading.Thread | None = None
        self.batches = 0                    # forward passes run, and the inputs they held (for the bench)
        self.inputs = 0

    @contextlib.contextmanager
    def expecting(self) -> Iterator[Callable[[Any], Any]]:
        """``with batcher.expecting() as submit: ...; result = submit(item)``: the worker waits
        for this caller while it prepares its input (a caller that fails first is not waited for)."""
        with self._cond:
            self._coming += 1
        submitted = False

        def submit(item):
            nonlocal submitted
            slot = _Slot(item)
            with self._cond:
                submitted = True
                self._coming -= 1
                self._waiting.append(slot)
                if self._worker is None:
                    self._worker = threading.Thread(target=self._work, name=f"{self.name}-worker", daemon=True)
                    self._worker.start()
                self._cond.notify_all()
            slot.done.wait()
            if slot.error is not None:
                raise slot.error
            return slot.result

        try:
            yield submit
        finally:
            if not submitted:
                with self._cond:
                    self._coming -= 1
                    self._cond.notify_all()

    def __call__(self, item):
        """One input, batched with whatever arrives with it."""
        with self.expecting() as submit:
            return submit(item)

    def _next_batch(self) -> list[_Slot] | None:
        with self._cond:
            while not self._waiting:
                if not self._cond.wait(self.idle_s) and not self._waiting:
                    self._worker = None       # under the lock: the next submit starts a new worker
                    return None
            deadline = time.monotonic() + self.max_wait_s
            while len(self._waiting) < self.max_batch and self._coming > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch, self._waiting = self._waiting[:self.max_batch], self._waiting[self.max_batch:]
            return batch

    def _work(self) -> None:
        while (batch := self._next_batch()) is not None:
            try:
                results = self._run([slot.item for slot in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"{self.name}: {len(results)} results for {len(batch)} inputs")
                for slot, result in zip(batch, results):
                    slot.result = result
            except BaseException as err:      # noqa: BLE001 - every caller of the batch gets the error
                for slot in batch:
                    slot.error = err
            self.batches += 1
            self.inputs += len(batch)
            for slot in batch:
                slot.done.set()
