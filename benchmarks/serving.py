"""Benchmark section on the app: ``python app.py`` in a subprocess, timed over HTTP through
``http_probe.py`` (which uses ``gradio_client``) in another: cold start, latency, concurrency, memory."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from cvdemo import config

from .options import BenchError, BenchOptions, Tick, summarize

HERE = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def memory_mb(pid: int, field: str = "VmHWM") -> float | None:
    """A live process's memory from /proc in MB: peak resident (VmHWM) or resident now (VmRSS);
    None where there is no /proc."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def peak_rss_mb(pid: int) -> float | None:
    """Peak resident memory (VmHWM) of a live process, in MB."""
    return memory_mb(pid, "VmHWM")


def stop(proc: subprocess.Popen) -> None:
    """Terminate a child, killing it when it does not exit within 20 s."""
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def _probe(url: str, image: Path, app: subprocess.Popen, log: Path, workdir: Path, requests: int = 0,
           clients: int = 0, per_client: int = 0, timeout: float = 300) -> dict:
    """Run ``http_probe.py`` against the app; its JSON document (see that script).

    Raises BenchError with the app's log when the app exits or never answers.
    """
    out, err = workdir / "probe.json", workdir / "probe.err"
    command = [sys.executable, str(HERE / "http_probe.py"), "--url", url, "--image",
               str(image), "--timeout", str(timeout), "--requests", str(requests), "--clients", str(clients),
               "--per-client", str(per_client)]
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        probe = subprocess.Popen(command, cwd=config.ROOT, stdout=stdout, stderr=stderr)
    try:
        while probe.poll() is None:
            if app.poll() is not None:
                raise BenchError(f"app.py exited with code {app.returncode}:\n{_tail(log)}")
            time.sleep(0.1)
    finally:
        if probe.poll() is None:
            probe.kill()
            probe.wait()
    if probe.returncode != 0:
        raise BenchError(f"{_tail(err, 3)}\n{_tail(log)}")
    return json.loads(out.read_text())


def _concurrent(probed: dict, clients: int, per_client: int) -> dict:
    latencies, errors, wall = probed["latencies"], probed["errors"], probed["wall"]
    result = summarize(latencies) if latencies else {"p50": None, "p95": None}
    result.update({"errors": len(errors), "clients": clients, "requests": clients * per_client,
                   "throughput_rps": round(len(latencies) / wall, 2) if wall else None})
    if errors:
        result["first_error"] = errors[0][:300]
    return result


@contextmanager
def app_process(opts: BenchOptions, workdir: Path, name: str = "app"):
    """``python app.py`` on a free port, serving ``opts.checkpoints``: yields (url, process, log
    path, start time) and stops it afterwards."""
    port = _free_port()
    env = dict(os.environ, GRADIO_SERVER_PORT=str(port), GRADIO_SERVER_NAME="127.0.0.1",
               CVDEMO_CHECKPOINTS=str(Path(opts.checkpoints).resolve()), GRADIO_ANALYTICS_ENABLED="False",
               HF_HUB_OFFLINE="1", TF_CPP_MIN_LOG_LEVEL="2")
    log = workdir / f"{name}.log"
    with open(log, "wb") as out:
        started = time.time()
        proc = subprocess.Popen([sys.executable, str(config.ROOT / "app.py")], cwd=config.ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        yield f"http://127.0.0.1:{port}/", proc, log, started
    finally:
        stop(proc)


def wait_until_serving(url: str, proc: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    """Block until the app answers its page; BenchError with its log when it exits or never does."""
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"app.py exited with code {proc.returncode}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise BenchError(f"app.py did not answer within {timeout:.0f} s:\n{_tail(log)}")


def bench_app(opts: BenchOptions, image: Path, workdir: Path, tick: Tick) -> dict:
    """``python app.py`` in a subprocess: time to the first answered /classify, HTTP latency
    (sequential and concurrent clients, on the last start) and the process's peak RSS."""
    colds, rss, result = [], [], {}
    for attempt in range(opts.cold_starts):
        last = attempt == opts.cold_starts - 1
        with app_process(opts, workdir, f"app-{attempt}") as (url, proc, log, started):
            probed = _probe(url, image, proc, log, workdir,
                            requests=opts.http_requests if last else 0,
                            clients=opts.concurrent_clients if last else 0, per_client=opts.requests_per_client)
            colds.append(probed["first_answer_at"] - started)
            tick("app started")
            if last:
                result["http"] = summarize(probed["sequential"])
                tick("HTTP latency")
                result[f"concurrent{opts.concurrent_clients}"] = _concurrent(
                    probed["concurrent"], opts.concurrent_clients, opts.requests_per_client)
                tick("concurrent clients")
            rss.append(peak_rss_mb(proc.pid))
    cold = summarize(colds, scale=1.0, digits=2)
    rss_known = [r for r in rss if r is not None]
    result["cold_start"] = cold
    result["rss_mb"] = max(rss_known) if rss_known else None
    return result
