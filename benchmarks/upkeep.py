"""Benchmark section ``upkeep``: the disk and memory bounds over many visitors. ``python app.py``
runs with every folder it writes inside this run's work folder (TMPDIR, GRADIO_TEMP_DIR,
CVDEMO_RUNS, CVDEMO_CACHE_DIR) and a small ``CVDEMO_CACHE_MB`` and ``CVDEMO_MAX_RUNS``, while
``upkeep_probe.py`` uploads thousands of distinct images and then runs many trainings. The bench
samples the bytes under those folders, the number of runs and the app's resident memory twice a
second: the figures are their maxima against the bounds."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from cvdemo import config
from cvdemo.housekeeping import tree_size

from .classroom import rss_mb
from .options import BenchError, BenchOptions, Tick
from .serving import HERE, _tail, app_process, wait_until_serving

CACHE_MB, MAX_RUNS = 32, 5
WARM_S = 20            # the memory baseline: this long into the uploads
SETS_KEPT = 4          # Service(max_sets=4): model sets kept loaded


def _wait_for_warm_up(log: Path, proc, timeout_s: float = 600) -> None:
    deadline = time.time() + timeout_s
    while "warmed up in the background" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.time() > deadline:
            raise BenchError(f"app.py never finished warming up:\n{_tail(log)}")
        time.sleep(1.0)


def bench_upkeep(opts: BenchOptions, workdir: Path, tick: Tick) -> dict:
    area = workdir / "written"
    folders = {name: area / name for name in ("tmp", "gradio", "runs", "cache")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    settings = dict(TMPDIR=str(folders["tmp"]), GRADIO_TEMP_DIR=str(folders["gradio"]), CVDEMO_RUNS=str(folders["runs"]),
                    CVDEMO_CACHE_DIR=str(folders["cache"]), CVDEMO_CACHE_MB=str(CACHE_MB), CVDEMO_MAX_RUNS=str(MAX_RUNS),
                    CVDEMO_HOLD_S="10", CVDEMO_HOUSEKEEPING_S="2", CVDEMO_LITERT_CONVERT="off")
    saved = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)          # app_process passes this process's environment on
    try:
        with app_process(opts, workdir, "app-upkeep") as (url, proc, log, _):
            wait_until_serving(url, proc, log)
            _wait_for_warm_up(log, proc)       # its background analysis would count as growth
            tick("app started")
            err = workdir / "upkeep.err"
            command = [sys.executable, str(HERE / "upkeep_probe.py"), "--url", url, "--uploads", str(opts.upkeep_uploads),
                       "--runs", str(opts.upkeep_runs)]
            samples, warm_rss = [], None
            with open(err, "wb") as stderr:
                probe = subprocess.Popen(command, cwd=HERE, stdout=subprocess.PIPE, stderr=stderr,
                                         env=dict(os.environ, PYTHONPATH=str(config.ROOT)))
                started = time.time()
                while probe.poll() is None:
                    if proc.poll() is not None:
                        raise BenchError(f"app.py exited with code {proc.returncode}:\n{_tail(log)}")
                    rss = rss_mb(proc.pid)
                    if warm_rss is None and time.time() - started > WARM_S:
                        warm_rss = rss            # after the first uploads: models, caches and queues warm
                    samples.append((time.time(), tree_size(area)[0], len(list(folders["runs"].glob("run-*"))), rss))
                    time.sleep(0.5)
                out = probe.stdout.read()
            if probe.returncode != 0:
                raise BenchError(f"upkeep_probe: {_tail(err, 4)}")
            probed = json.loads(out)
            time.sleep(3)                           # one more sweep after the last run
            final = (tree_size(area)[0], len(list(folders["runs"].glob("run-*"))), rss_mb(proc.pid))
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    tick("uploads and runs")
    peak_bytes = max(s[1] for s in samples)

    def rss_at(moment: float) -> float | None:
        before = [s[3] for s in samples if s[0] <= moment and s[3] is not None]
        return before[-1] if before else None

    after_runs = [rss_at(t) for t in probed["runs_done_at"]]
    uploads_rss = rss_at(probed["uploads_done_at"])
    # the models of at most Service.max_sets model sets stay loaded: memory may climb for that
    # many runs, and from then on it must stay flat
    settled = after_runs[SETS_KEPT - 1] if len(after_runs) > SETS_KEPT else None
    return {"uploads": probed["uploads"], "runs": probed["runs"], "errors": probed["n_errors"],
            "first_errors": probed["errors"][:3], "cache_mb_bound": CACHE_MB, "max_runs_bound": MAX_RUNS,
            "disk_mb_peak": round(peak_bytes / 2**20, 1), "disk_mb_end": round(final[0] / 2**20, 1),
            "disk_within_bound": peak_bytes <= CACHE_MB * 2**20, "runs_peak": max(s[2] for s in samples),
            "runs_end": final[1], "rss_mb_warm": warm_rss, "rss_mb_end": final[2],
            "rss_mb_after_uploads": uploads_rss, "rss_mb_after_each_run": after_runs,
            "rss_growth_uploads_mb": round(uploads_rss - warm_rss, 1) if warm_rss and uploads_rss else None,
            "rss_growth_runs_after_settling_mb": round(final[2] - settled, 1) if settled and final[2] else None,
            "seconds": round(samples[-1][0] - samples[0][0], 1) if samples else None}
