"""Benchmark section ``classroom``: ``python app.py`` and the no-op Gradio app (``noop_app.py``)
side by side in one run, loaded by ``classroom_probe.py`` in another process: the REST API (one
client, then many for a while), ``gradio_client`` ``/classify`` on both apps, and the classroom
scenario (students drawing in bursts through ``/classify_drawing_live``) on both. Every Gradio
figure comes with the no-op's from the same run and their ratio; the app's resident memory is
read after the first load (warm) and at the end."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from cvdemo import config

from .options import BenchError, BenchOptions, Tick
from .serving import HERE, _free_port, _tail, app_process, memory_mb, stop, wait_until_serving


def rss_mb(pid: int) -> float | None:
    """Resident memory now (VmRSS) of a live process, in MB."""
    return memory_mb(pid, "VmRSS")


@contextmanager
def noop_process(workdir: Path):
    """``benchmarks/noop_app.py`` on a free port: yields (url, process, log)."""
    port = _free_port()
    env = dict(os.environ, GRADIO_SERVER_PORT=str(port), GRADIO_SERVER_NAME="127.0.0.1", GRADIO_ANALYTICS_ENABLED="False")
    log = workdir / "noop.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(HERE / "noop_app.py")], cwd=config.ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        yield f"http://127.0.0.1:{port}/", proc, log
    finally:
        stop(proc)


def _probe(url: str, mode: str, workdir: Path, *args: str) -> dict:
    err = workdir / f"classroom-{mode}.err"
    with open(err, "wb") as stderr:
        done = subprocess.run([sys.executable, str(HERE / "classroom_probe.py"), "--url", url, "--mode", mode, *args],
                              cwd=HERE, stdout=subprocess.PIPE, stderr=stderr, timeout=1200,
                              env=dict(os.environ, PYTHONPATH=str(config.ROOT)))
    if done.returncode != 0:
        raise BenchError(f"classroom_probe {mode}: {_tail(err, 4)}")
    return json.loads(done.stdout)


def _side_by_side(app: dict, noop: dict) -> dict:
    ratio = (round(app["throughput_rps"] / noop["throughput_rps"], 2)
             if app.get("throughput_rps") and noop.get("throughput_rps") else None)
    return {"app": app, "noop": noop, "throughput_ratio": ratio}


def bench_classroom(opts: BenchOptions, workdir: Path, tick: Tick) -> dict:
    clients, seconds = str(opts.classroom_clients), str(opts.classroom_seconds)
    with app_process(opts, workdir, "app-classroom") as (url, proc, log, _), noop_process(workdir) as (noop, nproc, nlog):
        wait_until_serving(url, proc, log)
        wait_until_serving(noop, nproc, nlog)
        tick("apps started")
        result = {"rest": _probe(url, "rest", workdir, "--clients", clients, "--seconds", seconds,
                                 "--sequential", str(opts.http_requests))}
        result["rss_mb_warm"] = rss_mb(proc.pid)
        tick("REST")
        gradio = ["--clients", clients, "--per-client", str(opts.requests_per_client)]
        result["gradio"] = _side_by_side(_probe(url, "gradio", workdir, *gradio), _probe(noop, "gradio", workdir, *gradio))
        tick("gradio_client")
        scenario = ["--clients", clients, "--seconds", seconds]
        result["classroom"] = _side_by_side(_probe(url, "classroom", workdir, *scenario),
                                            _probe(noop, "classroom", workdir, *scenario))
        tick("classroom scenario")
        result["rss_mb_end"] = rss_mb(proc.pid)
        if proc.poll() is not None:
            raise BenchError(f"app.py exited with code {proc.returncode}:\n{_tail(log)}")
    if result["rss_mb_warm"] is not None and result["rss_mb_end"] is not None:
        result["rss_growth_mb"] = round(result["rss_mb_end"] - result["rss_mb_warm"], 1)
    return result
