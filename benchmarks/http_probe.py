"""Time a running app's /classify over HTTP with gradio_client: the client half of ``cvdemo bench``.

The cvdemo package never imports Gradio or its client, so ``python -m cvdemo bench`` starts
``app.py`` and then this script beside it, and reads the one JSON document it prints:

    {"first_answer_at": <epoch s>, "sequential": [<s>, ...],
     "concurrent": {"latencies": [<s>, ...], "errors": ["<type>: <message>", ...], "wall": <s>}}

It polls until the app answers once (``first_answer_at``), then sends ``--requests`` requests
one at a time, then ``--per-client`` requests from each of ``--clients`` concurrent clients.
Loopback only. Exits 1 with one line on stderr when the app never answers.

    python scripts/http_probe.py --url http://127.0.0.1:7860/ --image digit.png --requests 60
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time

from loadtest import loopback_url


def first_answer(url: str, image: str, timeout: float):
    """Poll until the app answers /classify; return the connected client and when it answered."""
    from gradio_client import Client, handle_file

    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            client = Client(url, verbose=False)
            client.predict(handle_file(image), api_name="/classify")
            return client, time.time()
        except Exception as err:          # not listening yet
            last = err
            time.sleep(0.2)
    raise SystemExit(f"error: the app did not answer /classify within {timeout:.0f} s ({last})")


def sequential(client, image: str, requests: int) -> list[float]:
    from gradio_client import handle_file

    if requests:
        client.predict(handle_file(image), api_name="/classify")      # warm this client
    latencies = []
    for _ in range(requests):
        started = time.perf_counter()
        client.predict(handle_file(image), api_name="/classify")
        latencies.append(time.perf_counter() - started)
    return latencies


def concurrent(url: str, image: str, clients: int, per_client: int) -> dict:
    """``clients`` sessions released together, ``per_client`` requests each."""
    from gradio_client import Client, handle_file

    connected = [Client(url, verbose=False) for _ in range(clients)]
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(max(1, clients))

    def work(client):
        barrier.wait()
        for _ in range(per_client):
            started = time.perf_counter()
            try:
                client.predict(handle_file(image), api_name="/classify")
                with lock:
                    latencies.append(time.perf_counter() - started)
            except Exception as err:
                with lock:
                    errors.append(f"{type(err).__name__}: {err}")

    threads = [threading.Thread(target=work, args=(c,)) for c in connected]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"latencies": latencies, "errors": errors, "wall": time.perf_counter() - started}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--image", required=True, help="the image sent to /classify")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for the first answer")
    parser.add_argument("--requests", type=int, default=0, help="sequential requests after the first answer")
    parser.add_argument("--clients", type=int, default=0, help="concurrent clients after those")
    parser.add_argument("--per-client", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        url = loopback_url(args.url)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    client, answered_at = first_answer(url, args.image, args.timeout)
    document = {"first_answer_at": answered_at, "sequential": sequential(client, args.image, args.requests)}
    if args.clients:
        document["concurrent"] = concurrent(url, args.image, args.clients, args.per_client)
    json.dump(document, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
