"""Bounded loopback load test: concurrent gradio_client sessions classify and retrieve.

Each client sends its own held-out MNIST digit (a different image per client) to ``/classify``
and ``/retrieve`` in turn until the time is up. Every answer is compared with a reference
answer for that same image, taken one request at a time before the load starts, so an answer
meant for another client (or computed by another model set) is caught. Optionally a training
run is started through ``/train`` first, so the load runs while the app trains.

    python scripts/loadtest.py --url http://127.0.0.1:7860 --clients 20 --seconds 60 --train

Refuses any host that is not loopback. Prints requests served, errors, mismatches and latency
percentiles; exits 1 if any request failed or any answer was wrong.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SAMPLE_SOURCE = "Sample dataset (digits 0, 1, 2)"
ZIP_SOURCE = "My own zip of class folders"
TOLERANCE = 1e-4          # probabilities of the same image through the same model


def loopback_url(url: str) -> str:
    """``url`` unchanged if its host is loopback; otherwise ValueError (never load a real server)."""
    parsed = urlparse(url)
    host = parsed.hostname
    if parsed.scheme not in ("http", "https") or not host:
        raise ValueError(f"{url!r} is not an http URL.")
    if host != "localhost":
        try:
            if not ipaddress.ip_address(host).is_loopback:
                raise ValueError
        except ValueError:
            raise ValueError(f"Refusing {host}: this load test only runs against loopback "
                             "(127.0.0.0/8, ::1, localhost).") from None
    return url


def client_images(n: int, folder: Path) -> list[tuple[Path, int]]:
    """``n`` different held-out MNIST digits (classes 0, 1, 2 in turn) as paper-scan PNGs."""
    from cvdemo.data import mnist_digits, mnist_partition, mnist_to_paper

    pixels, labels = mnist_digits()
    query = mnist_partition()["query"]
    images = []
    for i in range(n):
        digit = i % 3
        index = query[labels[query] == digit][i // 3]
        path = folder / f"client{i:02d}_digit{digit}.png"
        mnist_to_paper(pixels[index]).save(path)
        images.append((path, int(digit)))
    assert len({p.read_bytes() for p, _ in images}) == n, "client images must differ"
    return images


def _classify(client, path: Path) -> dict:
    from gradio_client import handle_file

    return client.predict(handle_file(str(path)), "shipped", api_name="/classify")


def _retrieve(client, path: Path, k: int) -> list[tuple[int, str]]:
    from gradio_client import handle_file

    _gallery, table, _verdict, _seen = client.predict(handle_file(str(path)), k, api_name="/retrieve")
    rows = [dict(zip(table["headers"], row)) for row in table["data"]]
    return [(int(r["rank"]), str(r["path"])) for r in rows]


def same_classification(got: dict, want: dict) -> bool:
    if set(got) != set(want):
        return False
    for name, answer in want.items():
        if got[name]["label"] != answer["label"]:
            return False
        if set(got[name]["probabilities"]) != set(answer["probabilities"]):
            return False
        if any(abs(got[name]["probabilities"][c] - p) > TOLERANCE for c, p in answer["probabilities"].items()):
            return False
    return True


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"classify": [], "retrieve": []})
    errors: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def run(url: str, clients: int = 20, seconds: float = 30.0, k: int = 4, train: bool = False,
        train_zip: Path | None = None, train_epochs: int = 3, log=print) -> dict:
    """Run the load test and return the figures (see the module docstring)."""
    from gradio_client import Client

    url = loopback_url(url)
    work = Path(tempfile.mkdtemp(prefix="cvdemo-loadtest-"))
    images = client_images(clients, work)

    log(f"reference answers for {clients} images, one request at a time ...")
    reference_client = Client(url, verbose=False)
    reference = {path: (_classify(reference_client, path), _retrieve(reference_client, path, k))
                 for path, _ in images}
    wrong_class = [p.name for p, digit in images
                   if not all(a["label"].split("_")[0] == str(digit) for a in reference[p][0].values())]
    job, _trainer = _start_training(url, train_zip, train_epochs, log) if train else (None, None)
    tally, wall = _load(url, clients, seconds, k, images, reference, log)
    every = tally.latencies["classify"] + tally.latencies["retrieve"]
    figures = {
        "url": url, "clients": clients, "seconds": round(wall, 1),
        "requests": len(every) + len(tally.errors), "served": len(every),
        "errors": len(tally.errors), "mismatches": len(tally.mismatches),
        "throughput_per_s": round(len(every) / wall, 2) if wall else None,
        "latency_s": {name: {"n": len(values),
                             "p50": _round(_percentile(values, 50)), "p95": _round(_percentile(values, 95)),
                             "max": _round(max(values) if values else None)}
                      for name, values in (("all", every), *tally.latencies.items())},
        "reference_wrong_class": wrong_class,
        "training": _training_outcome(job),
        "error_samples": tally.errors[:5], "mismatch_samples": tally.mismatches[:5],
    }
    return figures


def _start_training(url: str, train_zip: Path | None, epochs: int, log) -> tuple:
    """A /train job of the scratch CNN, holding the training lock while the load runs."""
    from gradio_client import Client, handle_file

    trainer = Client(url, verbose=False)
    source = ZIP_SOURCE if train_zip else SAMPLE_SOURCE
    job = trainer.submit(source, handle_file(str(train_zip)) if train_zip else None, ["scratch"],
                         "mobilenet_v2", "none", epochs, api_name="/train")
    time.sleep(1.0)        # let it take the training lock before the load starts
    log("training started through /train")
    return job, trainer          # the client stays alive as long as its job runs


def _load(url: str, clients: int, seconds: float, k: int, images, reference: dict, log) -> tuple[Tally, float]:
    """``clients`` sessions alternating /classify and /retrieve for ``seconds``, each answer
    checked against the reference; the tally and the wall time."""
    from gradio_client import Client

    tally = Tally()
    sessions = [Client(url, verbose=False) for _ in range(clients)]
    start = threading.Barrier(clients + 1)
    deadline = [0.0]

    def work_loop(number: int, client, path: Path) -> None:
        want_class, want_hits = reference[path]
        start.wait()
        turn = number % 2
        while time.monotonic() < deadline[0]:
            endpoint = ("classify", "retrieve")[turn]
            turn ^= 1
            began = time.perf_counter()
            try:
                got = _classify(client, path) if endpoint == "classify" else _retrieve(client, path, k)
            except Exception as err:  # noqa: BLE001 - every failure is counted and shown
                with tally.lock:
                    tally.errors.append(f"client {number} {endpoint}: {type(err).__name__}: {err}"[:300])
                continue
            elapsed = time.perf_counter() - began
            ok = same_classification(got, want_class) if endpoint == "classify" else got == want_hits
            with tally.lock:
                tally.latencies[endpoint].append(elapsed)
                if not ok:
                    tally.mismatches.append(f"client {number} {endpoint}: got {str(got)[:160]}")

    threads = [threading.Thread(target=work_loop, args=(i, sessions[i], images[i][0]), daemon=True)
               for i in range(clients)]
    for thread in threads:
        thread.start()
    log(f"{clients} clients for {seconds:.0f} s ...")
    deadline[0] = time.monotonic() + seconds
    began = time.monotonic()
    start.wait()
    for thread in threads:
        thread.join(seconds + 120)
    wall = time.monotonic() - began

    return tally, wall


def _training_outcome(job) -> dict | None:
    """Whether the training that ran under the load was still running, and how it ended."""
    if job is None:
        return None
    status = job.status()
    training = {"running_at_end": not job.done(), "status": str(getattr(status, "code", status))}
    if job.done():
        try:
            job.result(timeout=1)
            training["outcome"] = "finished"
        except Exception as err:  # noqa: BLE001
            training["outcome"] = f"{type(err).__name__}: {err}"[:200]
    return training


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the app, e.g. http://127.0.0.1:7860 (loopback only)")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0, help="load duration (1-600)")
    parser.add_argument("--k", type=int, default=4, help="results per retrieval")
    parser.add_argument("--train", action="store_true", help="start a training through /train first")
    parser.add_argument("--train-zip", type=Path, default=None, help="train on this zip, not the sample set")
    parser.add_argument("--train-epochs", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON only")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= 64 or not 1 <= args.seconds <= 600:
        parser.error("--clients must be 1-64 and --seconds 1-600")
    try:
        loopback_url(args.url)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    log = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    figures = run(args.url, args.clients, args.seconds, args.k, args.train or bool(args.train_zip),
                  args.train_zip, args.train_epochs, log=log)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        lat = figures["latency_s"]
        print(f"served {figures['served']} requests in {figures['seconds']} s "
              f"({figures['throughput_per_s']}/s) from {figures['clients']} clients; "
              f"errors {figures['errors']}, mismatched answers {figures['mismatches']}")
        for name in ("classify", "retrieve", "all"):
            print(f"  {name:8s} n={lat[name]['n']:5d}  p50={lat[name]['p50']} s  p95={lat[name]['p95']} s  "
                  f"max={lat[name]['max']} s")
        wrong = figures["reference_wrong_class"]
        print(f"  reference answers: {figures['clients'] - len(wrong)}/{figures['clients']} images classified "
              f"as their digit by every model" + (f" (not: {', '.join(wrong)})" if wrong else ""))
        if figures["training"]:
            print(f"  training: {figures['training']}")
        for line in figures["error_samples"] + figures["mismatch_samples"]:
            print(f"  ! {line}")
    return 1 if figures["errors"] or figures["mismatches"] else 0


if __name__ == "__main__":
    sys.exit(main())
