"""Teaching: the per-session example store, class names, widening the head, and a tiny set
taught a new class through the package, the service and the CLI."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cvdemo.config import TeachConfig
from cvdemo.teaching import ExampleError, ExampleStore, check_examples, class_name, widen

from conftest import write_digits

KNOWN = ["0_digits", "1_digits", "2_digits"]


def _picture(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (40, 40), dtype=np.uint8))


def _seen(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((28, 28, 1)).astype(np.float32)


def test_class_names_match_known_classes_and_refuse_unsafe_ones():
    assert class_name("2", KNOWN) == "2_digits"
    assert class_name(" 2_digits ", KNOWN) == "2_digits"
    assert class_name("3", KNOWN) == "3"
    assert class_name("seven  up", KNOWN) == "seven up"
    for bad in ("", "   ", "../etc", "a/b", "_hidden", "x" * 25, "<b>"):
        with pytest.raises(ExampleError):
            class_name(bad, KNOWN)


def test_examples_are_added_listed_removed_and_never_mixed_between_sessions(tmp_path):
    store = ExampleStore(tmp_path / "examples", TeachConfig(max_examples=3))
    first = store.add("alice", _picture(1), _seen(1), "3")
    store.add("alice", _picture(2), _seen(2), "2_digits")
    store.add("bob", _picture(3), _seen(3), "3")
    assert store.counts("alice") == {"3": 1, "2_digits": 1} and store.counts("bob") == {"3": 1}
    assert first.original.is_file() and first.seen.is_file() and first.original.parent.name == "3"
    assert store.folder("alice") != store.folder("bob")
    with pytest.raises(ExampleError, match="already one of your examples"):
        store.add("alice", _picture(1), _seen(1), "3")
    store.add("alice", _picture(4), _seen(4), "3")
    with pytest.raises(ExampleError, match="already holds 3 examples"):
        store.add("alice", _picture(5), _seen(5), "3")
    assert store.remove("alice", first.id) and not first.original.exists()
    assert not store.remove("bob", first.id)                 # bob cannot remove alice's
    assert store.counts("alice") == {"3": 1, "2_digits": 1}
    archive = zipfile.ZipFile(store.zip("alice", tmp_path / "out"))
    names = archive.namelist()
    assert sorted(n.split("/")[0] for n in names if not n.startswith("__")) == ["2_digits", "3"]
    assert all(n.startswith("__model_input__/") for n in names if n.startswith("__"))
    store.forget("alice")
    assert store.list("alice") == [] and not store.folder("alice").exists() and store.counts("bob") == {"3": 1}


def test_a_new_class_needs_enough_examples():
    with pytest.raises(ExampleError, match="'3' has 3, add 2 more"):
        check_examples({"3": 3, "2_digits": 1}, KNOWN, TeachConfig(min_new_class=5))
    with pytest.raises(ExampleError, match="Add some examples first"):
        check_examples({}, KNOWN)
    check_examples({"3": 5, "2_digits": 1}, KNOWN, TeachConfig(min_new_class=5))
    check_examples({"2_digits": 1}, KNOWN)                  # a correction of a known class needs one


def test_widening_the_head_keeps_the_old_classes_answers(tiny_checkpoints, tiny_dataset):
    from cvdemo import checkpoints as ckpt
    from cvdemo.evaluate import predict_proba
    from cvdemo.images import preprocess

    model = ckpt.load(tiny_checkpoints, "scratch").model
    images = np.stack([preprocess(p) for p in sorted(tiny_dataset.rglob("*.jpg"))])
    before = predict_proba(model, images)
    after = predict_proba(widen(model, 5), images)
    assert after.shape == (len(images), 5)
    assert (after.argmax(1) == before.argmax(1)).all()
    assert after[:, 3:].max() < 0.05 and np.allclose(after[:, :3], before, atol=0.05)


def _threes(folder: Path, n: int = 6, offset: int = 0) -> Path:
    from cvdemo.data import mnist_digits, mnist_to_paper

    pixels, labels = mnist_digits()
    (folder / "3").mkdir(parents=True, exist_ok=True)
    for i in np.flatnonzero(labels == 3)[offset:offset + n]:
        mnist_to_paper(pixels[i]).save(folder / "3" / f"three_{i}.png")
    return folder


def test_cli_teaches_a_new_class_with_metadata_and_evaluate_reads_it(tiny_checkpoints, tmp_path, capsys):
    from cvdemo import checkpoints as ckpt
    from cvdemo.cli import main

    examples = _threes(tmp_path / "examples")
    out = tmp_path / "taught"
    assert main(["teach", "--examples", str(examples), "--checkpoints", str(tiny_checkpoints), "--out", str(out),
                 "--epochs", "1", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["checkpoints"] == str(out) and set(document["models"]) == {"scratch", "finetuned"}
    for name, report in document["models"].items():
        assert report["classes"] == [*KNOWN, "3"] and report["seconds"] > 0
        assert 0 <= report["val_accuracy"] <= 1 and 0 <= report["examples_accuracy"] <= 1
        meta = ckpt.read_meta(out, name)
        assert meta["class_names"] == [*KNOWN, "3"] and meta["novelty"]
        taught = meta["taught"]
        assert taught["new_classes"] == ["3"] and taught["from"] == str(examples.resolve())
        assert sorted(taught["examples"]) == sorted(f"taught/3/{p.name}" for p in (examples / "3").iterdir())
    data = write_digits(tmp_path / "eval", per_class=3, offset=40)
    _threes(data / "3", n=0)
    _threes(data, n=3, offset=30)
    assert main(["evaluate", "--checkpoints", str(out), "--data", str(data), "--json"]) == 0
    assert "3" in capsys.readouterr().out
    assert main(["teach", "--examples", str(_threes(tmp_path / "few", n=2)), "--checkpoints", str(tiny_checkpoints),
                 "--out", str(tmp_path / "x")]) == 2
    assert "add 3 more" in capsys.readouterr().err


def test_service_teaches_one_session_and_refuses_too_few_or_a_second_run(tiny_checkpoints, tmp_path):
    from cvdemo.service import BusyError, ExampleError, Service

    service = Service(checkpoints=tiny_checkpoints, runs=tmp_path / "runs", analysis_cache=tmp_path / "cache",
                      database=tmp_path / "db", warm=False)
    threes = sorted((_threes(tmp_path / "src")).rglob("*.png"))
    for path in threes[:4]:
        service.add_example("alice", path, "3", name=path.name)
    with pytest.raises(ExampleError, match="add 1 more"):
        service.start_teaching("alice")
    service.add_example("alice", threes[4], "3", name=threes[4].name)
    assert service.examples.counts("bob") == {}
    job, progress = service.start_teaching("alice")
    with pytest.raises(BusyError, match="try again in about"):
        service.start_teaching("alice")
    for _ in job.follow(progress):
        pass
    assert job.error is None and job.set_id
    taught = service.model_set(job.set_id)
    assert taught.class_names == [*KNOWN, "3"] and "new class 3" in taught.label
    assert [s for _, s in service.available_sets(owner="alice")][-1] == job.set_id
    assert job.set_id not in [s for _, s in service.available_sets(owner="bob")]
    assert service.model_set().class_names == KNOWN               # the shipped set answers as before
    assert not list((tmp_path / "runs").glob(".*-examples"))       # the run's copy of the examples is gone
    service.end_session("alice")
    assert service.examples.counts("alice") == {}


def test_the_sample_dataset_is_rebuilt_when_the_models_replay_it_on_a_fresh_checkout(tmp_path, monkeypatch):
    from cvdemo import config
    from cvdemo.teaching.recipe import replay_split

    sample = tmp_path / "Hand_written_digits"
    monkeypatch.setattr(config, "SAMPLE_DATA_DIR", sample)
    prepared = replay_split({"data": {"root": str(sample)}, "split": {"val_fraction": 0.2, "seed": 1}})
    assert prepared.arrays.class_names == ["0_digits", "1_digits", "2_digits"]
    assert len(prepared.train_idx) > 1000 and sample.is_dir()
    with pytest.raises(Exception, match="not on this machine"):
        replay_split({"data": {"root": str(tmp_path / "gone")}})


def test_remembered_lower_layers_compute_each_image_once_and_answer_the_same():
    from cvdemo.teaching.frozen import Remembered

    calls = []

    def infer(images):
        calls.append(len(images))
        return images.reshape(len(images), -1).sum(1, keepdims=True) * np.arange(1, 4)

    rng = np.random.default_rng(0)
    images = rng.random((6, 4, 4, 1)).astype(np.float32)
    remembered = Remembered(infer, limit=4 * 3 * 8)          # room for four answers (three float64 each)
    first = remembered(images[:4])
    assert np.allclose(first, infer(images[:4])) and calls == [4, 4]
    calls.clear()
    again = remembered(np.concatenate([images[3:1:-1], images[4:], images[4:]]))   # 2 known, 2 new (repeated)
    assert calls == [2]                         # only the unseen images, each once
    assert np.allclose(again, infer(np.concatenate([images[3:1:-1], images[4:], images[4:]])))
    assert remembered.unseen(images) == 6 - len(remembered)
    assert len(remembered) == 4                 # the byte limit holds: the rest are computed, not kept


def test_warming_does_a_first_teachings_frozen_work_and_teaching_keeps_those_layers(tiny_checkpoints, tmp_path):
    from cvdemo import checkpoints as ckpt
    from cvdemo.config import TeachConfig
    from cvdemo.teaching import teach, warm
    from cvdemo.teaching.frozen import lower_of, teach_from

    warm(tiny_checkpoints)
    events = []
    results = teach(tiny_checkpoints, _threes(tmp_path / "examples"), tmp_path / "taught", TeachConfig(epochs=1),
                    models=("finetuned",), on_event=events.append)
    assert not [e for e in events if e.get("phase") == "features"]       # nothing left to compute first
    base = ckpt.load(tiny_checkpoints, "finetuned")
    at = teach_from(base.meta)
    # the layers below the cut answer as before teaching: the next teaching reuses their activations
    assert lower_of(results["finetuned"].model, at) is lower_of(base.model, at)
