"""The benchmark's pieces (statistics, targets, report, JSON shape on tiny inputs) and
training under tf.distribute (``--strategy mirrored`` on two logical CPU devices)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks import bench

from conftest import ROOT, write_digits


def test_percentile_and_summary_on_hand_checked_values():
    assert bench.percentile([1, 2, 3, 4, 5], 50) == 3.0
    assert bench.percentile([0, 10], 95) == pytest.approx(9.5)
    s = bench.summarize([0.001, 0.002, 0.003, 0.004, 0.100])       # seconds -> ms
    assert (s["p50"], s["min"], s["max"], s["n"]) == (3.0, 1.0, 100.0, 5)
    assert s["p95"] == pytest.approx(80.8)
    assert bench.summarize([2.0, 4.0], scale=1.0)["p50"] == 3.0
    with pytest.raises(ValueError):
        bench.summarize([])


def _document(**figures) -> dict:
    doc = {"train": {"lenet": {"val_accuracy": 0.99}, "scratch": {"seconds": 15.0, "val_accuracy": 0.996},
                     "finetuned": {"seconds": 70.0, "val_accuracy": 0.98}},
           "classify_ms": {"in_process": {"p50": 12.0}, "concurrent8": {"p95": 900.0, "errors": 1}},
           "retrieval": {}, "cold_start_s": None, "rss_mb": 800.0}
    doc.update(figures)
    return doc


def test_targets_pass_miss_and_not_measured():
    rows = {row["name"]: row for row in bench.check_targets(_document())}
    assert rows["scratch: 10 epochs"]["status"] == "pass"
    assert rows["fine-tuned: 10 epochs"]["status"] == "miss"               # 70 s > 60 s
    assert rows["fine-tuned: val accuracy"]["status"] == "miss"
    assert rows["scratch beats LeNet"]["status"] == "pass"
    assert rows["fine-tuned beats LeNet"]["status"] == "miss"              # 0.98 < LeNet's 0.99
    assert rows["classify in process p50"]["status"] == "pass"
    assert rows["8 concurrent clients errors"]["status"] == "miss"
    assert rows["cold start"]["status"] == "n/a"                           # not measured
    assert rows["app peak memory"]["value"] == 800.0
    quick = {row["name"]: row for row in bench.check_targets(_document(), quick=True)}
    assert quick["scratch: 10 epochs"]["status"] == "n/a (quick)"         # 2 epochs prove nothing
    assert quick["classify in process p50"]["status"] == "pass"


def test_browser_figures_have_targets_and_rows():
    timing = {"p50": 420.0, "p95": 600.0, "min": 300.0, "max": 700.0, "mean": 450.0, "n": 6}
    document = _document(browser={"stroke_ms": timing, "upload_ms": dict(timing, p50=200.0),
                                  "phone_verdict_in_view": 1.0},
                         machine={"date": "d", "cpu": "c", "usable_cores": 2, "cores": 2, "ram_gb": 1,
                                  "platform": "p", "versions": {}}, options={"checkpoints": "x"}, train={},
                         classify_ms={})
    document["targets"] = bench.check_targets(document)
    rows = {row["name"]: row["status"] for row in document["targets"]}
    assert rows["stroke to answer on screen, Chromium p50"] == "miss"        # 420 ms > 300 ms
    assert rows["phone: verdict in view after a stroke"] == "pass"
    text = bench.markdown(document)
    assert "end of a stroke → the verdict on screen, p50 / p95 ms | 420 / 600" in text
    assert "an upload → the verdict on screen, same run, p50 / p95 ms | 200 / 600" in text


def test_teaching_figures_have_targets_and_rows():
    def taught(**scores):
        return {"seconds": 6.0, "val_accuracy": 0.993, "val_accuracy_before": 1.0, "examples_accuracy": 1.0,
                "held_out_styles": 1.0, "held_out_mnist": 0.8, "held_out_min": 0.8, "robustness_min": 0.96, **scores}

    def corrected(after: float):
        return {"seconds": 6.0, "val_accuracy": 1.0, "val_accuracy_before": 1.0, "taught": 8, "corrected_before": 0.1,
                "corrected_after": after, "held_out_corrections_before": 0.0, "held_out_corrections_after": 0.5,
                "neighbours_before": 0.0, "neighbours_after": 0.97, "neighbours_gain": 0.97}

    document = _document(teach={
        "examples": 15, "seconds": 18.5, "warm_seconds": 11.8, "held_out_n": {"styles": 60, "mnist": 20},
        "models": {"scratch": taught(held_out_min=1.0), "finetuned": taught(robustness_min=0.93)},
        "correction": {"corrections": 10, "neighbours": 33, "seconds": 17.0,
                       "models": {"scratch": corrected(1.0), "finetuned": corrected(0.875)}}},
        machine={"date": "d", "cpu": "c", "usable_cores": 2, "cores": 2, "ram_gb": 1, "platform": "p", "versions": {}},
        options={"checkpoints": "x"}, train={}, classify_ms={})
    document["targets"] = bench.check_targets(document)
    rows = {row["name"]: row["status"] for row in document["targets"]}
    assert rows["teach a new class from 15 examples: both models"] == "miss"           # 18.5 s > 15 s
    assert rows["taught scratch: held-out 3s (worst of other hands, MNIST)"] == "pass"
    assert rows["taught finetuned: held-out 3s (worst of other hands, MNIST)"] == "miss"
    assert rows["taught finetuned: worst robustness set"] == "miss"
    assert rows["corrected scratch: the given misread 2s it was taught"] == "pass"
    assert rows["corrected finetuned: the given misread 2s it was taught"] == "miss"    # 7 of 8
    text = bench.markdown(document)
    assert "after the app's start-up warming of 11.8 s" in text
    assert "the 8 taught / the ones kept aside / their 33 misread neighbours" in text
    assert "10% → 88% / 0% → 50% / 0% → 97%" in text


def test_synthetic_retrieval_scaling_is_measured_per_size():
    out = bench.bench_synthetic(16, numpy_sizes=(50, 200), hnsw_sizes=(), flat_sizes=(), n_queries=5)
    assert set(out) == {"50", "200"}
    for n, entry in out.items():
        assert entry["vectors"] == int(n) and entry["backend"] == "numpy exact"
        assert 0 <= entry["min"] <= entry["p50"] <= entry["p95"] <= entry["max"]
        assert entry["n"] == 5


def test_synthetic_faiss_reports_build_time_and_recall():
    pytest.importorskip("faiss")
    out = bench.bench_synthetic(8, numpy_sizes=(), hnsw_sizes=(300,), flat_sizes=(300,), n_queries=4)
    assert out["faiss_flat_300"]["backend"] == "faiss flat"
    assert out["faiss_hnsw_300"]["build_s"] >= 0
    assert 0.5 <= out["faiss_hnsw_300"]["recall_at_4"] <= 1.0     # 300 vectors: HNSW is near exact


def test_synthetic_milvus_reports_build_time_recall_and_index_type(tmp_path):
    pytest.importorskip("pymilvus")
    out = bench.bench_synthetic(8, numpy_sizes=(), hnsw_sizes=(), flat_sizes=(), n_queries=4,
                                milvus_sizes=(300,), milvus_queries=3, workdir=tmp_path)
    entry = out["milvus_300"]
    assert entry["backend"] == "milvus lite flat" and entry["vectors"] == 300 and entry["n"] == 3
    assert entry["build_s"] >= 0 and entry["recall_at_4"] == 1.0     # FLAT is exact


def test_peak_rss_of_this_process():
    rss = bench.peak_rss_mb(os.getpid())
    if sys.platform.startswith("linux"):
        assert rss is not None and rss > 10
    assert bench.peak_rss_mb(2 ** 22 + 12345) is None                  # no such process


def test_machine_info_names_the_machine():
    info = bench.machine_info()
    assert info["cores"] >= 1 and info["usable_cores"] >= 1
    assert info["versions"]["python"] and "keras" in info["versions"]
    assert info["date"][:2] == "20"


@pytest.mark.slow
def test_run_on_tiny_inputs_has_the_documented_shape(tiny_checkpoints, tmp_path):
    """classify + retrieval sections end to end on tiny checkpoints and a 24-image database."""
    database = write_digits(tmp_path / "db", per_class=8)
    queries = write_digits(tmp_path / "queries", per_class=2, offset=20)
    opts = replace(bench.QUICK, sections=("classify", "retrieval"), checkpoints=tiny_checkpoints,
                   database=database, queries=queries, classify_repeats=3, query_repeats=3,
                   numpy_sizes=(100,), hnsw_sizes=(), flat_sizes=(), synthetic_queries=3)
    seen = []
    document = bench.run(opts, lambda done, total, message: seen.append((done, total)))
    assert "errors" not in document, document.get("errors")
    json.loads(json.dumps(document))                                   # plain JSON all the way down
    assert {"machine", "train", "classify_ms", "retrieval", "cold_start_s", "rss_mb"} <= set(document)
    in_process = document["classify_ms"]["in_process"]
    assert {"p50", "p95"} <= set(in_process) and set(in_process["models"]) == {"scratch", "finetuned"}
    assert in_process["keras"]["p50"] > 0 and in_process["keras_ratio"] > 0     # the same-run baseline
    retrieval = document["retrieval"]
    assert retrieval["database_size"] == 24
    assert {"shipped", "shipped_search_only", "100"} <= set(retrieval["query_ms"])
    assert retrieval["query_ms"]["shipped"]["p50"] > 0
    assert retrieval["index_images_per_s"] > 0 and retrieval["naive_ratio"] > 0
    assert retrieval["precision_at_4"]["n_queries"] == 200          # all held-out MNIST queries
    assert retrieval["precision_at_4"]["query_images"]["n_queries"] == 6
    other = retrieval["precision_at_4"]
    assert other["writers"]["n_queries"] == 1797 and other["fonts"]["n_queries"] % 10 == 0   # every UCI digit
    assert 0 <= other["fonts"]["min_class"] <= other["fonts"]["overall"] <= 1
    assert seen and seen[-1][0] == seen[-1][1]                          # the progress reached the end
    statuses = {row["name"]: row["status"] for row in document["targets"]}
    assert statuses["cold start"] == "n/a"                              # app section not run
    assert statuses["indexing rate"] in ("pass", "miss")
    text = bench.markdown(document)
    assert "| Figure |" in text and "Retrieval scaling" in text and document["machine"]["cpu"] in text


def test_a_failing_section_is_reported_not_raised(tmp_path):
    opts = replace(bench.QUICK, sections=("retrieval",), database=tmp_path / "missing", checkpoints=tmp_path)
    document = bench.run(opts)
    assert "no retrieval database" in document["errors"]["retrieval"]


def test_cli_rejects_an_unknown_section(capsys):
    from cvdemo.cli import main

    assert main(["bench", "--only", "train,nope"]) == 2
    assert "unknown section(s) nope" in capsys.readouterr().err


MIRRORED = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from pathlib import Path
    from cvdemo import checkpoints as ckpt
    from cvdemo.config import FinetuneConfig, TrainConfig
    from cvdemo.fitting import distribution_strategy
    from cvdemo.train import train
    data, out = Path(sys.argv[1]), Path(sys.argv[2])
    results = train(data, ("scratch", "finetuned"), TrainConfig(epochs=2, batch_size=8, strategy="mirrored"),
                    FinetuneConfig(weights="none"), out=out)
    loaded = ckpt.load_all(out)
    print(json.dumps({"replicas": distribution_strategy("mirrored").num_replicas_in_sync,
                      "strategy": {n: r.meta["train_config"]["strategy"] for n, r in results.items()},
                      "history": {n: len(r.history["loss"]) for n, r in results.items()},
                      "loaded": sorted(loaded),
                      "shape": list(loaded["scratch"].model(tf.zeros((2, 28, 28, 1))).shape)}))
""")


