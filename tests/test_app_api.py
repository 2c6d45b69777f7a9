"""The app through gradio_client against a launched server: classify, bad input, training."""
from __future__ import annotations

import base64
import io
import time

import numpy as np
import pytest
from PIL import Image

from app_server import running_app, zip_folder
from conftest import digit_image, write_digits

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402


@pytest.fixture(scope="module")
def server(tiny_checkpoints, tmp_path_factory):
    with running_app(tiny_checkpoints, tmp_path_factory.mktemp("runs")) as (url, service):
        yield url, service


@pytest.fixture(scope="module")
def client(server):
    return Client(server[0], verbose=False)


@pytest.fixture
def digit_file(tmp_path):
    path = tmp_path / "seven.png"
    digit_image(7).save(path)
    return path


def test_every_event_has_an_explicit_api_name(server):
    import webapp

    demo = webapp.build_app(server[1])
    names = {dep.get("api_name") for dep in demo.config["dependencies"] if dep.get("api_name")}
    assert {"classify", "train", "classify_drawing", "classify_upload", "stop_training"} <= names
    unnamed = [dep for dep in demo.config["dependencies"]
               if not dep.get("api_name") and dep.get("backend_fn")]
    assert unnamed == []


def test_classify_returns_every_model_with_probabilities(client, server, digit_file):
    result = client.predict(handle_file(str(digit_file)), api_name="/classify")
    classes = server[1].model_set().class_names
    assert set(result) == {"scratch", "finetuned"}
    for answer in result.values():
        assert set(answer) == {"label", "probabilities", "known", "novelty", "looks_like", "runtime"}
        assert answer["runtime"] in ("litert", "keras")
        assert isinstance(answer["known"], bool) and answer["novelty"] >= 0
        assert answer["looks_like"] is None or isinstance(answer["looks_like"], str)
        assert answer["label"] in classes
        assert set(answer["probabilities"]) == set(classes)
        assert sum(answer["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
        assert answer["label"] == max(answer["probabilities"], key=answer["probabilities"].get)


def test_classify_matches_the_service(client, server, digit_file):
    """The API returns exactly what cvdemo computes for the same file, not some other input."""
    expected = server[1].classify(str(digit_file)).as_dict()
    result = client.predict(handle_file(str(digit_file)), api_name="/classify")
    for name, answer in expected.items():
        assert result[name]["label"] == answer["label"]
        for c, p in answer["probabilities"].items():
            assert result[name]["probabilities"][c] == pytest.approx(p, abs=1e-5)


def test_non_image_file_gets_the_decoder_message(client, tmp_path):
    fake = tmp_path / "notes.png"
    fake.write_text("this is not a picture\n" * 20)
    with pytest.raises(AppError) as err:
        client.predict(handle_file(str(fake)), api_name="/classify")
    assert "notes.png" in str(err.value)
    assert "could not be read" in str(err.value) or "not a" in str(err.value)


def test_blank_image_says_draw_a_digit_first(client, tmp_path):
    blank = tmp_path / "blank.png"
    Image.new("L", (100, 100), 255).save(blank)
    with pytest.raises(AppError, match="(?i)draw a digit first"):
        client.predict(handle_file(str(blank)), api_name="/classify")


def test_empty_canvas_says_draw_a_digit_first(client):
    with pytest.raises(AppError, match="(?i)draw a digit first"):
        client.predict("", api_name="/classify_drawing")


def test_drawing_through_the_canvas_endpoint(client):
    canvas = np.full((320, 320), 255, np.uint8)
    canvas[60:260, 150:172] = 0                     # one thick vertical stroke: a "1"
    buffer = io.BytesIO()
    Image.fromarray(canvas).convert("RGBA").save(buffer, format="PNG")   # what a canvas's toDataURL gives
    data_url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    outputs = client.predict(data_url, api_name="/classify_drawing")
    answers = [o for o in outputs if isinstance(o, dict) and "scratch" in o]   # the hidden gr.JSON
    assert len(answers) == 1 and set(answers[0]) == {"scratch", "finetuned"}
    assert "They agree" in outputs[0] or "disagree" in outputs[0]


def test_unknown_model_set_is_a_clear_error(client, digit_file):
    with pytest.raises(AppError, match="not available"):
        client.predict(handle_file(str(digit_file)), "run-../../etc", api_name="/classify")


@pytest.mark.slow
def test_training_streams_refuses_a_second_run_and_finishes(client, server, tmp_path, digit_file):
    url, service = server
    data = zip_folder(write_digits(tmp_path / "tiny", per_class=6), tmp_path / "tiny.zip")
    counts = client.predict("My own zip of class folders", handle_file(str(data)), api_name="/dataset_counts")
    assert {row[0]: row[1] for row in counts[1]["data"]} == {"0_digits": 6, "1_digits": 6, "2_digits": 6}

    job = client.submit("My own zip of class folders", handle_file(str(data)), ["scratch", "finetuned"],
                        "mobilenet_v2", "none", 1, api_name="/train")
    deadline = time.time() + 60
    while not service.training and time.time() < deadline:
        time.sleep(0.1)
    assert service.training
    other = Client(url, verbose=False)             # another visitor
    with pytest.raises(AppError, match="already in progress"):
        other.predict("My own zip of class folders", handle_file(str(data)), ["scratch"], "mobilenet_v2",
                      "none", 1, api_name="/train")
    assert other.predict(handle_file(str(digit_file)), api_name="/classify")  # still classifies

    final = job.result(timeout=240)
    streamed = job.outputs()
    assert len(streamed) >= 3                       # progress arrived before the end
    assert any(out[0] and "100%" not in out[0] for out in streamed[:-1])
    progress_html, log, loss, accuracy, table, confusion, files, picker, notice = final   # States are not sent
    assert "100%" in progress_html and "Finished" in progress_html and "training finished" in log
    assert {"scratch train", "scratch val", "finetuned train", "finetuned val"} <= {row[2] for row in loss["data"]}
    assert all(row[1] is None or 0 <= row[1] <= 1 for row in accuracy["data"])
    assert [row[0] for row in table["data"]] == ["scratch", "finetuned"]
    assert confusion is not None and confusion["plot"].startswith("data:image/png")
    set_id = picker["value"]
    assert set_id.startswith("run-") and set_id in [s for _, s in service.available_sets()]
    # "Models in use" lists it for the visitor who trained it, and for nobody else
    assert set_id in [s for _, s in service.available_sets(client.session_hash)]
    assert [s for _, s in service.available_sets(other.session_hash)] == ["shipped"]
    assert [s for _, s in picker["choices"]] == ["shipped", set_id]
    assert " on tiny (" in [label for label, s in service.available_sets() if s == set_id][0]   # the zip's name
    assert sorted(str(f).rsplit("/", 1)[-1] for f in files) == ["finetuned.keras", "scratch.keras"]
    assert "just trained" in notice
    # the new set classifies too, and only when asked for by id
    assert set(client.predict(handle_file(str(digit_file)), set_id, api_name="/classify")) == \
        {"scratch", "finetuned"}


def test_stop_without_a_training_is_refused(client):
    with pytest.raises(AppError, match="No training of yours"):
        client.predict(api_name="/stop_training")


def test_explain_returns_the_verdict_heat_maps_and_probe_as_numbers(client, server, digit_file, tmp_path):
    result = client.predict(handle_file(str(digit_file)), "shipped", "1", api_name="/explain")
    assert {"verdict", "known", "novelty", "looks_like", "neighbours", "models", "probe", "map"} <= set(result)
    assert set(result["models"]) == {"scratch", "finetuned"}
    for model in result["models"].values():
        assert isinstance(model["known"], bool)
        assert np.asarray(model["gradcam"]).shape == (28, 28) and np.asarray(model["occlusion"]).shape == (28, 28)
        assert 0 <= np.min(model["gradcam"]) and np.max(model["gradcam"]) <= 1
    probe = result["probe"]
    assert probe["true_class"] == "1_digits"
    assert set(probe["transforms"]) == {"rotation", "scale", "thickness", "shift"}
    for model in probe["models"].values():
        assert all(len(curve) == 25 for curve in model["p_answer"].values())
        assert all(len(curve) == 25 for curve in model["p_true"].values())
    fake = tmp_path / "notes.png"
    fake.write_text("not an image")
    with pytest.raises(AppError, match="could not be read"):
        client.predict(handle_file(str(fake)), "shipped", "", api_name="/explain")
    assert client.predict(handle_file(str(digit_file)), api_name="/classify")       # the server is fine
