"""A public server exposes nothing: forged file values, path traversal, Gradio's file routes,
served folders, model loading. Raw HTTP where gradio_client would "help" (it uploads any local
path it is given, so a forged server path can only be sent by hand)."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import httpx
import pytest

from cvdemo import config

from app_server import serving, tiny_service
from conftest import ROOT, digit_image

pytest.importorskip("gradio")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

FILE_DATA = {"_type": "gradio.FileData"}


@pytest.fixture(scope="module")
def server(tiny_checkpoints, tmp_path_factory):
    root = tmp_path_factory.mktemp("security")
    service = tiny_service(tiny_checkpoints, root, shared_additions=True)   # additions go into the database
    (service.database / ".secret.png").write_bytes(b"dotfile")
    secret = root / "secret.png"                  # an image outside every served folder
    digit_image(3, 1).save(secret)
    with serving(service) as (url, demo):
        yield url.rstrip("/"), service, secret, demo


def call(url: str, api: str, data: list) -> tuple[str, dict | list | None]:
    """POST /gradio_api/call/<api>, then read the event stream -> ("complete" | "error", payload)."""
    started = httpx.post(f"{url}/gradio_api/call/{api}", json={"data": data}, timeout=30)
    assert started.status_code == 200, started.text
    stream = httpx.get(f"{url}/gradio_api/call/{api}/{started.json()['event_id']}", timeout=120).text
    events = [block for block in stream.split("\n\n") if block.strip()]
    kind, _, payload = events[-1].partition("\ndata: ")
    return kind.replace("event: ", "").strip(), json.loads(payload) if payload.strip() else None


def forged(path: str, meta: bool) -> dict:
    value = {"path": path, "orig_name": "digit.png"}
    return {**value, "meta": FILE_DATA} if meta else value


TARGETS = ["/etc/passwd", "../app.py", "secret", str(ROOT / "checkpoints" / "scratch.json"), "secret/../secret.png"]


def _target(name: str, secret: Path) -> str:
    return {"secret": str(secret), "secret/../secret.png": f"{secret.parent}/x/../{secret.name}"}.get(name, name)


@pytest.mark.parametrize("meta", [True, False], ids=["with-meta", "meta-less"])
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("api, build", [
    ("classify", lambda f: [f, "shipped"]),
    ("classify_upload", lambda f: [f]),
    ("classify_upload_live", lambda f: [f]),
    ("retrieve", lambda f: [f, 3]),
    ("retrieve_live", lambda f: [f, 3]),
    ("add_to_database", lambda f: [[f], "1"]),
    ("dataset_counts", lambda f: ["My own zip of class folders", f]),
    ("classify_drawing", lambda f: [f["path"]]),        # a path where the canvas sends a data URL
], ids=lambda v: v if isinstance(v, str) else "")
def test_forged_file_values_never_reach_a_file(server, api, build, target, meta):
    """A file value naming a server path is refused, and no byte of it comes back."""
    url, service, secret, _ = server
    before = sorted(p for p in service.database.rglob("*") if ".index" not in p.parts)
    kind, payload = call(url, api, build(forged(_target(target, secret), meta)))
    text = json.dumps(payload)
    assert kind == "error", f"{api} accepted {target}: {text[:300]}"
    assert "root:" not in text and "secret.png" not in text and "does not exist" not in text
    assert sorted(p for p in service.database.rglob("*") if ".index" not in p.parts) == before


def test_uploaded_files_still_work(server):
    url, _, secret, _ = server
    client = Client(url, verbose=False)
    assert set(client.predict(handle_file(str(secret)), "shipped", api_name="/classify")) == {"scratch", "finetuned"}


@pytest.mark.parametrize("route", [
    "/gradio_api/file=/etc/passwd", "/gradio_api/file=../app.py", "/gradio_api/file=app.py",
    "/gradio_api/file=%2Fetc%2Fpasswd", "/gradio_api/file=..%2Fapp.py", "/gradio_api/file=/proc/self/environ",
    "/gradio_api/file=checkpoints/scratch.json", "/gradio_api/file=checkpoints/scratch.keras",
    "/gradio_api/file=.git/config", "/gradio_api/file=.cache", "/gradio_api/file=cvdemo/config.py",
    "/gradio_api/file={ROOT}/app.py", "/gradio_api/file={ROOT}/runs/../app.py",
    "/gradio_api/file={ROOT}/query_images/../app.py", "/gradio_api/file={DB}/0/0_0.jpg",
    "/gradio_api/file={DB}/.secret.png", "/gradio_api/file={DB}/.index/pixels.json",
    "/gradio_api/file={SECRET}", "/gradio_api/file={CKPT}/scratch.keras", "/gradio_api/file={CKPT}/scratch.json",
    "/file=/etc/passwd", "/static/../app.py", "/assets/../app.py", "/gradio_api/static/../../app.py",
    "/gradio_api/file=http://127.0.0.1:1/x", "/gradio_api/file=file:///etc/passwd",
])
def test_file_routes_serve_nothing_outside_the_app(server, route):
    url, service, secret, _ = server
    service.retrieve(service.database / "0" / "0_0.jpg")   # makes sure .index/ exists
    path = route.format(ROOT=ROOT, DB=service.database, SECRET=secret, CKPT=service.checkpoints)
    response = httpx.get(url + path, timeout=30, follow_redirects=False)
    assert response.status_code in (403, 404, 400), (path, response.status_code, response.text[:200])
    assert "root:" not in response.text and "import" not in response.text


def test_allowed_paths_are_only_the_runs_folders(server):
    _, service, _, demo = server
    allowed = {Path(p).resolve() for p in demo.allowed_paths}
    assert allowed <= {config.RUNS_DIR.resolve(), service.runs.resolve()}
    for folder in (config.ROOT, config.CHECKPOINT_DIR, config.CACHE_DIR, config.DATABASE_DIR, config.QUERY_DIR):
        assert folder.resolve() not in allowed


def test_examples_are_served_from_gradios_cache_not_the_repo(server):
    url, *_ = server
    page = httpx.get(f"{url}/config", timeout=30).json()
    samples = [s for c in page["components"] if c.get("type") == "dataset" for s in c["props"].get("samples", [])]
    paths = [json.dumps(s) for s in samples]
    assert all(str(config.QUERY_DIR) not in p for p in paths)


def test_model_set_and_label_traversal(server, tmp_path):
    url, service, _, _ = server
    client = Client(url, verbose=False)
    image = tmp_path / "five.png"
    digit_image(5, 2).save(image)
    for evil in ("run-../../etc", "../checkpoints", "/etc", "run-" + "a" * 5000, "shipped/../.."):
        with pytest.raises(AppError, match="not available"):
            client.predict(handle_file(str(image)), evil, api_name="/classify")
    with pytest.raises(AppError):
        client.predict("run-../../etc", api_name="/choose_model_set")
    outside = {p for p in service.database.parent.rglob("*")} - {p for p in service.database.rglob("*")}
    report, *_ = client.predict([handle_file(str(image))], "../../../escaped", api_name="/add_to_database")
    assert "Added **1**" in report
    landed = [p for p in service.database.rglob("five*.png")]
    assert len(landed) == 1 and landed[0].parent == service.database / "escaped"
    assert {p for p in service.database.parent.rglob("*")} - {p for p in service.database.rglob("*")} == outside


def test_hostile_upload_names_are_sanitised(server, tmp_path):
    """The multipart file name is the attacker's: it must not steer where the file is written."""
    url, service, _, _ = server
    digit = tmp_path / "d.png"
    digit_image(4, 3).save(digit)
    names = ["../../../evil.png", "/etc/evil.png", "..\\..\\evil.png", "ünï çødé ✍.png", "a" * 300 + ".png",
             ".hidden.png", "con.png"]
    for i, name in enumerate(names):
        digit_image(4, 10 + i).save(digit)
        with open(digit, "rb") as f:
            response = httpx.post(f"{url}/gradio_api/upload", files={"files": (name, f, "image/png")}, timeout=30)
        assert response.status_code == 200, response.text
        uploaded = response.json()[0]
        kind, payload = call(url, "add_to_database", [[{"path": uploaded, "orig_name": name, "meta": FILE_DATA}], "4"])
        assert kind == "complete", payload
    added = sorted(p for p in (service.database / "4").iterdir())
    assert len(added) == len(names)
    for path in added:
        assert path.parent == service.database / "4"
        assert not path.name.startswith(".") and len(path.name) <= 80
        assert all(c.isalnum() or c in "-_." for c in path.name), path.name
    assert not (service.database.parent / "evil.png").exists() and not Path("/etc/evil.png").exists()


