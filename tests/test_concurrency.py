"""Concurrent users: a short loopback load test while a training runs (the CI version of
``benchmarks/loadtest.py``), one training at a time, and per-session model sets."""
from __future__ import annotations

import threading
import time

import pytest

from app_server import serving, tiny_service, zip_folder
from conftest import digit_image, write_digits

pytest.importorskip("gradio")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from benchmarks import loadtest  # noqa: E402


@pytest.fixture(scope="module")
def server(tiny_checkpoints, tmp_path_factory):
    root = tmp_path_factory.mktemp("concurrency")
    service = tiny_service(tiny_checkpoints, root)
    with serving(service) as (url, _):
        yield url, service, root


def _long_training(service, root, epochs=200):
    from cvdemo.config import TrainConfig

    data = write_digits(root / f"train{time.monotonic_ns()}", per_class=6)
    return service.start_training(data, ("scratch",), TrainConfig(epochs=epochs, batch_size=6, augment=False))


@pytest.mark.parametrize("url", ["http://10.1.2.3:7860", "http://example.com:7860", "http://[2001:db8::1]:80",
                                 "http://0.0.0.0:7860", "ftp://127.0.0.1/", "127.0.0.1:7860"])
def test_loadtest_refuses_anything_but_loopback(url):
    with pytest.raises(ValueError):
        loadtest.loopback_url(url)
    assert loadtest.main(["--url", url, "--seconds", "1"]) == 2


def test_loadtest_accepts_loopback():
    for url in ("http://127.0.0.1:7860", "http://localhost:1/", "http://[::1]:7860", "http://127.5.0.1:80"):
        assert loadtest.loopback_url(url) == url


@pytest.mark.slow
def test_answers_stay_with_their_client_under_load_while_training(server):
    """4 sessions, distinct digits, classify + retrieve for ~10 s while a training runs: no
    errors, no answer that differs from the single-threaded reference, bounded latency."""
    url, service, root = server
    job = _long_training(service, root)
    try:
        deadline = time.time() + 60
        while not any(e.get("kind") == "epoch" for e in job.events) and time.time() < deadline:
            time.sleep(0.2)                        # the training is really fitting, not starting
        figures = loadtest.run(url, clients=4, seconds=10, k=3, log=lambda *a: None)
        training_during_load = service.training
    finally:
        job.stop.set()
        job.done.wait(120)
    print(figures)
    assert training_during_load, "the training finished before the load ended; make it longer"
    assert figures["errors"] == 0, figures["error_samples"]
    assert figures["mismatches"] == 0, figures["mismatch_samples"]
    lat = figures["latency_s"]
    assert lat["classify"]["n"] >= 4 and lat["retrieve"]["n"] >= 4
    assert lat["all"]["p95"] < 20, lat                  # 2 shared CPU cores with a training on them


def test_mixed_up_answers_would_be_caught():
    """The comparison the load test relies on notices another image's answer."""
    want = {"scratch": {"label": "0_digits", "probabilities": {"0_digits": 0.7, "1_digits": 0.3}}}
    assert loadtest.same_classification(want, want)
    other = {"scratch": {"label": "0_digits", "probabilities": {"0_digits": 0.69, "1_digits": 0.31}}}
    assert not loadtest.same_classification(other, want)
    assert not loadtest.same_classification({}, want)


def test_second_training_start_is_refused_from_threads(server):
    """Eight simultaneous starts at the Service: exactly one runs, seven get the busy message."""
    from cvdemo.service import BusyError

    url, service, root = server
    data = write_digits(root / "race", per_class=4)
    results, barrier = [], threading.Barrier(8)

    def start():
        from cvdemo.config import TrainConfig

        barrier.wait()
        try:
            results.append(service.start_training(data, ("scratch",), TrainConfig(epochs=30, batch_size=6)))
        except BusyError as err:
            results.append(str(err))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    jobs = [r for r in results if not isinstance(r, str)]
    try:
        assert len(jobs) == 1
        assert all("already in progress" in r for r in results if isinstance(r, str))
        with pytest.raises(AppError, match="already in progress"):
            Client(url, verbose=False).predict("Sample dataset (digits 0, 1, 2)", None, ["scratch"],
                                               "mobilenet_v2", "none", 1, api_name="/train")
    finally:
        jobs[0].stop.set()
        jobs[0].done.wait(120)
    assert not service.training


def test_a_training_changes_only_its_own_sessions_answers(server, tmp_path):
    """Session A trains through /train and switches to its new set; session B's answers, taken
    before and after (through the same per-session endpoint), do not move."""
    url, service, root = server
    image = tmp_path / "two.png"
    digit_image(2, 7).save(image)
    data = zip_folder(write_digits(tmp_path / "tiny", per_class=5), tmp_path / "tiny.zip")
    a, b = Client(url, verbose=False), Client(url, verbose=False)

    def answers(client):
        outputs = client.predict(handle_file(str(image)), api_name="/classify_upload")
        return next(o for o in outputs if isinstance(o, dict) and "scratch" in o)

    b_before, a_before = answers(b), answers(a)
    assert b_before == a_before
    job = a.submit("My own zip of class folders", handle_file(str(data)), ["scratch"], "mobilenet_v2", "none", 2,
                   api_name="/train")
    b_during = answers(b)
    job.result(timeout=300)
    new_set = service.job.set_id
    assert new_set and new_set.startswith("run-")
    a_after, b_after = answers(a), answers(b)
    assert b_during == b_before and b_after == b_before          # B still on the shipped models
    assert a_after != a_before                                    # A uses its freshly trained scratch
    copied = ("label", "probabilities", "novelty")                 # the verdict may follow the new scratch
    assert {k: a_after["finetuned"][k] for k in copied} == {k: a_before["finetuned"][k] for k in copied}
    assert Client(url, verbose=False).predict(handle_file(str(image)), "shipped", api_name="/classify") == b_before


@pytest.mark.slow
def test_twenty_clients_for_thirty_seconds(server):
    url, service, root = server
    job = _long_training(service, root, epochs=1000)
    try:
        figures = loadtest.run(url, clients=20, seconds=30, k=4, log=lambda *a: None)
    finally:
        job.stop.set()
        job.done.wait(120)
    print(figures)
    assert figures["errors"] == 0 and figures["mismatches"] == 0, figures
