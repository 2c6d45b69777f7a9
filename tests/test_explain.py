"""Novelty, Grad-CAM, occlusion, feature maps, the robustness probe and the map placement."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from conftest import ROOT

SHIPPED = ROOT / "checkpoints"


# ----------------------------------------------------------------------------- Grad-CAM

def _left_half_data(n: int = 320, seed: int = 0):
    """Class 1 when the left half has a square blob; the right half of every image, of either
    class, has random strokes that say nothing about the class."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 28, 28, 1), np.float32)
    y = rng.integers(0, 2, n)
    for i in range(n):
        for _ in range(3):                                       # distractors, right half
            r, c = rng.integers(2, 26), rng.integers(15, 26)
            if rng.random() < 0.5:
                x[i, r, c - 2:c + 3] = 1.0
            else:
                x[i, max(0, r - 2):r + 3, c] = 1.0
        if y[i]:
            r, c = rng.integers(4, 22), rng.integers(3, 11)
            x[i, r - 3:r + 3, c - 3:c + 3] = 1.0                # the class, left half
    return x, y


def _convs(x, prefix: str):
    import keras

    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name=f"{prefix}conv1")(x)
    return keras.layers.Conv2D(8, 3, padding="same", activation="relu", name=f"{prefix}conv2")(x)


def _trained(nested: bool):
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((28, 28, 1), name="image")
    if nested:
        inner_in = keras.Input((28, 28, 1))
        inner = keras.Model(inner_in, keras.layers.GlobalAveragePooling2D()(_convs(inner_in, "inner_")),
                            name="backbone")
        pooled = inner(inputs)
    else:
        pooled = keras.layers.GlobalAveragePooling2D()(_convs(inputs, ""))
    x = keras.layers.Dense(8, activation="relu", name="embedding")(pooled)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="probabilities")(x))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x_train, y_train = _left_half_data()
    model.fit(x_train, y_train, epochs=25, batch_size=32, verbose=0)
    return model


@pytest.mark.parametrize("nested", [pytest.param(False, marks=pytest.mark.slow), True],   # nested: as fine-tuned
                         ids=["plain", "nested-backbone"])
def test_grad_cam_lights_the_half_the_class_depends_on(nested):
    from cvdemo.explain.attribution import GradCam, occlusion

    model = _trained(nested)
    x, y = _left_half_data(40, seed=1)
    assert (model.predict(x, verbose=0).argmax(1) == y).mean() >= 0.9, "the tiny model did not learn its task"
    cam = GradCam(model)
    assert cam.layer == ("inner_conv2" if nested else "conv2")
    positive = x[y == 1]
    heat = cam(positive, np.ones(len(positive), int))
    assert heat.shape == positive.shape[:3] and heat.min() >= 0 and heat.max() <= 1
    left, right = heat[:, :, :14].sum(), heat[:, :, 14:].sum()
    assert left > 2 * right, (left, right)
    # occlusion, which needs no gradients, agrees on where the evidence is
    occluded = np.stack([occlusion(lambda b: model.predict(b, verbose=0), image, 1) for image in positive[:8]])
    assert occluded[:, :, :14].sum() > 2 * occluded[:, :, 14:].sum()


# ----------------------------------------------------------------------------- novelty

def test_the_threshold_is_fitted_on_validation_images_only(tiny_checkpoints):
    """The stored threshold is the quantile of the validation images' scores: training images
    are in the bank (distance ~0), so letting them into the fit would lower it."""
    from cvdemo import checkpoints
    from cvdemo.explain.calibrate import embedder, recorded_split
    from cvdemo.explain.novelty import NoveltyModel

    for name in ("scratch", "finetuned"):
        loaded = checkpoints.load(tiny_checkpoints, name)
        stored = NoveltyModel.from_meta(loaded.meta)
        assert stored is not None and loaded.meta["novelty"]["fitted_on"] == "validation split"
        split = recorded_split(loaded.meta)
        x_train, x_val = split.x_train, split.x_val
        embed = embedder(loaded.model)
        on_val = np.quantile(stored.scores(embed(x_val)), stored.quantile)
        assert stored.threshold == pytest.approx(on_val, rel=1e-4)
        leaked = np.quantile(stored.scores(embed(np.concatenate([x_train, x_val]))), stored.quantile)
        assert leaked < stored.threshold * 0.999


