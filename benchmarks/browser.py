"""Benchmark section on the page as a visitor meets it: ``python app.py`` in a subprocess and
Chromium driven by ``browser_probe.py`` in another. Stroke-to-answer beside upload-to-answer, in
the same run, and whether a phone shows the verdict after a stroke without scrolling."""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

from cvdemo import config

from .models import write_sketch
from .options import BenchError, BenchOptions, Tick, summarize
from .serving import HERE, _tail, app_process, wait_until_serving

CHROMIUM = "/usr/bin/chromium"


def bench_browser(opts: BenchOptions, workdir: Path, tick: Tick) -> dict:
    """{"stroke_ms": {...}, "upload_ms": {...}, "phone_verdict_in_view": fraction}."""
    chromium = shutil.which("chromium") or CHROMIUM
    if not Path(chromium).exists() or importlib.util.find_spec("playwright") is None:
        raise BenchError("needs Chromium (apt-get install chromium) and playwright (pip install -r requirements-dev.txt)")
    images = [str(write_sketch(workdir / f"upload-{d}.png", digit=d)) for d in (0, 1, 2)]
    out, err = workdir / "browser.json", workdir / "browser.err"
    with app_process(opts, workdir, "app-browser") as (url, proc, log, _):
        wait_until_serving(url, proc, log)
        tick("app started")
        command = [sys.executable, str(HERE / "browser_probe.py"), "--url", url, "--strokes", str(opts.browser_inputs),
                   "--uploads", str(opts.browser_inputs), "--out", str(out), "--chromium", chromium,
                   *[part for image in images for part in ("--image", image)]]
        with open(err, "wb") as stderr:
            done = subprocess.run(command, cwd=config.ROOT, stdout=subprocess.DEVNULL, stderr=stderr, timeout=900)
        if done.returncode != 0:
            raise BenchError(f"{_tail(err, 4)}\n{_tail(log)}")
    probed = json.loads(out.read_text())
    tick("browser timings")
    return {"stroke_ms": summarize(probed["stroke_ms"], scale=1.0, digits=1),
            "upload_ms": summarize(probed["upload_ms"], scale=1.0, digits=1),
            "phone_verdict_in_view": probed["phone_verdict_in_view"]}
