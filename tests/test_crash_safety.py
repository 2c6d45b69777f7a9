"""Kill at the worst moment (SIGKILL a subprocess): during a training, a checkpoint save, an index
update and while adding images to the database. Afterwards the previous checkpoints and index
load, the next start recovers with no manual step, and leftovers are ignored.

Extends tests/test_checkpoints.py (which SIGKILLs a save loop, marked slow) with a fast variant
and the other three moments.
"""
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

from conftest import ROOT, digit_image

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}


def start(script: str, *args) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", script, *map(str, args)], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline().strip()
    assert line == "ready", f"subprocess did not start: {line!r}"
    return proc


def kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL


def wait_for(proc: subprocess.Popen, word: str, timeout: float = 120) -> None:
    """Read the child's stdout until a line containing ``word`` (it prints as it goes)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"subprocess ended before printing {word!r}")
        if word in line:
            return
    raise AssertionError(f"no {word!r} within {timeout}s")


# ----------------------------------------------------------------------------- checkpoint saves

SAVE_LOOP = r"""
import sys
from pathlib import Path
import keras
from cvdemo import checkpoints as ckpt
from cvdemo.models import build_scratch
keras.utils.set_random_seed(int(sys.argv[2]))
model = build_scratch((28, 28, 1), 3)
meta = {"class_names": ["a", "b", "c"], "input_shape": [28, 28, 1]}
print("ready", flush=True)
while True:
    ckpt.save(model, meta, Path(sys.argv[1]), "scratch")
"""


def _probe(model) -> np.ndarray:
    x = np.random.default_rng(0).random((2, 28, 28, 1)).astype(np.float32)
    return np.asarray(model(x, training=False))


@pytest.mark.slow
def test_kill_during_checkpoint_saves_keeps_a_loadable_pair(tmp_path):
    """Two kills at random moments of a save loop; each time a pair loads, leftovers are only
    hidden temp files, list_names sees one checkpoint, and a fresh save still works."""
    import keras

    from cvdemo.models import build_scratch

    keras.utils.set_random_seed(1)
    first = build_scratch((28, 28, 1), 3)
    ckpt.save(first, {"class_names": ["a", "b", "c"], "input_shape": [28, 28, 1]}, tmp_path, "scratch")
    rng = np.random.default_rng(3)
    for attempt in range(2):
        proc = start(SAVE_LOOP, tmp_path, 10 + attempt)
        time.sleep(float(rng.uniform(0.3, 2.5)))
        kill(proc)
        loaded = ckpt.load(tmp_path, "scratch")
        assert _probe(loaded.model).shape == (2, 3)
        assert ckpt.list_names(tmp_path) == ["scratch"]
        visible = {p.name for p in tmp_path.iterdir() if not p.name.startswith(".")}
        assert visible <= {"scratch.keras", "scratch.json", "scratch.prev.keras", "scratch.prev.json"}, visible
    ckpt.save(first, {"class_names": ["a", "b", "c"], "input_shape": [28, 28, 1]}, tmp_path, "scratch")
    assert np.allclose(_probe(ckpt.load(tmp_path, "scratch").model), _probe(first), atol=1e-6)


# ----------------------------------------------------------------------------- training

TRAIN = r"""
import sys
from pathlib import Path
from cvdemo.config import TrainConfig
from cvdemo.train import train
print("ready", flush=True)
train(Path(sys.argv[1]), ("scratch",), TrainConfig(epochs=200, batch_size=6, augment=False),
      out=Path(sys.argv[2]), on_event=lambda e: print(e.get("kind"), flush=True))
