"""The Milvus backend of the feature index, on embedded Milvus Lite in tmp_path.

Parity with numpy on hand-made vectors (order, ties, duplicates, k > N, cosine), incremental
upserts and deletes by content hash, rebuilding from the manifest, a tampered or half-written
collection repaired, a sync killed mid-way, and the clear refusal when the package is missing.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cvdemo import retrieval
from cvdemo.retrieval import FeatureIndex, MilvusError, Snapshot, milvus
from cvdemo.retrieval.snapshot import Entry

from conftest import digit_image
from test_retrieval import make_database

needs_milvus = pytest.mark.skipif(not retrieval.milvus_available(),
                                  reason="pymilvus and milvus-lite are an optional extra (requirements-dev.txt)")
ROOT = Path(__file__).resolve().parent.parent


def same_hits(a, b):
    assert [[h.path for h in row] for row in a] == [[h.path for h in row] for row in b]
    for row_a, row_b in zip(a, b):
        np.testing.assert_allclose([h.distance for h in row_a], [h.distance for h in row_b], rtol=1e-6, atol=1e-6)


def tied_snapshot(root: Path, n: int = 120, dim: int = 4, seed: int = 0) -> Snapshot:
    """Small integer vectors (many exact ties) and some rows sharing content (equal sha and vector)."""
    rng = np.random.default_rng(seed)
    features = rng.integers(0, 3, size=(n, dim)).astype(np.float32)
    shas = [f"{i:064x}" for i in range(n)]
    for copy, original in ((7, 3), (50, 3), (90, 11)):
        features[copy], shas[copy] = features[original], shas[original]
    entries = [Entry(f"{i % 3}/{i:04d}.png", 1, 1, shas[i]) for i in range(n)]
    return Snapshot(root, "pixels@test@p4", entries, features, [])


@needs_milvus
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_milvus_ranks_like_numpy_with_ties_duplicates_and_k_beyond_n(metric, tmp_path):
    search = milvus.MilvusSearch(str(tmp_path / "m.db"))
    snap = tied_snapshot(tmp_path)
    snap = Snapshot(snap.database, snap.extractor_key, snap.entries, snap.features, [], search)
    queries = np.random.default_rng(1).integers(0, 3, size=(6, 4)).astype(np.float32)
    queries[0] = snap.features[3]                       # a query equal to a duplicated row
    for k in (1, 4, 10, 500):
        same_hits(snap.search(queries, k, metric, backend="milvus"), snap.search(queries, k, metric, backend="numpy"))
    assert len(snap.search(queries[:1], 500, metric, backend="milvus")[0]) == len(snap)
    # three rows share content with others: the collection holds one row per content hash
    name = milvus.collection_name(search.prefix, snap.extractor_key, metric)
    assert search.client.get_collection_stats(name)["row_count"] == len(snap) - 3


@needs_milvus
def test_index_upserts_and_deletes_by_content_hash(tmp_path):
    database = make_database(tmp_path / "db")
    index = FeatureIndex(database, "pixels", backend="milvus")
    first = index.update().milvus
    assert first["created"] and first["inserted"] == 9 and first["index_type"] == "FLAT"
    digit_image(2, 5).save(database / "0" / "new.png")                         # added
    digit_image(2, 6).save(database / "1" / "1_1.png")                         # changed content
    (database / "7" / "7_0.jpg").unlink()                                      # removed
    (database / "7" / "copy.png").write_bytes((database / "7" / "7_1.png").read_bytes())  # same content
    report = index.update()
    assert (report.milvus["inserted"], report.milvus["deleted"]) == (2, 2)
    assert not report.milvus["created"] and not report.milvus["checked"]    # diffed from the last sync
    assert index.update().milvus["inserted"] == 0                            # nothing changed: nothing sent
    for query in (database / "7" / "7_1.png", database / "0" / "new.png", digit_image(1, 9)):
        for metric in ("euclidean", "cosine"):
            same_hits([index.search(query, 20, metric)[1]], [index.search(query, 20, metric, backend="numpy")[1]])
    _, hits = index.search(database / "7" / "7_1.png", 2)
    assert {h.path.name for h in hits} == {"7_1.png", "copy.png"}           # both names of one content


@needs_milvus
def test_an_empty_database_then_its_first_images(tmp_path):
    database = tmp_path / "db"
    database.mkdir()
    index = FeatureIndex(database, "pixels", backend="milvus")
    assert index.update().milvus["inserted"] == 0
    assert index.search(digit_image(1, 2), 4)[1] == []
    make_database(database, per_class=1)
    assert index.update().milvus["inserted"] == 3
    assert index.search(database / "1" / "1_0.jpg", 1)[1][0].path.name == "1_0.jpg"


@needs_milvus
def test_a_lost_collection_is_rebuilt_from_the_manifest_without_extracting(tmp_path):
    database = make_database(tmp_path / "db")
    FeatureIndex(database, "pixels", backend="milvus").update()
    client = milvus.MilvusSearch(milvus.default_uri(database / ".index")).client
    for name in client.list_collections():
        client.drop_collection(name)
    index = FeatureIndex(database, "pixels", backend="milvus")
    report = index.update()
    assert report.extracted == [] and report.milvus["created"] and report.milvus["inserted"] == 9
    query = database / "0" / "0_1.png"
    same_hits([index.search(query, 9)[1]], [index.search(query, 9, backend="numpy")[1]])


@needs_milvus
def test_a_collection_another_writer_changed_is_diffed_not_trusted(tmp_path):
    database = make_database(tmp_path / "db")
    FeatureIndex(database, "pixels", backend="milvus").update()
    search = milvus.MilvusSearch(milvus.default_uri(database / ".index"))
    (name,) = search.client.list_collections()
    victim = search.client.query(name, filter="", output_fields=["sha"], limit=1)[0]["sha"]
    search.client.delete(name, ids=[victim])      # another replica's sync of other files, same row count
    search.client.upsert(name, [{"sha": "f" * 64, "vec": np.zeros(28 * 28, np.float32)}])
    search.client.alter_collection_properties(name, properties={milvus.DIGEST_PROPERTY: "another snapshot"})
    index = FeatureIndex(database, "pixels", backend="milvus")
    report = index.update().milvus
    assert report["checked"] and (report["inserted"], report["deleted"]) == (1, 1)
    assert search.client.get_collection_stats(name)["row_count"] == 9


KILLED_SYNC = r"""
import os, signal, sys
from pathlib import Path
from cvdemo.retrieval import FeatureIndex, milvus
milvus.BATCH_BYTES = 1                      # one vector per upsert: many requests to die between
index = FeatureIndex(Path(sys.argv[1]), "pixels", backend="milvus")
calls = []
real = index.milvus.client.upsert
def upsert(*args, **kwargs):
    calls.append(1)
    if len(calls) == 4:
        os.kill(os.getpid(), signal.SIGKILL)  # a real kill, mid-sync
    return real(*args, **kwargs)