def test_uploaded_models_are_never_loaded(server):
    """Models are only ever loaded from checkpoint folders, in Keras safe mode, without compile."""
    calls = []
    for path in [ROOT / "app.py", *sorted((ROOT / "cvdemo").rglob("*.py")), *sorted((ROOT / "webapp").rglob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = ast.unparse(node.func)
                if name.endswith(("load_model", "pickle.load", "pickle.loads", "torch.load", "joblib.load")):
                    calls.append((path.name, name, {k.arg: ast.unparse(k.value) for k in node.keywords}))
    assert calls, "expected the checkpoint loader"
    for module, name, keywords in calls:
        assert module == "checkpoints.py" and name == "keras.saving.load_model", (module, name)
        assert keywords.get("safe_mode") == "True" and keywords.get("compile") == "False"
    assert len(calls) == 1, calls                 # one loader: checkpoints.load_model_file
    demo = server[3]
    accepted = [t for c in demo.config["components"] for t in (c.get("props", {}).get("file_types") or [])]
    assert accepted and not {t.lower() for t in accepted} & {".keras", ".h5", ".pkl", ".pickle", ".npy", ".pt"}


def test_lambda_layers_are_refused_on_load(tmp_path):
    """A .keras file holding a Lambda layer (arbitrary code) is refused by the loader."""
    import keras

    from cvdemo import checkpoints as ckpt

    inputs = keras.Input((28, 28, 1))
    outputs = keras.layers.Lambda(lambda x: x * 2)(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(outputs))
    ckpt.save(model, {"class_names": ["a", "b", "c"], "input_shape": [28, 28, 1]}, tmp_path, "evil")
    with pytest.raises(ckpt.CheckpointError, match="could not be loaded"):
        ckpt.load(tmp_path, "evil")


def test_gradio_is_pinned_to_a_version_without_known_advisories():
    import gradio

    assert gradio.__version__ == "6.31.0"
    pins = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
            if line.strip().lower().startswith("gradio")]
    assert pins and all(p.startswith(("gradio==6.31.0", "gradio>=6.31")) or p.startswith("gradio_client")
                        or p.startswith("gradio-client") for p in pins), pins
    readme = (ROOT / "README.md").read_text()
    assert 'sdk_version: "6.31.0"' in readme or "sdk_version: 6.31.0" in readme


def test_run_metadata_served_to_anyone_holds_no_session_hash(server, tmp_path):
    """runs/ is served (the Train tab's downloads): its run.json must not leak who trained it."""
    from cvdemo.config import TrainConfig

    from conftest import write_digits

    _, service, _, _ = server
    job = service.start_training(write_digits(tmp_path / "d", per_class=4), ("scratch",),
                                 TrainConfig(epochs=1, batch_size=8), owner="SESSION-HASH-1234")
    assert job.done.wait(240) and job.error is None, job.error
    text = (service.runs / job.id / "run.json").read_text()
    assert "SESSION-HASH-1234" not in text