def test_fit_keeps_the_bank_from_training_and_the_threshold_from_validation():
    from cvdemo.explain.novelty import NoveltyModel, fit

    rng = np.random.default_rng(0)
    train = rng.normal(0, 1, (300, 4)).astype(np.float32)
    val = rng.normal(0, 1, (100, 4)).astype(np.float32) * 2       # a wider validation set
    model = fit(lambda a: a, train, val, k=5, bank_size=200)
    assert model.bank.shape == (200, 4)
    assert model.threshold == pytest.approx(np.quantile(model.scores(val), model.quantile), rel=1e-5)
    again = NoveltyModel.from_meta({"novelty": json.loads(json.dumps(model.to_meta()))})
    assert again.threshold == model.threshold and np.allclose(again.scores(val), model.scores(val))
    assert NoveltyModel.from_meta({}) is None                       # an old checkpoint: no verdict


def _drawn(digit: str) -> Image.Image:
    image = Image.new("L", (280, 280), 255)
    draw = ImageDraw.Draw(image)
    if digit == "7":
        draw.line([(60, 60), (220, 60), (120, 240)], fill=0, width=22)
    else:
        draw.line([(140, 40), (140, 240)], fill=0, width=22)
    return image


@pytest.fixture(scope="module")
def shipped():
    if not (SHIPPED / "scratch.json").exists():
        pytest.skip("no shipped checkpoints")
    from cvdemo.service import Service

    return Service(checkpoints=SHIPPED, warm=False)


def test_a_drawn_7_is_more_novel_than_a_drawn_1_for_every_shipped_model(shipped):
    seven, one = shipped.classify(_drawn("7")), shipped.classify(_drawn("1"))
    for name in seven.models:
        assert seven.models[name].novelty > one.models[name].novelty, name
    assert one.known is True and seven.known is False
    assert one.looks_like is None
    assert seven.looks_like is not None and seven.looks_like.label == "7"


def test_an_old_checkpoint_without_novelty_still_loads_and_says_so(tiny_checkpoints, tmp_path):
    import shutil

    from cvdemo import checkpoints
    from cvdemo.service import Service

    folder = tmp_path / "old"
    shutil.copytree(tiny_checkpoints, folder)
    for name in ("scratch", "finetuned"):
        meta = json.loads((folder / f"{name}.json").read_text())
        meta.pop("novelty")
        (folder / f"{name}.json").write_text(json.dumps(meta))
    assert "novelty" not in checkpoints.read_meta(folder, "scratch")
    result = Service(checkpoints=folder, warm=False).classify(_drawn("1"))
    assert result.known is None and all(a.known is None and a.novelty is None for a in result.models.values())


# ----------------------------------------------------------------------------- probe

def test_probe_transforms_move_the_ink_the_way_they_say():
    from cvdemo.explain.probe import transformed

    bar = np.zeros((28, 28, 1), np.float32)
    bar[4:12, 14] = 1.0                                                # above the centre
    turned = np.argwhere(transformed(bar, "rotation", 90)[..., 0] > 0.5).mean(0)
    assert turned[1] < 10 and abs(turned[0] - 13.5) < 2              # anticlockwise: to the left
    assert np.argwhere(transformed(bar, "shift", 3)[..., 0] > 0.5)[:, 1].mean() == pytest.approx(17, abs=0.5)
    assert transformed(bar, "scale", 1.5)[..., 0].sum() > 1.3 * bar.sum()
    inks = [transformed(bar, "thickness", v).sum() for v in (-1, 0, 1, 2)]
    assert inks == sorted(inks) and inks[1] == pytest.approx(bar.sum(), rel=1e-5)


