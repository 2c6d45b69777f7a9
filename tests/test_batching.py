"""Micro-batching: each caller gets its own answer, batches form under concurrency and stay
bounded, a lone caller is not held back, and an error reaches every caller of its batch."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from cvdemo.service.batching import MicroBatcher

from conftest import digit_image


def _recording(sizes: list, delay: float = 0.0):
    def run(items):
        sizes.append(len(items))
        time.sleep(delay)
        return [item * 10 for item in items]
    return run


def test_concurrent_callers_get_their_own_answers_in_bounded_batches():
    sizes: list[int] = []
    batcher = MicroBatcher(_recording(sizes, delay=0.02), max_batch=5, max_wait_s=0.2)
    start = threading.Barrier(16)

    def call(i):
        start.wait()
        return batcher(i)

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(call, range(16)))
    assert answers == [i * 10 for i in range(16)]
    assert sum(sizes) == 16 and max(sizes) <= 5
    assert len(sizes) < 16                # at least one pass ran several inputs together
    assert batcher.batches == len(sizes) and batcher.inputs == 16


def test_a_lone_caller_waits_for_nobody():
    sizes: list[int] = []
    batcher = MicroBatcher(_recording(sizes), max_wait_s=30.0)
    started = time.monotonic()
    assert batcher(3) == 30
    assert time.monotonic() - started < 10     # far below the 30 s it would wait for others
    assert sizes == [1]


def test_a_caller_that_fails_while_preparing_is_not_waited_for():
    batcher = MicroBatcher(_recording([]), max_wait_s=30.0)
    ready, release = threading.Event(), threading.Event()

    def failing():
        with pytest.raises(ValueError), batcher.expecting():
            ready.set()
            release.wait(5)
            raise ValueError("not an image")

    other = threading.Thread(target=failing)
    other.start()
    ready.wait(5)
    release.set()
    other.join(5)
    started = time.monotonic()
    assert batcher(1) == 10
    assert time.monotonic() - started < 10


def test_an_error_reaches_every_caller_of_its_batch_and_the_next_batch_runs():
    calls = []

    def run(items):
        calls.append(list(items))
        if -1 in items:
            raise RuntimeError("model failed")
        return items

    batcher = MicroBatcher(run, max_wait_s=0.0)
    with pytest.raises(RuntimeError, match="model failed"):
        batcher(-1)
    assert batcher(7) == 7
    wrong = MicroBatcher(lambda items: [], max_wait_s=0.0, name="short")
    with pytest.raises(RuntimeError, match="0 results for 1 inputs"):
        wrong(1)


def test_the_worker_stops_when_idle_and_starts_again():
    batcher = MicroBatcher(lambda items: items, idle_s=0.05)
    assert batcher(1) == 1
    deadline = time.monotonic() + 5
    while batcher._worker is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert batcher._worker is None
    assert batcher(2) == 2


def test_service_answers_concurrent_classifications_as_it_answers_them_one_by_one(tiny_checkpoints, tmp_path):
    from cvdemo.service import Service

    service = Service(checkpoints=tiny_checkpoints, runs=tmp_path / "runs", analysis_cache=tmp_path / "cache",
                      database=tmp_path / "db", inference="keras")
    images = [digit_image(d, i) for d in (0, 1, 2) for i in range(4)]
    alone = [service.classify(image, looks_like=False) for image in images]
    batcher = service.model_set().batcher
    before = batcher.inputs
    with ThreadPoolExecutor(12) as pool:
        together = list(pool.map(lambda image: service.classify(image, looks_like=False), images * 3))
    for a, b in zip(alone * 3, together):
        for name in a.models:
            assert b.models[name].label == a.models[name].label
            assert np.allclose(list(b.models[name].probabilities.values()),
                               list(a.models[name].probabilities.values()), atol=1e-5)
    assert batcher.inputs - before == len(images) * 3       # every one went through the batcher