"""


@pytest.mark.slow     # a kill test, like the others here: -m slow
def test_kill_during_training_leaves_the_old_checkpoint(tiny_checkpoints, tmp_path):
    import shutil

    from conftest import write_digits

    out = tmp_path / "checkpoints"
    shutil.copytree(tiny_checkpoints, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    data = write_digits(tmp_path / "data", per_class=6)
    proc = start(TRAIN, data, out)
    wait_for(proc, "epoch")                     # killed mid-fit, after real epochs ran
    kill(proc)
    after = {p.name: p.read_bytes() for p in out.iterdir() if not p.name.startswith(".")}
    assert after == before                      # nothing half-saved, nothing replaced
    assert set(ckpt.load_all(out)) == {"scratch", "finetuned"}


@pytest.mark.slow
def test_kill_during_an_app_training_leaves_no_model_set(tiny_checkpoints, tmp_path):
    """The Service trains into runs/.<id>.partial and renames when done: a kill leaves a hidden
    folder that the next start ignores."""
    script = r"""
import sys
from pathlib import Path
from cvdemo.config import TrainConfig
from cvdemo.service import Service
s = Service(checkpoints=Path(sys.argv[1]), runs=Path(sys.argv[2]), warm=False)
job = s.start_training(Path(sys.argv[3]), ("scratch",), TrainConfig(epochs=200, batch_size=6, augment=False))
print("ready", flush=True)
while not any(e.get("kind") == "epoch" for e in job.events):
    job.done.wait(0.1)
print("epoch", flush=True)
job.done.wait()
"""
    from cvdemo.service import Service

    from conftest import write_digits

    runs = tmp_path / "runs"
    proc = start(script, tiny_checkpoints, runs, write_digits(tmp_path / "data", per_class=6))
    wait_for(proc, "epoch")
    kill(proc)
    assert not runs.exists() or [p.name for p in runs.iterdir() if not p.name.startswith(".")] == []
    service = Service(checkpoints=tiny_checkpoints, runs=runs, warm=False)
    assert [s for _, s in service.available_sets()] == ["shipped"]
    assert set(service.model_set().models) == {"scratch", "finetuned"}


# ----------------------------------------------------------------------------- the retrieval index

INDEX_LOOP = r"""
import sys, shutil
from pathlib import Path
from cvdemo.retrieval import FeatureIndex
db = Path(sys.argv[1]); pool = sorted(Path(sys.argv[2]).glob("*.png"))
index = FeatureIndex(db, "pixels")
index.update()
print("ready", flush=True)
i = 0
while True:                      # add one file, update; remove it, update: the index keeps changing
    src = pool[i % len(pool)]; i += 1
    target = db / "9" / f"churn_{i}.png"
    target.parent.mkdir(exist_ok=True)
    shutil.copyfile(src, target)
    index.update()
    target.unlink()
    index.update()
