"""The deploy check (``python -m cvdemo doctor``): the front matter against the pins, the network
blocker, a pass on this checkout, and a clear failure on a broken requirement."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from cvdemo import config
from cvdemo.deploy import BLOCKER, check_front_matter, doctor, front_matter, pins

ROOT = config.ROOT


def test_the_front_matter_and_pins_of_this_checkout_agree():
    meta = front_matter(ROOT / "README.md")
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py"
    assert pins(ROOT / "requirements.txt")["gradio"] == meta["sdk_version"]
    assert check_front_matter(ROOT, ROOT / "requirements.txt").ok


def test_a_mismatched_front_matter_or_a_loose_pin_is_reported(tmp_path):
    readme = (ROOT / "README.md").read_text().replace('sdk_version: "6.31.0"', 'sdk_version: "5.0.0"', 1)
    (tmp_path / "README.md").write_text(readme)
    (tmp_path / "app.py").write_text("")
    (tmp_path / "requirements.txt").write_text("gradio==6.31.0\nnumpy>=2\nkeras  # no version\n")
    check = check_front_matter(tmp_path, tmp_path / "requirements.txt")
    assert not check.ok
    assert "sdk_version '5.0.0' is not the pinned gradio==6.31.0" in check.detail
    assert "not pinned with ==: keras, numpy" in check.detail
    (tmp_path / "README.md").write_text("# no front matter\n")
    assert "no front matter" in check_front_matter(tmp_path, tmp_path / "requirements.txt").detail


def test_the_blocker_refuses_the_network_and_records_it_but_not_the_loopback(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    script = ("import socket, urllib.request\n"
              "try:\n    urllib.request.urlopen('http://huggingface.co', timeout=5)\nexcept OSError as e:\n"
              "    print('refused', e)\n"
              "try:\n    socket.create_connection(('93.184.216.34', 80), timeout=5)\nexcept OSError as e:\n"
              "    print('refused', e)\n"
              "server = socket.socket(); server.bind(('127.0.0.1', 0)); server.listen()\n"
              "socket.create_connection(server.getsockname(), timeout=5).close(); print('loopback ok')\n")
    log = tmp_path / "net.log"
    env = {"PYTHONPATH": str(tmp_path), "CVDEMO_DOCTOR_NETLOG": str(log), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.count("refused") == 2 and "loopback ok" in out.stdout, out.stderr
    assert log.read_text().splitlines() == ["resolve huggingface.co", "connect 93.184.216.34:80"]


@pytest.mark.slow    # the README's test command runs the whole deploy check after pytest
def test_the_deploy_check_passes_on_this_checkout():
    """This interpreter (the README's fresh venv in CI) runs app.py offline and answers one request."""
    report = doctor(ROOT, python=sys.executable, say=lambda line: None)
    assert report.ok, json.dumps(report.as_dict(), indent=1)
    assert [c.name for c in report.checks] == ["front matter", "app starts offline", "one request", "no network needed"]
    assert "scratch" in report.checks[2].detail


@pytest.mark.skipif(shutil.which("python3.11") is None, reason="needs python3.11 for the fresh venv")
def test_a_broken_requirement_fails_clearly_and_stops_there(tmp_path):
    broken = tmp_path / "requirements.txt"
    broken.write_text("gradio==6.31.0\ncvdemo-no-such-package==9.9.9\n")
    out = subprocess.run([sys.executable, "-m", "cvdemo", "doctor", "--requirements", str(broken), "--json",
                          "--venv", str(tmp_path / "venv")], capture_output=True, text=True, timeout=600)
    assert out.returncode == 1
    report = json.loads(out.stdout)
    assert [c["name"] for c in report["checks"]] == ["front matter", "fresh venv"]
    assert "pip could not install requirements.txt" in report["checks"][1]["detail"]
    assert "cvdemo-no-such-package" in report["checks"][1]["detail"]


@pytest.mark.slow    # minutes: pip installs TensorFlow and Gradio into a new venv
def test_the_full_deploy_check_builds_a_fresh_venv_and_passes(tmp_path):
    out = subprocess.run([sys.executable, "-m", "cvdemo", "doctor", "--json", "--venv", str(tmp_path / "venv")],
                         capture_output=True, text=True, timeout=1800)
    report = json.loads(out.stdout)
    assert out.returncode == 0 and report["ok"], out.stdout + out.stderr[-2000:]
    assert "fresh venv" in [c["name"] for c in report["checks"]]