@pytest.mark.slow
def test_mirrored_strategy_trains_on_two_logical_cpus(tmp_path):
    """Logical devices must be configured before TensorFlow starts: a fresh interpreter."""
    data = write_digits(tmp_path / "data", per_class=6)
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run([sys.executable, "-c", MIRRORED, str(data), str(tmp_path / "out")], env=env,
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert result["strategy"] == {"scratch": "mirrored", "finetuned": "mirrored"}
    assert result["history"] == {"scratch": 2, "finetuned": 2}
    assert result["loaded"] == ["finetuned", "scratch"]
    assert result["shape"] == [2, 3]


def test_unknown_strategy_is_refused():
    from cvdemo.fitting import distribution_strategy

    assert distribution_strategy("default") is None
    with pytest.raises(ValueError, match="unknown strategy"):
        distribution_strategy("tpu")


def test_train_cli_rejects_a_malformed_tf_config(monkeypatch, capsys, tiny_dataset, tmp_path):
    from cvdemo.cli import main

    monkeypatch.setenv("TF_CONFIG", "{not json")
    assert main(["train", "--data", str(tiny_dataset), "--strategy", "multiworker", "--out", str(tmp_path)]) == 2
    assert "TF_CONFIG must be JSON" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_quick_json(tiny_checkpoints, tmp_path):
    """The CI smoke run: ``bench --quick --json`` prints one document with every figure."""
    import shutil

    checkpoints = Path(shutil.copytree(tiny_checkpoints, tmp_path / "checkpoints"))
    for shipped in (ROOT / "checkpoints").glob("backbone_mobilenet_v2_digits.*"):   # the fine-tuning start
        shutil.copy2(shipped, checkpoints / shipped.name)
    database = write_digits(tmp_path / "db", per_class=10)
    data = write_digits(tmp_path / "data", per_class=15)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, "-m", "cvdemo", "bench", "--quick", "--json", "--checkpoints",
                           str(checkpoints), "--database", str(database), "--data", str(data),
                           "--out", str(tmp_path / "BENCH.md")],
                          env=env, capture_output=True, text=True, timeout=900, cwd=ROOT)
    document = json.loads(done.stdout)
    assert done.returncode == 0, (document.get("errors"), done.stderr[-2000:])
    for name in ("scratch", "finetuned", "lenet"):
        assert {"seconds", "val_accuracy"} <= set(document["train"][name]), document["train"]
    assert set(document["classify_ms"]) >= {"in_process", "http", "concurrent8"}
    assert document["classify_ms"]["concurrent8"]["errors"] == 0
    assert document["cold_start_s"] > 0 and document["rss_mb"] > 0
    assert document["retrieval"]["naive_ratio"] > 1
    assert set(document["robustness"]) == {"writers", "fonts", "canvas"}
    assert document["browser"]["stroke_ms"]["n"] == 6 and document["browser"]["upload_ms"]["p50"] > 0
    assert document["browser"]["phone_verdict_in_view"] == 1.0
    classroom = document["classroom"]
    assert classroom["rest"]["errors"] == 0 and classroom["rest"]["mixed_up"] == 0 and classroom["rest"]["n"] > 0
    assert classroom["gradio"]["noop"]["n"] > 0 and classroom["classroom"]["app"]["errors"] == 0
    assert "| Figure |" in (tmp_path / "BENCH.md").read_text()
