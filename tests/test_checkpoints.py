"""Checkpoints: round trip, atomic writes, torn pairs, corrupt metadata, kills mid-save."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cvdemo import checkpoints as ckpt
from cvdemo.checkpoints import CheckpointError

ROOT = Path(__file__).resolve().parent.parent
META = {"class_names": ["0_digits", "1_digits", "2_digits"], "input_shape": [28, 28, 1],
        "profile": "digits", "history": {"loss": [1.0, 0.5]}, "metrics": {"accuracy": 0.9},
        "data": {"val_files": ["0_digits/a.jpg"]}, "val_accuracy": 0.9}
X = np.random.default_rng(0).random((4, 28, 28, 1)).astype(np.float32)


def _model(seed: int):
    import keras

    from cvdemo.models import build_scratch

    keras.utils.set_random_seed(seed)
    return build_scratch((28, 28, 1), 3)


def _predict(model):
    return np.asarray(model(X, training=False))


@pytest.fixture(scope="module")
def models():
    return _model(1), _model(2)


def test_round_trip(tmp_path, models):
    first, _ = models
    path = ckpt.save(first, META, tmp_path, "scratch")
    assert path == tmp_path / "scratch.keras"
    loaded = ckpt.load(tmp_path, "scratch")
    assert np.allclose(_predict(loaded.model), _predict(first), atol=1e-6)
    meta = loaded.meta
    for key in ("class_names", "input_shape", "profile", "history", "metrics", "data", "model_sha256",
                "saved_at", "library_versions", "preprocessing_version", "name", "model_file"):
        assert key in meta, key
    assert meta["data"]["val_files"] == ["0_digits/a.jpg"]
    assert loaded.class_names == META["class_names"] and loaded.input_shape == (28, 28, 1)
    assert loaded.profile == "digits"
    assert "keras" in meta["library_versions"]
    assert ckpt.read_meta(tmp_path, "scratch") == meta
    assert ckpt.list_names(tmp_path) == ["scratch"]
    assert set(ckpt.load_all(tmp_path)) == {"scratch"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temp files left behind"
    # readable by an app server running as another user (mkstemp alone makes 0600)
    assert {oct(p.stat().st_mode & 0o777) for p in tmp_path.iterdir()} == {"0o644"}


def test_second_save_keeps_the_previous_pair(tmp_path, models):
    first, second = models
    ckpt.save(first, META, tmp_path, "scratch")
    ckpt.save(second, {**META, "val_accuracy": 0.95}, tmp_path, "scratch")
    assert np.allclose(_predict(ckpt.load(tmp_path, "scratch").model), _predict(second), atol=1e-6)
    prev = ckpt.load(tmp_path, "scratch.prev")
    assert np.allclose(_predict(prev.model), _predict(first), atol=1e-6)
    assert ckpt.list_names(tmp_path) == ["scratch"]


def test_crash_mid_save_leaves_the_previous_checkpoint(tmp_path, models, monkeypatch):
    first, second = models
    ckpt.save(first, META, tmp_path, "scratch")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def crash(self, *args, **kwargs):
        Path(args[0]).write_bytes(b"PK\x03\x04 half a zip")     # a partial write, then the crash
        raise OSError("disk full")

    monkeypatch.setattr(type(second), "save", crash)
    with pytest.raises(OSError):
        ckpt.save(second, META, tmp_path, "scratch")
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert np.allclose(_predict(ckpt.load(tmp_path, "scratch").model), _predict(first), atol=1e-6)


def test_crash_between_model_and_metadata_falls_back_to_prev(tmp_path, models, monkeypatch):
    """New .keras swapped in, then the process dies before the new .json: a torn pair."""
    first, second = models
    ckpt.save(first, META, tmp_path, "scratch")
    ckpt.save(first, META, tmp_path, "scratch")            # so a .prev pair exists too

    def die(*args, **kwargs):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(ckpt, "atomic_write_bytes", die)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save(second, META, tmp_path, "scratch")
    monkeypatch.undo()
    loaded = ckpt.load(tmp_path, "scratch")                # new model, old json: hash mismatch
    assert loaded.path.name == "scratch.prev.keras"
    assert np.allclose(_predict(loaded.model), _predict(first), atol=1e-6)
    # and the next save repairs the pair, keeping the good .prev rather than the torn one
    ckpt.save(second, META, tmp_path, "scratch")
    assert ckpt.load(tmp_path, "scratch").path.name == "scratch.keras"
    assert np.allclose(_predict(ckpt.load(tmp_path, "scratch.prev").model), _predict(first), atol=1e-6)


def test_torn_pair_without_prev_is_a_clear_error(tmp_path, models):
    first, second = models
    ckpt.save(first, META, tmp_path, "scratch")
    other = tmp_path / "other"
    ckpt.save(second, META, other, "scratch")
    os.replace(other / "scratch.keras", tmp_path / "scratch.keras")
    with pytest.raises(CheckpointError, match="does not match"):
        ckpt.load(tmp_path, "scratch")


@pytest.mark.parametrize("damage, words", [
    (lambda d: (d / "scratch.json").unlink(), "scratch.json is missing"),
    (lambda d: (d / "scratch.json").write_text("{not json"), "not valid JSON"),
    (lambda d: (d / "scratch.json").write_text(json.dumps({"input_shape": [28, 28, 1]})), "lacks 'class_names'"),
    (lambda d: (d / "scratch.keras").unlink(), "scratch.keras is missing"),
    (lambda d: (d / "scratch.keras").write_bytes(b"garbage"), "does not match"),
])
def test_corrupt_or_missing_pieces(tmp_path, models, damage, words):
    ckpt.save(models[0], META, tmp_path, "scratch")
    damage(tmp_path)
    with pytest.raises(CheckpointError) as err:
        ckpt.load(tmp_path, "scratch")
    assert words in str(err.value)
    assert "\n" not in str(err.value)


def test_corrupt_model_file_with_matching_hash(tmp_path, models):
    """A metadata file that vouches for a broken model: loading still fails clearly."""
    ckpt.save(models[0], META, tmp_path, "scratch")
    (tmp_path / "scratch.keras").write_bytes(b"PK\x03\x04broken")
    meta = json.loads((tmp_path / "scratch.json").read_text())
    meta["model_sha256"] = ckpt.sha256_file(tmp_path / "scratch.keras")
    (tmp_path / "scratch.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="could not be loaded"):
        ckpt.load(tmp_path, "scratch")


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="No checkpoint named 'scratch'"):
        ckpt.load(tmp_path, "scratch")
    assert ckpt.list_names(tmp_path / "nowhere") == []


def test_atomic_write_bytes_never_half_writes(tmp_path, monkeypatch):
    target = tmp_path / "x.json"
    ckpt.atomic_write_bytes(target, b"old")

    def boom(*args):
        raise OSError("crash")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        ckpt.atomic_write_bytes(target, b"new" * 1000)
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


SAVE_FOREVER = r"""
import sys, time
from pathlib import Path
import keras
from cvdemo import checkpoints as ckpt
from cvdemo.models import build_scratch
keras.utils.set_random_seed(5)
model = build_scratch((28, 28, 1), 3)
meta = {"class_names": ["a", "b", "c"], "input_shape": [28, 28, 1]}
out = Path(sys.argv[1])
print("ready", flush=True)
while True:
    ckpt.save(model, meta, out, "scratch")
"""


@pytest.mark.slow
def test_kill_during_repeated_saves(tmp_path, models):
    """SIGKILL a process that saves in a loop, at many moments: a loadable pair always remains."""
    ckpt.save(models[0], META, tmp_path, "scratch")
    rng = np.random.default_rng(0)
    for _attempt in range(4):
        proc = subprocess.Popen([sys.executable, "-c", SAVE_FOREVER, str(tmp_path)], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(float(rng.uniform(0.05, 1.0)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        loaded = ckpt.load(tmp_path, "scratch")
        assert _predict(loaded.model).shape == (4, 3)
