"""Retrieval: ranking on hand-made vectors, the incremental on-disk index, the CLI and the service.

Everything here runs on tiny databases in tmp_path with the model-free ``pixels`` extractor, so it
stays fast; the registry test builds the real extractors that are available offline.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from cvdemo import fsutil, retrieval
from cvdemo.retrieval import FeatureIndex, top_k

from conftest import digit_image

# ----------------------------------------------------------------------------- ranking (no Keras)

def test_top_k_on_hand_made_vectors():
    features = np.array([[0, 0], [3, 4], [1, 0], [0, 2], [10, 10]], np.float32)
    positions, distances = top_k(np.array([[0, 0]], np.float32), features, 3)
    assert positions.tolist() == [[0, 2, 3]]
    np.testing.assert_allclose(distances[0], [0, 1, 2], atol=1e-5)


def test_top_k_matches_brute_force_and_breaks_ties_by_position():
    rng = np.random.default_rng(0)
    features = rng.integers(0, 3, size=(200, 4)).astype(np.float32)   # many exact ties
    queries = rng.integers(0, 3, size=(7, 4)).astype(np.float32)
    positions, distances = top_k(queries, features, 10)
    for q, row_p, row_d in zip(queries, positions, distances):
        exact = np.sqrt(((features - q) ** 2).sum(1))
        expected = sorted(range(len(features)), key=lambda i: (round(float(exact[i]), 4), i))[:10]
        assert row_p.tolist() == expected
        np.testing.assert_allclose(row_d, exact[expected], atol=1e-4)


def test_k_larger_than_database_returns_everything_in_order():
    features = np.array([[2.0], [0.0], [1.0]], np.float32)
    positions, distances = top_k(np.array([[0.0]], np.float32), features, 10)
    assert positions.tolist() == [[1, 2, 0]]
    assert top_k(np.array([[0.0]], np.float32), features, 0)[0].shape == (1, 0)


def test_cosine_ignores_length():
    features = np.array([[1, 0], [10, 1], [0, 5]], np.float32)
    positions, distances = top_k(np.array([[100, 0]], np.float32), features, 3, metric="cosine")
    assert positions.tolist() == [[0, 1, 2]]
    assert distances[0, 0] == pytest.approx(0.0, abs=1e-6)
    assert distances[0, 2] == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="unknown metric"):
        top_k(features[:1], features, 1, metric="manhattan")


@pytest.mark.skipif(not retrieval.faiss_available(), reason="faiss-cpu is an optional extra")
@pytest.mark.parametrize("backend", ["faiss-flat", "faiss"])
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_faiss_backend_agrees_with_numpy(backend, metric, tmp_path):
    rng = np.random.default_rng(1)
    features = rng.normal(size=(500, 16)).astype(np.float32)
    entries = [retrieval.Entry(f"{i % 3}/{i:04d}.png", 1, 1, str(i)) for i in range(500)]
    snap = retrieval.Snapshot(tmp_path, "x", entries, features, [])
    queries = rng.normal(size=(5, 16)).astype(np.float32)
    exact = snap.search(queries, 5, metric, backend="numpy")
    other = snap.search(queries, 5, metric, backend=backend)
    for a, b in zip(exact, other):
        assert [h.path for h in a] == [h.path for h in b]
        np.testing.assert_allclose([h.distance for h in a], [h.distance for h in b], rtol=1e-3, atol=1e-4)


# ----------------------------------------------------------------------------- the index

def make_database(root: Path, per_class: int = 3, classes=(0, 1, 7)) -> Path:
    for digit in classes:
        (root / str(digit)).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            suffix = ".png" if i % 2 else ".jpg"
            digit_image(digit, i).save(root / str(digit) / f"{digit}_{i}{suffix}")
    return root


@pytest.fixture
def database(tmp_path) -> Path:
    return make_database(tmp_path / "db")


def test_index_builds_and_retrieves_same_class(database):
    index = FeatureIndex(database, "pixels")
    report = index.update()
    assert report.total == 9 and len(report.extracted) == 9 and report.written
    _, hits = index.search(database / "7" / "7_1.png", k=4)
    assert [h.rank for h in hits] == [1, 2, 3, 4]
    assert hits[0].path == database / "7" / "7_1.png" and hits[0].distance == pytest.approx(0, abs=1e-3)
    assert hits[0].label == "7"
    assert [h.distance for h in hits] == sorted(h.distance for h in hits)
    _, hits = index.search(digit_image(7, 10), k=50)          # k > N
    assert len(hits) == 9


def test_second_update_reuses_everything_and_writes_nothing(database):
    FeatureIndex(database, "pixels").update()
    manifest = database / ".index" / "pixels.json"
    before = manifest.stat().st_mtime_ns
    report = FeatureIndex(database, "pixels").update()          # a fresh process, same files
    assert report.reused == 9 and not report.extracted and not report.written
    assert manifest.stat().st_mtime_ns == before
    assert report.seconds < 1.0


def test_incremental_add_change_delete(database):
    index = FeatureIndex(database, "pixels")
    index.update()
    digit_image(1, 5).save(database / "1" / "new.png")                        # add
    digit_image(0, 7).save(database / "7" / "7_0.jpg")                        # change content
    (database / "0" / "0_2.jpg").unlink()                                     # delete
    report = index.update()
    assert sorted(report.extracted) == ["1/new.png", "7/7_0.jpg"]
    assert report.removed == ["0/0_2.jpg"] and report.reused == 7 and report.total == 9
    paths = [e.path for e in index.snapshot.entries]
    assert paths == sorted(paths) and "0/0_2.jpg" not in paths
    # the changed file is now found by its new content
    _, hits = index.search(digit_image(0, 7), k=1)
    assert hits[0].path == database / "7" / "7_0.jpg"


def test_touched_files_are_rehashed_not_reextracted(database):
    """After a git clone every mtime changes but no content does."""
    FeatureIndex(database, "pixels").update()
    later = time.time() + 100
    for path in database.rglob("*.*"):
        if ".index" not in path.parts:
            os.utime(path, (later, later))
    report = FeatureIndex(database, "pixels").update()
    assert not report.extracted and report.reused == 9
    assert report.written                        # new mtimes recorded, so the next run is stat-only
    assert not FeatureIndex(database, "pixels").update().written


def test_corrupt_and_blank_files_are_skipped_and_reported(database):
    (database / "1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (database / "1" / "text.jpg").write_text("hello")
    from PIL import Image
    Image.new("L", (50, 50), 255).save(database / "1" / "blank.png")
    index = FeatureIndex(database, "pixels")
    report = index.update()
    skipped = dict(report.skipped)
    assert set(skipped) == {"1/broken.png", "1/text.jpg", "1/blank.png"}
    assert "No digit" in skipped["1/blank.png"]
    assert report.total == 9
    # remembered: not retried while unchanged, still reported
    again = FeatureIndex(database, "pixels").update()
    assert not again.extracted and set(dict(again.skipped)) == set(skipped)
    # fixed file gets indexed
    digit_image(1, 6).save(database / "1" / "broken.png")
    fixed = FeatureIndex(database, "pixels").update()
    assert fixed.extracted == ["1/broken.png"]


def test_crash_mid_update_leaves_previous_index_usable(database, monkeypatch):
    index = FeatureIndex(database, "pixels")
    index.update()
    old_manifest = (database / ".index" / "pixels.json").read_bytes()
    digit_image(1, 8).save(database / "1" / "extra.png")

    real_replace = os.replace

    def crash(src, dst):
        if str(dst).endswith("pixels.json"):
            raise OSError("simulated crash before the manifest is committed")
        return real_replace(src, dst)

    monkeypatch.setattr(fsutil.os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        FeatureIndex(database, "pixels").update()
    monkeypatch.setattr(fsutil.os, "replace", real_replace)
    assert (database / ".index" / "pixels.json").read_bytes() == old_manifest
    recovered = FeatureIndex(database, "pixels")
    manifest, features = recovered._read()
    assert manifest is not None and features.shape[0] == 9           # old index still whole
    assert not list((database / ".index").glob(".*.tmp"))              # no temp litter
    report = recovered.update()
    assert report.extracted == ["1/extra.png"] and report.reused == 9


def test_garbage_index_is_rebuilt(database):
    FeatureIndex(database, "pixels").update()
    (database / ".index" / "pixels.json").write_text("{not json")
    report = FeatureIndex(database, "pixels").update()
    assert len(report.extracted) == 9 and report.written


def test_searches_during_update_see_a_consistent_snapshot(database):
    import threading

    index = FeatureIndex(database, "pixels")
    index.update()
    for i in range(6):
        digit_image(7, 20 + i).save(database / "7" / f"more_{i}.png")
    errors, sizes = [], set()

    def search():
        for _ in range(30):
            snap = index.snapshot
            try:
                assert snap.features.shape[0] == len(snap.entries)
                sizes.add(len(snap.search(snap.features[:1], 20)[0]))
            except Exception as err:  # noqa: BLE001 - collected and asserted below
                errors.append(err)

    threads = [threading.Thread(target=search) for _ in range(3)] + [threading.Thread(target=index.update)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and sizes <= {9, 15}
    assert len(index.snapshot) == 15


def test_unknown_extractor_is_a_key_error(database):
    with pytest.raises(KeyError, match="unknown extractor"):
        FeatureIndex(database, "nope")


def test_imagenet_extractor_offline_fails_with_a_clear_message(monkeypatch, tmp_path):
    from cvdemo import config
    from cvdemo.backbones import WeightsUnavailable

    monkeypatch.setattr(config, "KERAS_HOME", tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("CVDEMO_OFFLINE", "1")
    with pytest.raises(WeightsUnavailable, match="could not be downloaded"):
        retrieval.build_extractor("imagenet_vgg16")


@pytest.mark.slow     # 6 s
def test_digits_backbone_extractor_gives_pooled_features(tmp_path):
    from cvdemo import config
    from cvdemo.backbones import digits_weights_path

    if not digits_weights_path("mobilenet_v2", config.CHECKPOINT_DIR).is_file():
        pytest.skip("the shipped digits backbone is not built yet")
    extractor = retrieval.build_extractor("digits_mobilenet_v2")
    images = np.random.default_rng(0).random((3, 28, 28, 1)).astype(np.float32)
    out = extractor.extract(images)
    assert out.shape[0] == 3 and out.ndim == 2 and np.isfinite(out).all()
    assert extractor.version.startswith("digits:")


def test_evaluate_reports_precision_and_map(database, tmp_path):
    queries = make_database(tmp_path / "queries", per_class=1, classes=(0, 7))
    index = FeatureIndex(database, "pixels")
    result = retrieval.evaluate(index, queries, k=1)
    assert result["n_queries"] == 2 and set(result["per_class"]) == {"0", "7"}
    # the queries are database images themselves: the nearest neighbour is the same file
    assert result["overall"]["precision_at_k"] == 1.0
    assert 0 < result["overall"]["map"] <= 1.0


def test_evaluate_accepts_query_folders_in_the_training_layout(database, tmp_path):
    """A ``7_digits/`` query folder (the product's dataset layout) is class 7 of the database."""
    queries = make_database(tmp_path / "queries", per_class=1, classes=(0, 7))
    for folder in list(queries.iterdir()):
        folder.rename(queries / f"{folder.name}_digits")
    result = retrieval.evaluate(FeatureIndex(database, "pixels"), queries, k=1)
    assert set(result["per_class"]) == {"0_digits", "7_digits"}
    assert result["overall"]["precision_at_k"] == 1.0


# ----------------------------------------------------------------------------- adding files

def test_add_files_sanitises_names_and_never_overwrites(database, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    digit_image(7, 30).save(src / "my seven!.png")
    digit_image(7, 31).save(src / "7_0.jpg")                     # a name that already exists
    (src / "notes.png").write_text("not an image")
    before = (database / "7" / "7_0.jpg").read_bytes()
    report = retrieval.add_files(database, [src / "my seven!.png", src / "7_0.jpg", src / "notes.png",
                                            src / "missing.png"], label="7")
    names = sorted(p.name for p in report.added)
    assert names == ["7_0-1.jpg", "my_seven.png"] or names == ["7_0-1.png", "my_seven.png"]
    assert (database / "7" / "7_0.jpg").read_bytes() == before
    assert {name for name, _ in report.skipped} == {"notes.png", "missing.png"}
    assert all(p.parent == database / "7" for p in report.added)
    assert not list((database / "7").glob(".add-*"))
    with pytest.raises(ValueError):
        retrieval.add_files(database, [src / "7_0.jpg"], label="../..")


# ----------------------------------------------------------------------------- service

def test_service_retrieve_and_add(database, tmp_path):
    from cvdemo.images import ImageError
    from cvdemo.service import Service

    service = Service(checkpoints=tmp_path / "no-checkpoints", warm=False, database=database,
                      retrieval_extractor="pixels")
    answer = service.retrieve(database / "1" / "1_2.jpg", k=4)
    assert len(answer.hits) == 4 and answer.hits[0].label == "1" and answer.majority == "1"
    assert answer.query_input.shape == (28, 28, 1) and answer.extractor == "pixels" and answer.ms > 0
    assert answer.as_list()[0]["rank"] == 1
    with pytest.raises(ImageError):
        service.retrieve(b"definitely not an image", name="junk.bin")
    new = tmp_path / "fresh.png"
    digit_image(0, 40).save(new)
    report = service.add_to_database([new], label="0")
    assert len(report.added) == 1 and not report.skipped
    hits = service.retrieve(new, k=1).hits
    assert hits[0].path == report.added[0]                       # searchable immediately
    again = service.add_to_database([new], label="0")
    assert not again.added and "already" in again.skipped[0][1]
    info = service.database_info()
    assert info["images"] == 10 and info["classes"]["0"] == 4 and info["extractor"] == "pixels"


def test_private_additions_are_their_owners_alone(tmp_path):
    from cvdemo.service import Service

    database = make_database(tmp_path / "db", per_class=3, classes=(0, 1, 2))
    before = sorted(database.rglob("*.jpg"))
    service = Service(checkpoints=tmp_path / "none", warm=False, database=database, retrieval_extractor="pixels",
                      analysis_cache=tmp_path / "cache")
    new = tmp_path / "mine.png"
    digit_image(7, 3).save(new)
    report = service.add_to_database([new], label="../7", owner="alice")
    assert len(report.added) == 1 and report.added[0].is_relative_to(service.private.root)
    assert sorted(database.rglob("*.jpg")) == before and not list(database.rglob("mine*"))    # database untouched
    found = service.retrieve(new, k=2, owner="alice")
    assert found.hits[0].path == report.added[0] and found.hits[0].distance < 1e-6 and found.hits[0].rank == 1
    assert found.as_list()[0]["path"] == "your additions/7/mine.png" and found.is_private(found.hits[0])
    assert [h.rank for h in found.hits] == [1, 2] and not found.is_private(found.hits[1])
    assert all(not found.is_private(h) for h in service.retrieve(new, k=5, owner="bob").hits)
    assert all(not found.is_private(h) for h in service.retrieve(new, k=5).hits)
    again = service.add_to_database([new], label="7", owner="alice")
    assert not again.added and "already" in again.skipped[0][1]
    copy_of_database = database / "0" / "0_0.jpg"
    assert not service.add_to_database([copy_of_database], owner="alice").added       # already searchable
    [mine] = service.additions("alice")
    assert service.additions("bob") == []
    with pytest.raises(KeyError):
        service.remove_addition("bob", mine.id)
    service.remove_addition("alice", mine.id)
    assert not mine.path.exists() and all(not found.is_private(h) for h in service.retrieve(new, k=5, owner="alice").hits)
    service.add_to_database([new], owner="alice")
    service.end_session("alice")
    assert service.additions("alice") == [] and not any(service.private.root.rglob("*.png"))


def test_private_additions_are_bounded_per_owner(tmp_path):
    from cvdemo.retrieval import PrivateAdditions

    store = PrivateAdditions(tmp_path / "additions", per_owner=2)
    files = []
    for k in range(3):
        files.append(tmp_path / f"d{k}.png")
        digit_image(k % 3, 60 + k).save(files[-1])
    report = store.add("alice", files, None, lambda images: images.reshape(len(images), -1), set())
    assert len(report.added) == 2 and "already holds 2" in report.skipped[0][1]
    hits = store.hits("alice", np.zeros(28 * 28, np.float32), 5)
    assert len(hits) == 2 and hits[0].distance <= hits[1].distance


def test_shared_additions_go_into_the_database_for_everyone(tmp_path):
    from cvdemo.service import Service

    database = make_database(tmp_path / "db", per_class=2, classes=(0, 1))
    service = Service(checkpoints=tmp_path / "none", warm=False, database=database, retrieval_extractor="pixels",
                      analysis_cache=tmp_path / "cache", shared_additions=True)
    new = tmp_path / "shared.png"
    digit_image(1, 9).save(new)
    report = service.add_to_database([new], label="1", owner="alice")
    assert report.added[0].parent == database / "1"
    assert service.retrieve(new, k=1, owner="bob").hits[0].path == report.added[0]


# ----------------------------------------------------------------------------- CLI

def run_cli(*argv, capsys):
    from cvdemo.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_index_and_retrieve_json(database, capsys):
    code, out, _ = run_cli("index", "--database", str(database), "--extractor", "pixels", "--json", capsys=capsys)
    assert code == 0 and json.loads(out)["total"] == 9
    query = str(database / "0" / "0_1.png")
    code, out, _ = run_cli("retrieve", query, "--database", str(database), "--extractor", "pixels",
                           "--k", "2", "--json", capsys=capsys)
    document = json.loads(out)
    assert code == 0 and len(document) == 1 and document[0]["query"] == query
    results = document[0]["results"]
    assert [r["rank"] for r in results] == [1, 2]
    assert set(results[0]) == {"rank", "path", "label", "distance"}
    assert results[0]["label"] == "0" and isinstance(results[0]["distance"], float)


def test_cli_bad_query_exits_non_zero(database, tmp_path, capsys):
    junk = tmp_path / "junk.png"
    junk.write_text("nope")
    good = str(database / "0" / "0_0.jpg")
    code, out, _ = run_cli("retrieve", good, str(junk), "--database", str(database), "--extractor", "pixels",
                           "--json", capsys=capsys)
    document = json.loads(out)
    assert code != 0 and "results" in document[0] and "error" in document[1]
    code, out, err = run_cli("retrieve", str(tmp_path / "missing.png"), "--database", str(database),
                             "--extractor", "pixels", capsys=capsys)
    assert code != 0 and err.strip().startswith("error:") and len(err.strip().splitlines()) == 1
    code, _, err = run_cli("retrieve", good, "--database", str(tmp_path / "nowhere"), "--extractor", "pixels",
                           capsys=capsys)
    assert code != 0 and "not a folder" in err


def test_cli_eval_json(database, tmp_path, capsys):
    queries = make_database(tmp_path / "q", per_class=2, classes=(1, 7))
    code, out, _ = run_cli("retrieve", "--eval", str(queries), "--database", str(database), "--extractor",
                           "pixels", "--k", "2", "--json", capsys=capsys)
    document = json.loads(out)
    assert code == 0 and document["k"] == 2 and set(document["per_class"]) == {"1", "7"}
    assert {"precision_at_k", "map"} <= set(document["overall"])
    code, _, err = run_cli("retrieve", "--eval", str(tmp_path / "none"), "--database", str(database),
                           "--extractor", "pixels", capsys=capsys)
    assert code != 0 and "error:" in err


@pytest.mark.slow     # 7 s; the shipped extractor is used by every retrieval test
def test_pretrained_cnn_extractor_is_trained_saved_and_used(tmp_path):
    """pretrain --backbone scratch: a checkpoint with metadata, not a task classifier, whose pooled
    activations index the database; a missing one says how to make it."""
    from cvdemo import checkpoints as ckpt
    from cvdemo.checkpoints import CheckpointError
    from cvdemo.pretrain import pretrain_cnn

    with pytest.raises(CheckpointError, match="cvdemo pretrain --backbone scratch"):
        retrieval.build_extractor("digits_all_cnn", tmp_path)
    assert retrieval.EXTRACTORS["digits_all_cnn"].version(tmp_path) is None
    meta = pretrain_cnn(epochs=1, out=tmp_path, per_class=4)
    assert meta["classes"] == list(range(10)) and meta["role"] == "retrieval feature extractor"
    assert meta["weights_file"] == "pretrained_scratch_digits_all.keras"
    assert meta["data"]["n_train"] + meta["data"]["n_val"] == 40
    assert ckpt.list_names(tmp_path) == []          # an extractor, not one of the task's classifiers
    assert retrieval.default_extractor(tmp_path) == "digits_all_cnn"
    extractor = retrieval.build_extractor("digits_all_cnn", tmp_path)
    out = extractor.extract(np.random.default_rng(0).random((3, 28, 28, 1)).astype(np.float32))
    assert out.shape == (3, 128) and np.isfinite(out).all()
    assert extractor.version == retrieval.EXTRACTORS["digits_all_cnn"].version(tmp_path)


def test_agreement_compares_neighbours_with_the_classifiers(tmp_path):
    """What the Retrieve tab's banner says, decided in the package: agree, disagree, unknown class."""
    from cvdemo.retrieval import Hit, RetrievalAnswer, agreement

    def answer(*labels):
        hits = [Hit(i + 1, tmp_path / f"{i}.png", label, float(i)) for i, label in enumerate(labels)]
        return RetrievalAnswer(hits, np.zeros((28, 28, 1), np.float32), "pixels", 1.0)

    agree = agreement(answer("2", "2", "1", "2"), {"scratch": "2_digits", "finetuned": "2_digits"},
                      ["0_digits", "1_digits", "2_digits"])
    assert agree.majority == "2" and agree.votes == 3 and agree.agree and not agree.unknown_to_classifiers
    assert [agree.mark(h) for h in answer("2", "1").hits] == [" ✓", " ✗"]
    split = agreement(answer("2", "2"), {"scratch": "2_digits", "finetuned": "1_digits"}, ["1_digits", "2_digits"])
    assert split.predicted is None and not split.agree and split.mark(answer("2").hits[0]) == ""
    seven = agreement(answer("7", "7", "1"), {"scratch": "1_digits"}, ["0_digits", "1_digits", "2_digits"])
    assert not seven.agree and seven.unknown_to_classifiers
    alone = agreement(answer("7"), why_not="No classifier is loaded to compare with.")
    assert not alone.classified and alone.why_not and not alone.agree