"""


@pytest.fixture
def database(tmp_path) -> Path:
    from test_retrieval import make_database

    return make_database(tmp_path / "db", per_class=3, classes=(0, 1, 7))


@pytest.mark.slow     # a kill test, like the others here: -m slow
def test_kill_during_index_updates_keeps_a_usable_index(database, tmp_path):
    from cvdemo.retrieval import FeatureIndex

    pool = tmp_path / "pool"
    pool.mkdir()
    for i in range(6):
        digit_image(9, i).save(pool / f"p{i}.png")
    rng = np.random.default_rng(5)
    for _attempt in range(3):
        proc = start(INDEX_LOOP, database, pool)
        time.sleep(float(rng.uniform(0.2, 1.5)))
        kill(proc)
        index = FeatureIndex(database, "pixels")
        manifest, features = index._read()          # what is on disk, before any repair
        assert manifest is not None, "the on-disk index was left unreadable"
        assert features.shape[0] == len(manifest["entries"])
        on_disk = {e["path"] for e in manifest["entries"]}
        assert {p for p in on_disk if not p.startswith("9/")} == \
            {f"{d}/{p.name}" for d in ("0", "1", "7") for p in (database / d).iterdir()}
        _, hits = index.search(database / "7" / "7_1.png", k=3)     # the next start recovers alone
        assert hits[0].path == database / "7" / "7_1.png" and hits[0].distance < 1e-3
        snap = index.snapshot                       # a churn file cut mid-copy is skipped and listed
        assert {e.path for e in snap.entries} | {e.path for e, _ in snap.skipped} == {
            p.relative_to(database).as_posix() for p in database.rglob("*.*")
            if ".index" not in p.parts and not p.name.startswith(".")}
        referenced = json.loads((database / ".index" / "pixels.json").read_text())["features_file"]
        assert np.load(database / ".index" / referenced).shape[0] == len(index.snapshot)


# ----------------------------------------------------------------------------- adding to the database

ADD_LOOP = r"""
import itertools, sys
from pathlib import Path
from PIL import Image
from cvdemo.service import Service
db, pool, made = Path(sys.argv[1]), sorted(Path(sys.argv[2]).glob("*.png")), Path(sys.argv[2]) / "made"
made.mkdir(exist_ok=True)
s = Service(checkpoints=Path(sys.argv[3]), warm=False, database=db, retrieval_extractor="pixels")
s.retrieval_index().update()
print("ready", flush=True)
for i in itertools.count(int(sys.argv[4])):       # new content every time: never a duplicate
    im = Image.open(pool[i % len(pool)]).convert("L")
    im.putpixel((i % 600, (i // 600) % 600), 128)
    src = made / f"five_{i:05d}.png"
    im.save(src)
    s.add_to_database([src], label="5")
"""


@pytest.mark.slow     # a kill test, like the others here: -m slow
def test_kill_while_adding_images_leaves_whole_files_and_index(database, tmp_path):
    from cvdemo.images import decode
    from cvdemo.service import Service

    pool = tmp_path / "pool"
    pool.mkdir()
    for i in range(8):
        digit_image(5, i).resize((600, 600)).save(pool / f"five_{i:02d}.png")
    rng = np.random.default_rng(9)
    for attempt in range(3):
        proc = start(ADD_LOOP, database, pool, tmp_path / "no-checkpoints", attempt * 100_000)
        time.sleep(float(rng.uniform(0.2, 1.5)))
        kill(proc)
        added = [p for p in (database / "5").iterdir() if not p.name.startswith(".")] \
            if (database / "5").exists() else []
        for path in added:                         # every visible file is whole: its source's bytes
            assert path.read_bytes() == (pool / "made" / path.name).read_bytes(), path.name
            decode(path)
        service = Service(checkpoints=tmp_path / "no-checkpoints", warm=False, database=database,
                          retrieval_extractor="pixels")
        info = service.database_info()             # the next start indexes what is there
        assert info["classes"].get("5", 0) == len(added) and not info["skipped"]
    assert len(added) >= 1, "the kills all came before the first add; sleep longer"
    leftovers = [p.name for p in (database / "5").iterdir() if p.name.startswith(".")]
    assert all(p.startswith(".add-") for p in leftovers), leftovers      # ignored by the scan


def test_added_files_never_overwrite_and_stay_inside(database, tmp_path):
    """Duplicate names get a suffix, identical content is skipped, hostile names are flattened."""
    from cvdemo.retrieval import add_files

    src = tmp_path / "src"
    nested = src / "a" / "b"
    nested.mkdir(parents=True)
    names = ["..png", "...png", "ünïcødé ✍ digit.png", "x" * 250 + ".png", "7_0.jpg", "-.png", "con.png"]
    for i, name in enumerate(names):
        digit_image(7, 40 + i).save(nested / name, format="JPEG" if name.endswith(".jpg") else "PNG")
    before = {p: p.read_bytes() for p in database.rglob("*") if p.is_file()}
    report = add_files(database, [nested / n for n in names] + [nested / "7_0.jpg"], label="7")
    assert len(report.added) == len(names)
    assert report.skipped == [("7_0.jpg", "the same image is already in the database")]
    for path in report.added:
        assert path.parent == database / "7" and not path.name.startswith(".")
        assert len(path.name) <= 70 and path.name.isascii()
    assert all(p.read_bytes() == data for p, data in before.items())           # nothing overwritten
    assert (database / "7" / "7_0.jpg").exists() and any(p.name.startswith("7_0-") for p in report.added)
    for evil in ("../..", "/", "..", "./."):
        with pytest.raises(ValueError):
            add_files(database, [nested / names[0]], label=evil)