def test_probe_curves_have_every_step_and_undo_a_rotated_glyph(shipped):
    from cvdemo.explain.probe import STEPS, TRANSFORMS, probe
    from cvdemo.images import preprocess

    upright = preprocess(_drawn("1"))
    tilted = np.asarray(Image.fromarray((upright[..., 0] * 255).astype(np.uint8)).rotate(-60), np.float32)[..., None] / 255
    served = shipped.model_set().models
    curves = probe(tilted, {n: (m, m.checkpoint.class_names) for n, m in served.items()}, "1_digits")
    for name in served:
        for transform in TRANSFORMS:
            assert curves.answer_curves[name][transform].shape == (STEPS,)
            assert len(curves.labels[name][transform]) == STEPS
        rotation = curves.grid["rotation"]
        back = curves.true_curves[name]["rotation"][np.argmin(abs(rotation - 60))]
        assert back > 0.9, (name, back)                 # turning it back makes it a 1 again
    document = curves.as_dict()
    assert set(document["transforms"]) == set(TRANSFORMS) and document["true_class"] == "1_digits"


# ----------------------------------------------------------------------------- explain, API shapes

@pytest.mark.slow     # 19 s; test_app_api's /explain checks the same numbers in the default run
def test_explain_gives_every_picture_and_number(tiny_checkpoints, tmp_path):
    from cvdemo.explain.placement import place
    from cvdemo.service import Service

    service = Service(checkpoints=tiny_checkpoints, warm=False, analysis_cache=tmp_path / "cache")
    explanation = service.explain(_drawn("1"), true_class="1", with_map="compute")
    document = json.loads(json.dumps(explanation.as_dict()))
    assert set(document) >= {"verdict", "known", "looks_like", "models", "probe", "map"}
    for model in document["models"].values():
        assert {"label", "probabilities", "known", "novelty", "looks_like", "gradcam", "occlusion"} <= set(model)
        assert np.asarray(model["gradcam"]).shape == (28, 28) and np.asarray(model["occlusion"]).shape == (28, 28)
    assert [b["shape"][0] for b in document["models"]["scratch"]["feature_maps"]] == [28, 14, 7]
    assert document["probe"]["true_class"] == "1_digits"
    assert len(document["map"]["nearest"]) == 5 and "file" in document["map"]["nearest"][0]
    assert not document["map"]["nearest"][0]["file"].startswith("/")
    # the star sits among its nearest mapped points
    coords = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    spot = place(np.eye(3), np.arange(3), coords, np.array([1.0, 0.0, 0.0]), k=1)
    assert np.allclose(spot.point, [0.0, 0.0]) and spot.neighbours == [0]


@pytest.mark.slow     # 12 s
def test_explain_cli_writes_pictures_and_json(tiny_checkpoints, tmp_path, capsys):
    from cvdemo import cli

    image = tmp_path / "one.png"
    _drawn("1").save(image)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    out = tmp_path / "out"
    code = cli.main(["explain", str(image), str(bad), "--out", str(out), "--no-map", "--json",
                     "--checkpoints", str(tiny_checkpoints)])
    captured = capsys.readouterr()
    assert code == 1 and "Traceback" not in captured.err
    good, failed = json.loads(captured.out)                      # stdout is JSON only
    assert "error" in failed and "could not be read" in failed["error"]
    assert {"verdict", "known", "models", "probe", "files"} <= set(good)
    for what in ("gradcam_scratch", "occlusion_finetuned", "probe"):
        assert Path(good["files"][what]).stat().st_size > 0
        assert Image.open(good["files"][what]).size[0] > 0
    assert any(k.startswith("features_scratch_") for k in good["files"])
    assert cli.main(["explain", str(tmp_path / "missing.png"), "--out", str(out), "--no-map",
                     "--checkpoints", str(tiny_checkpoints)]) == 1
    assert "missing.png" in capsys.readouterr().err
