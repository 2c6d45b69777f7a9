"""The REST API (webapp.rest): the shapes of /api/v1/classify and /api/v1/retrieve, the same
errors as the decoder with their HTTP statuses, the refusal of a path sent instead of a file,
429 when saturated, the OpenAPI schema and its offline page, and the routes beside a launched
Gradio app (whose gradio_client calls keep working)."""
from __future__ import annotations

import io
import threading
from types import SimpleNamespace

import pytest

from cvdemo import config

from app_server import serving, tiny_service
from conftest import digit_image
from inputs import make_inputs

pytest.importorskip("fastapi")
from fastapi import FastAPI  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from webapp.rest import Rest  # noqa: E402


def png(digit: int = 2, index: int = 0) -> bytes:
    buffer = io.BytesIO()
    digit_image(digit, index).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def service(tiny_checkpoints, tmp_path_factory):
    return tiny_service(tiny_checkpoints, tmp_path_factory.mktemp("rest"))


@pytest.fixture(scope="module")
def api(service):
    return TestClient(FastAPI(routes=Rest(service).routes))


def test_classify_answers_the_shape_of_the_service(api, service):
    answer = api.post("/api/v1/classify", files={"image": ("two.png", png(2), "image/png")})
    assert answer.status_code == 200, answer.text
    expected = service.classify(png(2), name="two.png").as_dict()
    assert set(answer.json()) == set(expected) == set(service.model_set().models)
    for name, model in answer.json().items():
        assert set(model) == {"label", "probabilities", "known", "novelty", "runtime", "looks_like"}
        assert model["label"] == expected[name]["label"]
        assert model["probabilities"] == pytest.approx(expected[name]["probabilities"], abs=1e-5)


