"""Load a running app like a classroom: the client half of the bench's ``classroom`` section.

Modes (one JSON document on stdout, latencies summarised in ms):

- ``rest``: ``--clients`` threads, each with its own held-out digit and keep-alive connection,
  POST ``/api/v1/classify`` for ``--seconds``; every answer is compared with that digit's answer
  taken alone first, so an answer meant for another client is caught. ``--sequential N`` first
  times N requests from one client.
- ``gradio``: ``--clients`` gradio_client sessions, ``--per-client`` ``/classify`` calls each.
- ``classroom``: ``--clients`` students for ``--seconds``, each drawing in bursts of 3-8 s with
  pauses of 2-5 s and a stroke update every 300 ms while drawing, sent through the UI's own
  event API (``/classify_drawing_live``, a canvas data URL). Like the page (``trigger_mode=
  "always_last"``), a student has one request in flight; strokes made meanwhile collapse into
  the newest, whose wait (from its stroke to its answer) is the latency.

Loopback only.

    python benchmarks/classroom_probe.py --url http://127.0.0.1:7860/ --mode rest --clients 30 --seconds 60
"""
from __future__ import annotations

import argparse
import base64
import io
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from loadtest import loopback_url

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

STROKE_S = 0.3
TOLERANCE = 1e-4


def summary(latencies: list[float], errors: list[str], wall: float, **extra) -> dict:
    values = np.asarray(latencies, np.float64) * 1000
    document = {"n": int(values.size), "errors": len(errors), "wall_s": round(wall, 2),
                "throughput_rps": round(values.size / wall, 2) if wall else None,
                "p50": round(float(np.percentile(values, 50)), 2) if values.size else None,
                "p95": round(float(np.percentile(values, 95)), 2) if values.size else None,
                "min": round(float(values.min()), 2) if values.size else None,
                "max": round(float(values.max()), 2) if values.size else None, **extra}
    if errors:
        document["first_error"] = errors[0][:300]
    return document


def digits(n: int) -> list[tuple[bytes, np.ndarray]]:
    """``n`` different held-out MNIST digits: (paper-scan PNG bytes, the 28x28 digit)."""
    from cvdemo.data import mnist_digits, mnist_partition, mnist_to_paper

    pixels, labels = mnist_digits()
    query = mnist_partition()["query"]
    found = []
    for i in range(n):
        index = query[labels[query] == i % 3][i // 3]
        buffer = io.BytesIO()
        mnist_to_paper(pixels[index]).save(buffer, "PNG")
        found.append((buffer.getvalue(), pixels[index]))
    return found


def canvas_frames(digit: np.ndarray, frames: int = 8) -> list[str]:
    """The digit drawn on a 280x280 canvas a little more with each frame, as the canvas's data URLs."""
    from PIL import Image

    ink = np.asarray(Image.fromarray(digit).resize((200, 200), Image.BILINEAR)) > 60
    rows = np.flatnonzero(ink.any(axis=1))
    urls = []
    for k in range(1, frames + 1):
        shown = ink.copy()
        shown[rows[0] + int(len(rows) * k / frames):] = False        # drawn from the top down
        canvas = np.full((280, 280, 4), 255, np.uint8)
        canvas[40:240, 40:240][shown] = (20, 20, 20, 255)
        buffer = io.BytesIO()
        Image.fromarray(canvas, "RGBA").save(buffer, "PNG")
        urls.append("data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode())
    return urls


class RestClient:
    """One keep-alive connection posting one prebuilt multipart body: a load generator light
    enough (http.client, not httpx) that the server, not the client, sets the pace on shared cores."""

    def __init__(self, url: str, png: bytes, name: str = "digit.png"):
        import http.client
        from urllib.parse import urlparse

        parsed = urlparse(url)
        self.path = parsed.path.rstrip("/") + "/api/v1/classify"
        self.connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
        boundary = "cvdemo-probe-boundary"
        self.body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\n"
                     f"Content-Type: image/png\r\n\r\n").encode() + png + f"\r\n--{boundary}--\r\n".encode()
        self.headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}

    def classify(self) -> dict:
        self.connection.request("POST", self.path, body=self.body, headers=self.headers)
        answer = self.connection.getresponse()
        data = answer.read()
        if answer.status != 200:
            raise RuntimeError(f"HTTP {answer.status}: {data[:200]!r}")
        return json.loads(data)


