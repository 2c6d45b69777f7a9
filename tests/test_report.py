"""The report command, the cached analysis, the Service methods and the bundle, on tiny checkpoints."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cvdemo import cli

from conftest import write_digits

FIGURES = ["distribution.png", "samples.png", "curves.png", "misclassified.png", "calibration.png",
           *(f"{kind}_{m}.png" for m in ("scratch", "finetuned") for kind in ("confusion", "tsne2d", "tsne3d"))]


@pytest.fixture(scope="module")
def report_dir(tiny_checkpoints, tmp_path_factory):
    """One report run on the tiny checkpoints (shared by the tests below; it is the slow part)."""
    base = tmp_path_factory.mktemp("report")
    out, cache = base / "out", base / "cache"
    assert cli.main(["report", "--checkpoints", str(tiny_checkpoints), "--out", str(out),
                     "--cache", str(cache)]) == 0
    return out, cache


def test_every_report_file_is_written_and_not_empty(report_dir):
    out, _ = report_dir
    for name in [*FIGURES, "report.md", "metrics.json"]:
        path = out / name
        assert path.is_file() and path.stat().st_size > 0, name
    for name in FIGURES:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    text = (out / "report.md").read_text()
    for name in FIGURES:
        assert f"]({name})" in text, name           # every figure is embedded
    assert "| scratch |" in text and "| finetuned |" in text


def test_metrics_json_describes_the_validation_split(report_dir, tiny_checkpoints):
    out, _ = report_dir
    document = json.loads((out / "metrics.json").read_text())
    meta = json.loads((tiny_checkpoints / "scratch.json").read_text())
    assert document["data"]["n_images"] == len(meta["data"]["val_files"])
    assert {row["model"] for row in document["comparison"]} == {"scratch", "finetuned"}
    for name, model in document["models"].items():
        confusion = np.array(model["confusion_matrix"])
        assert confusion.sum() == document["data"]["n_images"]
        assert model["accuracy"] == pytest.approx(np.trace(confusion) / confusion.sum())
        assert 0 <= model["ece"] <= 1 and model["latency_ms"] > 0
        assert model["model_sha256"] == json.loads((tiny_checkpoints / f"{name}.json").read_text())["model_sha256"]
    wrong = sum(np.trace(np.array(m["confusion_matrix"])) < document["data"]["n_images"]
                for m in document["models"].values())
    assert (len(document["misclassified"]) > 0) == (wrong > 0)


def test_second_run_comes_from_the_cache_and_json_goes_to_stdout(report_dir, tiny_checkpoints, tmp_path,
                                                                capsys, monkeypatch):
    _, cache = report_dir
    import cvdemo.analysis.cache

    def refuse(*args, **kwargs):
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr(cvdemo.analysis.cache, "analyze", refuse)
    capsys.readouterr()
    assert cli.main(["report", "--checkpoints", str(tiny_checkpoints), "--out", str(tmp_path / "again"),
                     "--cache", str(cache), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)       # stdout holds exactly one JSON document
    assert set(document["models"]) == {"scratch", "finetuned"}
    assert (tmp_path / "again" / "report.md").is_file()


@pytest.mark.slow     # 14 s; the report itself is checked in the default run
def test_report_on_an_external_folder_evaluates_every_image(tiny_checkpoints, tmp_path, capsys):
    data = write_digits(tmp_path / "test", per_class=3, offset=200)
    capsys.readouterr()
    assert cli.main(["report", "--checkpoints", str(tiny_checkpoints), "--data", str(data),
                     "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache"), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["data"]["n_images"] == 9 and document["data"]["external"]
    assert document["data"]["n_train_checked"] > 0          # compared with the training images
    assert all((tmp_path / "out" / name).stat().st_size > 0 for name in FIGURES)


def test_report_errors_are_one_line(tmp_path, capsys, tiny_checkpoints):
    assert cli.main(["report", "--checkpoints", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err
    wrong_classes = write_digits(tmp_path / "other", per_class=2, classes=(3, 4))
    assert cli.main(["report", "--checkpoints", str(tiny_checkpoints), "--data", str(wrong_classes),
                     "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c")]) != 0
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error:") and "classes" in err


def test_service_analysis_gives_the_app_what_it_shows(tiny_checkpoints, report_dir):
    from cvdemo.service import Service

    _, cache = report_dir
    service = Service(checkpoints=tiny_checkpoints, warm=False, analysis_cache=cache)
    seen = []
    analysis = service.analysis(progress=lambda f, m: seen.append(f))
    assert seen and seen[-1] == 1.0
    assert service.analysis() is analysis                    # memoised per model set
    assert set(FIGURES) <= set(analysis.figures) and all(p.is_file() for p in analysis.figures.values())
    assert analysis.models == ["scratch", "finetuned"]
    figure = analysis.tsne3d_plot("finetuned")
    assert figure.data and all(trace.type == "scatter3d" for trace in figure.data)
    predictions = analysis.predictions()
    n = len(analysis.result.labels)
    assert all(len(p) == n for p in predictions.values())
    detail = analysis.detail(0)
    assert Path(detail["path"]).is_file()
    assert set(detail["models"]) == {"scratch", "finetuned"}
    assert set(detail["models"]["scratch"]["centroid_distances"]) == set(analysis.result.class_names)
    for row in analysis.misclassified():
        assert Path(row["path"]).is_file() and set(row["models"]) == {"scratch", "finetuned"}
    assert {r["model"] for r in analysis.comparison()} == {"scratch", "finetuned"}


@pytest.mark.slow
def test_bundle_holds_report_models_tflite_and_usage(tiny_checkpoints, report_dir, tmp_path):
    import tensorflow as tf

    from cvdemo import checkpoints as ckpt
    from cvdemo.analysis import tflite_predict
    from cvdemo.images import preprocess
    from cvdemo.service import Service

    from conftest import digit_image

    _, cache = report_dir
    service = Service(checkpoints=tiny_checkpoints, warm=False, analysis_cache=cache)
    path = service.report_bundle()
    assert path.is_file() and service.report_bundle() == path           # cached
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        for name in [*FIGURES, "report.md", "metrics.json"]:
            assert f"report/{name}" in names
        assert {"classify.py", "USAGE.md"} <= names
        x = preprocess(digit_image(1))[None]
        for model in ("scratch", "finetuned"):
            assert {f"models/{model}.keras", f"models/{model}.json"} <= names
            flat = archive.read(f"models/{model}.tflite")
            interpreter = tf.lite.Interpreter(model_content=flat)   # loads with TF's own interpreter
            interpreter.allocate_tensors()
            keras_p = np.asarray(ckpt.load(tiny_checkpoints, model).model(x, training=False))
            np.testing.assert_allclose(tflite_predict(flat, x), keras_p, atol=1e-4)
        archive.extractall(tmp_path / "bundle")
    compile(Path(tmp_path / "bundle" / "classify.py").read_text(), "classify.py", "exec")