def test_retrieve_answers_ranked_hits_and_agreement(api):
    answer = api.post("/api/v1/retrieve", files={"image": ("two.png", png(2), "image/png")}, data={"k": "3"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [hit["rank"] for hit in body["results"]] == [1, 2, 3]
    assert all(set(hit) == {"rank", "path", "label", "distance"} for hit in body["results"])
    assert not any(hit["path"].startswith("/") for hit in body["results"])     # never the server's own paths
    distances = [hit["distance"] for hit in body["results"]]
    assert distances == sorted(distances)
    assert set(body["agreement"]) == {"majority", "votes", "hits", "said", "agree"}


@pytest.mark.parametrize("route", ["/api/v1/classify", "/api/v1/retrieve"])
def test_every_broken_file_is_a_400_or_413_with_the_decoders_message(api, service, route, tmp_path):
    from cvdemo.images import ImageError

    for case, (path, expect) in make_inputs(tmp_path).items():
        if expect.kind != "error":
            continue
        data = path.read_bytes()
        answer = api.post(route, files={"image": (path.name, data, "application/octet-stream")})
        assert answer.status_code in (400, 413), (case, answer.status_code, answer.text)
        message = answer.json()["detail"]
        assert all(word in message.lower() for word in expect.words), (case, message)
        with pytest.raises(ImageError) as raised:
            service.classify(data, name=path.name)
        assert message == str(raised.value), case          # one message, whichever way it is asked


def test_too_large_files_and_images_are_413(api):
    answer = api.post("/api/v1/classify", files={"image": ("big.png", b"\0" * (config.MAX_IMAGE_BYTES + 100_000))})
    assert answer.status_code == 413 and "MB limit" in answer.json()["detail"]
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (6000, 5000), 255).save(buffer, "PNG")       # 30 MP in a small file
    answer = api.post("/api/v1/classify", files={"image": ("huge.png", buffer.getvalue(), "image/png")})
    assert answer.status_code == 413 and "megapixels" in answer.json()["detail"]


@pytest.mark.parametrize("form", [
    {"data": {"image": "/etc/passwd"}},                        # a path as text, not a file
    {"files": {"image": (None, "/etc/passwd")}},               # the same as a multipart text field
    {"files": {"image": (None, "/etc/passwd")}, "data": {"model_set": "shipped"}},
    {"data": {"image": "../images_database/2/2_1.png"}},
    {"data": {"model_set": "shipped"}},                         # no image at all
    {"files": {"image": ("two.png", png(2))}, "data": {"path": "/etc/passwd"}},   # a field it does not take
])
def test_a_path_or_text_instead_of_a_file_is_refused(api, form):
    answer = api.post("/api/v1/classify", **form)
    assert answer.status_code == 400
    detail = answer.json()["detail"]
    assert "'image'" in detail or "Unknown field 'path'" in detail
    if "files" in form and form["files"]["image"][0] is None:
        assert "must be a file upload, not text or a path" in detail


def test_bad_fields_and_bodies(api):
    two = {"image": ("two.png", png(2), "image/png")}
    assert api.post("/api/v1/classify", files=two, data={"model_set": "run-nope"}).status_code == 404
    assert api.post("/api/v1/classify", files=two, data={"model_set": "../../etc"}).status_code == 404
    for k in ("0", "100000", "many"):
        answer = api.post("/api/v1/retrieve", files=two, data={"k": k})
        assert answer.status_code == 400 and "k must be" in answer.json()["detail"], k
    answer = api.post("/api/v1/classify", content=png(2), headers={"content-type": "image/png"})
    assert answer.status_code == 400 and "multipart" in answer.json()["detail"]
    assert api.get("/api/v1/classify").status_code == 405


def test_a_saturated_server_answers_429_and_recovers():
    release, entered = threading.Event(), threading.Event()

    def slow_classify(*args, **kwargs):
        entered.set()
        release.wait(10)
        return SimpleNamespace(as_dict=lambda: {"scratch": {"label": "2"}})

    fake = SimpleNamespace(classify=slow_classify, limits=config.PUBLIC_LIMITS)
    api = TestClient(FastAPI(routes=Rest(fake, max_inflight=1).routes))
    files = {"image": ("two.png", png(2), "image/png")}
    first = {}
    worker = threading.Thread(target=lambda: first.setdefault("answer", api.post("/api/v1/classify", files=files)))
    worker.start()
    assert entered.wait(10)
    busy = api.post("/api/v1/classify", files=files)
    assert busy.status_code == 429 and busy.headers["retry-after"] == "1" and "busy" in busy.json()["detail"]
    release.set()
    worker.join(10)
    assert first["answer"].status_code == 200
    assert api.post("/api/v1/classify", files=files).status_code == 200


def test_the_openapi_schema_and_its_offline_page(api):
    schema = api.get("/api/v1/openapi.json").json()
    assert set(schema["paths"]) == {"/api/v1/classify", "/api/v1/retrieve"}
    body = schema["paths"]["/api/v1/classify"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["required"] == ["image"] and body["properties"]["image"]["format"] == "binary"
    assert {"400", "413", "429"} <= set(schema["paths"]["/api/v1/retrieve"]["post"]["responses"])
    page = api.get("/api/v1/docs")
    assert page.status_code == 200 and "curl -F image=@digit.png" in page.text
    assert "http" not in page.text.split("<body>")[0].replace("http-equiv", "")   # nothing fetched from elsewhere


def test_the_routes_serve_beside_the_launched_app(service):
    import httpx
    from gradio_client import Client, handle_file

    with serving(service) as (url, _):
        answer = httpx.post(f"{url.rstrip('/')}/api/v1/classify", files={"image": ("two.png", png(2), "image/png")})
        assert answer.status_code == 200
        bad = httpx.post(f"{url.rstrip('/')}/api/v1/classify", files={"image": ("x.png", b"not an image")})
        assert bad.status_code == 400 and "could not be read" in bad.json()["detail"]
        import tempfile
        with tempfile.NamedTemporaryFile(suffix=".png") as file:
            file.write(png(2))
            file.flush()
            through_gradio = Client(url, verbose=False).predict(handle_file(file.name), "shipped", api_name="/classify")
        assert {n: m["label"] for n, m in through_gradio.items()} == {n: m["label"] for n, m in answer.json().items()}