index.milvus.client.upsert = upsert
print("ready", flush=True)
index.update()
"""


@needs_milvus
def test_a_sync_killed_midway_leaves_a_usable_index(tmp_path):
    database = make_database(tmp_path / "db")
    FeatureIndex(database, "pixels").update()                 # the manifest exists; Milvus does not yet
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", KILLED_SYNC, str(database)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    index = FeatureIndex(database, "pixels", backend="milvus")
    report = index.update()
    assert report.extracted == [] and report.milvus["checked"] and report.milvus["inserted"] == 6
    for query in (database / "1" / "1_1.png", digit_image(7, 4)):
        same_hits([index.search(query, 9)[1]], [index.search(query, 9, backend="numpy")[1]])


@needs_milvus
def test_a_large_collection_switches_to_hnsw(tmp_path, monkeypatch):
    monkeypatch.setattr(milvus, "HNSW_MIN_VECTORS", 50)
    search = milvus.MilvusSearch(str(tmp_path / "m.db"))
    rng = np.random.default_rng(3)
    features = rng.normal(size=(300, 8)).astype(np.float32)
    entries = [Entry(f"0/{i:04d}.png", 1, 1, f"{i:064x}") for i in range(300)]
    snap = Snapshot(tmp_path, "pixels@test@p4", entries, features, [], search)
    assert search.sync(snap).index_type == "HNSW"
    queries = rng.normal(size=(10, 8)).astype(np.float32)
    exact, approx = snap.search(queries, 4, backend="numpy"), snap.search(queries, 4, backend="milvus")
    recall = np.mean([len({h.path for h in a} & {h.path for h in b}) / 4 for a, b in zip(exact, approx)])
    assert recall >= 0.9                         # 300 vectors: HNSW with ef 128 is all but exact


@needs_milvus
def test_new_weights_get_a_new_collection_and_the_stale_one_goes(tmp_path):
    search = milvus.MilvusSearch(str(tmp_path / "m.db"), prefix="cvdemo_db")
    old, new = tied_snapshot(tmp_path), tied_snapshot(tmp_path, seed=1)
    new = Snapshot(tmp_path, "pixels@other-weights@p4", new.entries, new.features, [])
    first, second = search.sync(old), search.sync(new)
    assert first.collection != second.collection and second.created
    assert search.client.list_collections() == [second.collection]


def test_without_the_package_the_backend_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    from cvdemo.cli import main

    monkeypatch.setattr(milvus, "milvus_available", lambda: False)
    database = make_database(tmp_path / "db", per_class=1)
    with pytest.raises(MilvusError, match="pip install pymilvus milvus-lite"):
        FeatureIndex(database, "pixels", backend="milvus")
    assert main(["index", "--database", str(database), "--extractor", "pixels", "--backend", "milvus"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: the milvus backend needs pymilvus and milvus-lite (pip install pymilvus milvus-lite); "
                   "numpy and faiss need neither"]


def test_an_unreachable_server_is_a_clear_error(tmp_path):
    if not retrieval.milvus_available():
        pytest.skip("pymilvus and milvus-lite are an optional extra (requirements-dev.txt)")
    with pytest.raises(MilvusError, match="cannot reach Milvus at http://127.0.0.1:9"):
        milvus.MilvusSearch("http://127.0.0.1:9", timeout=2)


@needs_milvus
def test_cli_and_service_search_through_milvus(tmp_path, capsys):
    import json

    from cvdemo.cli import main
    from cvdemo.service import Service

    database = make_database(tmp_path / "db")
    assert main(["index", "--database", str(database), "--extractor", "pixels", "--backend", "milvus", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["milvus"]["inserted"] == 9 and document["total"] == 9
    query = str(database / "7" / "7_2.jpg")
    outputs = {}
    for backend in ("milvus", "numpy"):
        assert main(["retrieve", query, "--database", str(database), "--extractor", "pixels", "--backend", backend,
                     "--k", "5", "--json"]) == 0
        outputs[backend] = json.loads(capsys.readouterr().out)
    assert outputs["milvus"] == outputs["numpy"]
    service = Service(warm=False, database=database, retrieval_extractor="pixels", retrieval_backend="milvus")
    answer = service.retrieve(query, k=5)
    assert answer.backend == "milvus"
    assert answer.as_list() == [{**hit, "path": f"db/{hit['path'].split('/db/')[-1]}"}
                                for hit in outputs["numpy"][0]["results"]]
