"""The deploy check (``python -m cvdemo doctor``): build what a Hugging Face Space builds and
see it serve, with the network blocked, before a Space has to.

Steps, each a :class:`Check`: the README's front matter against the pinned requirements; a fresh
Python venv with ``pip install -r requirements.txt`` (or a given interpreter); ``app.py`` started
from the repository with every connection off the loopback refused (a ``sitecustomize`` that
records what was tried); its page and one REST classification. Knows nothing about Gradio or
Keras: the app runs in a child process.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from . import config

PIN = re.compile(r"^\s*([A-Za-z0-9_.\-\[\]]+)\s*==\s*([^\s;#]+)")

# Loaded first by the app's interpreter: a connection (or name lookup) off the loopback fails as
# it would on a machine without network, and is written to CVDEMO_DOCTOR_NETLOG.
BLOCKER = '''
import os, socket
_log = os.environ.get("CVDEMO_DOCTOR_NETLOG")
_connect, _connect_ex, _getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo
def _local(host):
    host = host.decode() if isinstance(host, bytes) else str(host)
    return host in ("localhost", "::1", "0.0.0.0", "") or host.startswith("127.")
def _note(what):
    if _log:
        with open(_log, "a") as f:
            f.write(what + "\\n")
def _guard(sock, address):
    if sock.family in (socket.AF_INET, socket.AF_INET6) and not _local(address[0]):
        _note(f"connect {address[0]}:{address[1]}")
        raise OSError(101, "Network is unreachable (blocked by cvdemo doctor)")
def connect(self, address):
    _guard(self, address)
    return _connect(self, address)
def connect_ex(self, address):
    _guard(self, address)
    return _connect_ex(self, address)
def _numeric(host):
    import ipaddress
    try:
        ipaddress.ip_address(host.decode() if isinstance(host, bytes) else host)
        return True
    except ValueError:
        return False
def getaddrinfo(host, *args, **kwargs):
    if host is not None and not _local(host) and not _numeric(host):   # an address needs no lookup
        _note(f"resolve {host}")
        raise socket.gaierror(socket.EAI_NONAME, "Name resolution blocked by cvdemo doctor")
    return _getaddrinfo(host, *args, **kwargs)
socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo
'''


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    seconds: float = 0.0


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def as_dict(self) -> dict:
        return {"ok": self.ok, "checks": [asdict(c) for c in self.checks]}


def front_matter(readme: Path) -> dict[str, str]:
    """The flat ``key: value`` block between the README's leading ``---`` lines (a Space's config)."""
    lines = Path(readme).read_text(encoding="utf-8").splitlines()
    if not lines or lines[0].strip() != "---":
        return {}
    found = {}
    for line in lines[1:]:
        if line.strip() == "---":
            return found
        key, sep, value = line.partition(":")
        if sep and not line.startswith((" ", "#")):
            found[key.strip()] = value.split(" #")[0].strip().strip("\"'")
    return {}                                     # never closed: not front matter


def pins(requirements: Path) -> dict[str, str]:
    """``{package (lower case): version}`` of the ``==`` lines; a line that pins nothing is ``""``."""
    found = {}
    for line in Path(requirements).read_text(encoding="utf-8").splitlines():
        text = line.split("#")[0].strip()
        if not text or text.startswith("-"):
            continue
        match = PIN.match(text)
        found[(match.group(1) if match else re.split(r"[<>=!~ \[]", text)[0]).lower()] = match.group(2) if match else ""
    return found


def check_front_matter(root: Path, requirements: Path) -> Check:
    meta, pinned = front_matter(root / "README.md"), pins(requirements)
    problems = []
    if not meta:
        return Check("front matter", False, "README.md has no front matter (--- ... --- at the top): a Space needs it")
    if meta.get("sdk") != "gradio":
        problems.append(f"sdk is {meta.get('sdk')!r}, not 'gradio'")
    if meta.get("sdk_version") != pinned.get("gradio"):
        problems.append(f"sdk_version {meta.get('sdk_version')!r} is not the pinned gradio=={pinned.get('gradio')}")
    if meta.get("python_version") != f"{sys.version_info.major}.{sys.version_info.minor}":
        problems.append(f"python_version {meta.get('python_version')!r} is not this Python "
                        f"({sys.version_info.major}.{sys.version_info.minor})")
    if not (root / meta.get("app_file", "app.py")).is_file():
        problems.append(f"app_file {meta.get('app_file')!r} does not exist")
    loose = sorted(name for name, version in pinned.items() if not version)
    if loose:
        problems.append(f"not pinned with ==: {', '.join(loose)} (a Space would install whatever is newest)")
    return Check("front matter", not problems, "; ".join(problems) or
                 f"sdk gradio {meta['sdk_version']} = the pinned gradio, Python {meta['python_version']}, "
                 f"{len(pinned)} requirements pinned")


def build_venv(requirements: Path, where: Path, python: str = "python3.11",
               say: Callable[[str], None] = print) -> tuple[Check, Path | None]:
    """A fresh venv at ``where`` with ``requirements`` installed; (the check, its python or None)."""
    started = time.perf_counter()
    if shutil.which(python) is None and not Path(python).is_file():
        return Check("fresh venv", False, f"{python} is not installed (a Space runs Python 3.11)"), None
    made = subprocess.run([python, "-m", "venv", str(where)], capture_output=True, text=True)
    if made.returncode != 0:
        return Check("fresh venv", False, f"{python} -m venv failed: {_last_line(made.stderr)}"), None
    venv_python = where / "bin" / "python"
    say(f"installing {requirements.name} into a fresh venv (minutes)")
    installed = subprocess.run([str(venv_python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                                "-r", str(requirements)], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if installed.returncode != 0:
        return Check("fresh venv", False, f"pip could not install {requirements.name}: "
                     f"{_last_line(installed.stderr or installed.stdout)}", seconds), None
    return Check("fresh venv", True, f"pip installed {requirements.name} into {where}", seconds), venv_python


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip() and "WARNING" not in line]
    return lines[-1] if lines else "no output"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_offline(python: Path | str, root: Path, probe: Path, timeout_s: float = 240.0,
                  say: Callable[[str], None] = print) -> list[Check]:
    """Start ``root/app.py`` under ``python`` with the network blocked; check its page, one REST
    classification of ``probe`` and that nothing tried to reach the network."""
    work = Path(tempfile.mkdtemp(prefix="cvdemo-doctor-"))
    (work / "sitecustomize.py").write_text(BLOCKER)
    netlog, port = work / "network.log", _free_port()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("CVDEMO_", "GRADIO_", "HF_", "PYTHON"))}      # as a Space would start it
    env.update(PYTHONPATH=str(work), CVDEMO_DOCTOR_NETLOG=str(netlog), GRADIO_SERVER_NAME="127.0.0.1",
               GRADIO_SERVER_PORT=str(port), GRADIO_TEMP_DIR=str(work / "gradio"),
               CVDEMO_LITERT_CACHE=str(work / "litert"), PYTHONUNBUFFERED="1")
    log = work / "app.log"
    started, url = time.perf_counter(), f"http://127.0.0.1:{port}"
    checks = []
    with open(log, "w") as out:
        app = subprocess.Popen([str(python), "app.py"], cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        say(f"starting app.py with the network blocked on {url}")
        page = _wait_for_page(url, app, timeout_s)
        seconds = time.perf_counter() - started
        if page is None:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            why = f"exited with {app.returncode}" if app.poll() is not None else f"did not answer in {timeout_s:.0f} s"
            checks.append(Check("app starts offline", False, f"app.py {why}: {tail[0]}", seconds))
            return checks
        checks.append(Check("app starts offline", True, f"the page answered after {seconds:.1f} s", seconds))
        checks.append(_classify_once(url, probe))
    finally:
        app.terminate()
        try:
            app.wait(20)
        except subprocess.TimeoutExpired:
            app.kill()
        tried = sorted(set(netlog.read_text().splitlines())) if netlog.exists() else []
        checks.append(Check("no network needed", not tried, "nothing tried to reach the network" if not tried
                            else f"tried to reach the network (blocked): {', '.join(tried[:5])}"))
        shutil.rmtree(work, ignore_errors=True)
    return checks


def _wait_for_page(url: str, app: subprocess.Popen, timeout_s: float) -> str | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and app.poll() is None:
        try:
            with urllib.request.urlopen(url + "/", timeout=5) as answer:
                return answer.read().decode("utf-8", "replace")
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(1.0)
    return None


def _classify_once(url: str, probe: Path) -> Check:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{probe.name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + probe.read_bytes() + \
        f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(url + "/api/v1/classify", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            models = json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return Check("one request", False, f"/api/v1/classify answered {err.code}: {err.read()[:200]!r}")
    except (urllib.error.URLError, ValueError, TimeoutError) as err:
        return Check("one request", False, f"/api/v1/classify failed: {err}")
    seconds = time.perf_counter() - started
    said = ", ".join(f"{name} {answer['label']}" for name, answer in models.items())
    return Check("one request", bool(models), f"{probe.parent.name}/{probe.name}: {said}", seconds)


def probe_image(root: Path) -> Path:
    """A query image of the repository (query_images/<class>/...), for the one request."""
    found = sorted(p for p in (root / "query_images").rglob("*")
                   if p.suffix.lower() in config.IMAGE_EXTENSIONS)
    if not found:
        raise FileNotFoundError(f"no query image under {root / 'query_images'}")
    return found[0]


def doctor(root: Path = config.ROOT, requirements: Path | None = None, python: str | None = None,
           venv: Path | None = None, say: Callable[[str], None] = print) -> Report:
    """Every check in order; a failed step stops the steps that need it."""
    root = Path(root)
    requirements = Path(requirements) if requirements else root / "requirements.txt"
    report = Report([check_front_matter(root, requirements)])
    say(f"front matter: {'ok' if report.checks[0].ok else report.checks[0].detail}")
    scratch = Path(tempfile.mkdtemp(prefix="cvdemo-doctor-venv-")) if python is None and venv is None else None
    try:
        if python is None:
            check, python = build_venv(requirements, Path(venv) if venv else scratch / "venv", say=say)
            report.checks.append(check)
            say(f"fresh venv: {'ok' if check.ok else check.detail}")
            if python is None:
                return report
        report.checks += serve_offline(python, root, probe_image(root), say=say)
        return report
    finally:
        if scratch is not None:          # a venv of its own: gone with the check
            shutil.rmtree(scratch, ignore_errors=True)
