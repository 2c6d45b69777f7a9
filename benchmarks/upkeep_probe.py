"""Months of visitors in minutes: the client half of the bench's ``upkeep`` section.

Sends ``--uploads`` distinct images to ``/classify`` through gradio_client (each one lands in
Gradio's upload cache and makes the app write its outputs), then runs ``--runs`` trainings of
the scratch CNN on the sample dataset through ``/train``, each from a session that then leaves
(its client closed, as a closed page). Prints ``{"uploads": n, "runs": n, "errors": [...],
"uploads_done_at": t, "runs_done_at": [t, ...]}`` (epoch seconds, for the bench's memory samples).
Loopback only.

    python benchmarks/upkeep_probe.py --url http://127.0.0.1:7860/ --uploads 2000 --runs 20
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from loadtest import SAMPLE_SOURCE, loopback_url

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def distinct_images(n: int, folder: Path) -> list[Path]:
    """``n`` different digit pictures: held-out MNIST digits on paper, each with its own speckle."""
    from cvdemo.data import mnist_digits, mnist_partition, mnist_to_paper

    pixels, labels = mnist_digits()
    query = mnist_partition()["query"]
    rng = np.random.default_rng(7)
    paths = []
    for i in range(n):
        paper = np.asarray(mnist_to_paper(pixels[query[i % len(query)]]).convert("L"), np.int16)
        paper = np.clip(paper - rng.integers(0, 3, paper.shape), 0, 255).astype(np.uint8)
        path = folder / f"upload-{i:05d}.png"
        from PIL import Image

        Image.fromarray(paper).save(path)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    from gradio_client import Client, handle_file

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--uploads", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--clients", type=int, default=6)
    args = parser.parse_args(argv)
    url = loopback_url(args.url)
    errors: list[str] = []
    with tempfile.TemporaryDirectory() as folder:
        images = distinct_images(args.uploads, Path(folder))
        lock = threading.Lock()

        def upload(share: list[Path]):
            client = Client(url, verbose=False)
            for path in share:
                try:
                    client.predict(handle_file(str(path)), api_name="/classify")
                except Exception as err:   # noqa: BLE001 - counted
                    with lock:
                        errors.append(f"upload: {type(err).__name__}: {err}")
            client.close()

        threads = [threading.Thread(target=upload, args=(images[i::args.clients],)) for i in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    uploads_done, runs_done = time.time(), []
    for _ in range(args.runs):
        client = Client(url, verbose=False)
        try:
            client.predict(SAMPLE_SOURCE, None, ["scratch"], "mobilenet_v2", "none", 1, api_name="/train")
        except Exception as err:   # noqa: BLE001
            errors.append(f"train: {type(err).__name__}: {err}")
        client.close()                    # the session leaves: its run is no longer held
        runs_done.append(time.time())
    json.dump({"uploads": args.uploads, "runs": args.runs, "errors": errors[:20], "n_errors": len(errors),
               "uploads_done_at": uploads_done, "runs_done_at": runs_done}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