def rest(url: str, clients: int, seconds: float, sequential: int) -> dict:
    images = digits(clients)
    reference = [RestClient(url, png, f"c{i}.png").classify() for i, (png, _) in enumerate(images)]
    one, alone = RestClient(url, images[0][0]), []
    for _ in range(sequential):
        started = time.perf_counter()
        one.classify()
        alone.append(time.perf_counter() - started)
    latencies, errors, mixed = [], [], [0]
    lock, barrier = threading.Lock(), threading.Barrier(clients)
    deadline = [0.0]

    def same(a: dict, b: dict) -> bool:
        return a.keys() == b.keys() and all(
            a[m]["label"] == b[m]["label"] and all(abs(a[m]["probabilities"][c] - p) <= TOLERANCE
                                                   for c, p in b[m]["probabilities"].items()) for m in a)

    def work(i: int):
        client, expected = RestClient(url, images[i][0], f"c{i}.png"), reference[i]
        barrier.wait()
        while time.perf_counter() < deadline[0]:
            started = time.perf_counter()
            try:
                ok = same(client.classify(), expected)
                with lock:
                    latencies.append(time.perf_counter() - started)
                    mixed[0] += not ok
            except Exception as err:   # noqa: BLE001 - counted, the load goes on
                with lock:
                    errors.append(f"{type(err).__name__}: {err}")
                client = RestClient(url, images[i][0], f"c{i}.png")     # a fresh connection

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    deadline[0] = time.perf_counter() + seconds + 1.0
    for t in threads:
        t.start()
    started = time.perf_counter()
    for t in threads:
        t.join()
    document = summary(latencies, errors, time.perf_counter() - started, clients=clients, mixed_up=mixed[0])
    if alone:
        document["one_client"] = summary(alone, [], sum(alone))
    return document


def gradio(url: str, clients: int, per_client: int) -> dict:
    """``http_probe.concurrent``: ``clients`` gradio_client sessions released together."""
    from http_probe import concurrent

    image = Path(tempfile.mkdtemp(prefix="classroom-probe-")) / "digit.png"
    image.write_bytes(digits(1)[0][0])
    probed = concurrent(url, str(image), clients, per_client)
    image.unlink(missing_ok=True)
    return summary(probed["latencies"], probed["errors"], probed["wall"], clients=clients)


def classroom(url: str, clients: int, seconds: float, seed: int = 0) -> dict:
    from gradio_client import Client

    frames = [canvas_frames(d) for _, d in digits(clients)]
    connected = [Client(url, verbose=False) for _ in range(clients)]
    connected[0].predict(frames[0][-1], api_name="/classify_drawing_live")   # warm
    latencies, errors, counts = [], [], {"strokes": 0, "superseded": 0}
    lock, barrier = threading.Lock(), threading.Barrier(clients)

    def student(i: int):
        rng = np.random.default_rng(seed + i)
        client, start = connected[i], None
        barrier.wait()
        start = time.perf_counter()
        end = start + seconds
        # (burst start, burst end) windows; the first burst starts within the first two seconds
        windows, t = [], start + rng.uniform(0, 2)
        while t < end:
            length = rng.uniform(3, 8)
            windows.append((t, min(t + length, end)))
            t += length + rng.uniform(2, 5)
        ticks = [w0 + k * STROKE_S for w0, w1 in windows for k in range(int((w1 - w0) / STROKE_S) + 1)]
        sent = 0                                    # ticks handled so far
        while sent < len(ticks):
            now = time.perf_counter()
            due = sum(1 for tick in ticks[sent:] if tick <= now)
            if due == 0:
                time.sleep(max(0.0, ticks[sent] - now))
                continue
            newest = sent + due - 1                 # the page sends only the newest stroke
            stroke_at = ticks[newest]
            try:
                client.predict(frames[i][newest % len(frames[i])], api_name="/classify_drawing_live")
                with lock:
                    latencies.append(time.perf_counter() - stroke_at)
            except Exception as err:   # noqa: BLE001
                with lock:
                    errors.append(f"{type(err).__name__}: {err}")
            with lock:
                counts["strokes"] += due
                counts["superseded"] += due - 1
            sent = newest + 1

    threads = [threading.Thread(target=student, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return summary(latencies, errors, time.perf_counter() - started, clients=clients, **counts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--mode", choices=("rest", "gradio", "classroom"), required=True)
    parser.add_argument("--clients", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--per-client", type=int, default=10)
    parser.add_argument("--sequential", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        url = loopback_url(args.url)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    if args.mode == "rest":
        document = rest(url, args.clients, args.seconds, args.sequential)
    elif args.mode == "gradio":
        document = gradio(url, args.clients, args.per_client)
    else:
        document = classroom(url, args.clients, args.seconds)
    json.dump(document, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
