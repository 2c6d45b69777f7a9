"""Benchmark sections on the models: training time and accuracy, robustness of the shipped
checkpoints on out-of-distribution sets, and in-process classification latency."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from cvdemo import config

from .options import MODELS, BenchError, BenchOptions, Tick, _timed, summarize


def bench_train(opts: BenchOptions, tick: Tick) -> dict:
    """Wall time of ``fit_*`` (build, epochs, validation) and val accuracy of each model."""
    import keras

    from cvdemo.config import FinetuneConfig, TrainConfig
    from cvdemo.data import ensure_sample_dataset
    from cvdemo.train import fit_classifier, fit_finetuned, prepare

    data = Path(opts.data)
    if data.resolve() == config.SAMPLE_DATA_DIR.resolve():
        ensure_sample_dataset(data)
    cfg = TrainConfig(epochs=opts.epochs, max_images_per_class=opts.max_images_per_class)
    started = time.perf_counter()
    prepared = prepare(data, cfg)
    result: dict = {"_data": {"prepare_s": round(time.perf_counter() - started, 2),
                              "n_train": int(len(prepared.train_idx)), "n_val": int(len(prepared.val_idx)),
                              "epochs": opts.epochs, "repeats": opts.train_repeats}}
    for name in MODELS:
        walls, fits, accs = [], [], []
        try:
            for _ in range(opts.train_repeats):
                keras.backend.clear_session()
                t0 = time.perf_counter()
                if name == "finetuned":
                    trained = fit_finetuned(prepared, cfg, FinetuneConfig(), checkpoints=Path(opts.checkpoints))
                else:
                    trained = fit_classifier(name, prepared, cfg)
                walls.append(time.perf_counter() - t0)
                fits.append(trained.meta["train_seconds"])
                accs.append(trained.meta["val_accuracy"])
                del trained
                tick(f"training {name}")
        except Exception as err:          # e.g. no digits backbone: report it, measure the rest
            result[name] = {"error": f"{type(err).__name__}: {err}"}
            continue
        stats = summarize(walls, scale=1.0, digits=2)
        result[name] = {"seconds": stats["p50"], "min_s": stats["min"], "max_s": stats["max"],
                        "fit_seconds": round(float(np.median(fits)), 2),
                        "val_accuracy": round(float(np.median(accs)), 5),
                        "val_accuracy_min": round(float(min(accs)), 5), "epochs": opts.epochs}
    return result


def bench_robustness(checkpoints: Path, workdir: Path) -> dict:
    """Accuracy of the shipped checkpoints on the out-of-distribution sets of ``cvdemo.testsets``."""
    from cvdemo import checkpoints as ckpt
    from cvdemo.evaluate import evaluate_folder
    from cvdemo.testsets import write_testsets

    loaded = ckpt.load_all(Path(checkpoints))
    if not loaded:
        raise BenchError(f"no checkpoints in {checkpoints}")
    result = {}
    for set_name, folder in write_testsets(workdir / "testsets").items():
        document = evaluate_folder(loaded, folder, skip_other_classes=True)
        refused = len(document.get("skipped", []))
        total = document["n_images"] + refused
        # an image the preprocessing refuses ("no digit found") counts as a wrong answer
        scores = {name: round(m["accuracy"] * document["n_images"] / total, 5) for name, m in document["models"].items()}
        result[set_name] = {"n": total, "refused": refused, **scores, "best": max(scores.values())}
    return result


def bench_preprocess(workdir: Path, repeats: int) -> dict:
    """``images.preprocess`` on a 12 MP phone JPEG of paper on a table, beside small inputs, same run."""
    import io

    from PIL import Image

    from cvdemo.images import preprocess
    from cvdemo.testsets.paper import digit_ink, photograph

    rng = np.random.default_rng(config.SEED)
    photo = photograph(digit_ink(2, "mnist", 0, rng), rng, table=True, side=1000)
    big = photo.resize((4000, 3000) if photo.width > photo.height else (3000, 4000), Image.Resampling.BICUBIC)
    pixels = np.asarray(big, np.float32) + rng.normal(0, 3, (big.height, big.width, 1))   # a sensor's full-size noise
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
    inputs = {"phone_12mp": buffer.getvalue(), "sketch": write_sketch(workdir / "sketch.png").read_bytes(),
              "scan_100px": next((config.DATABASE_DIR / "0").glob("*.jpg")).read_bytes()}
    result = {"phone_12mp_bytes": len(inputs["phone_12mp"])}
    for name, data in inputs.items():
        preprocess(data)
        result[name] = summarize(_timed(lambda data=data: preprocess(data), repeats if name != "phone_12mp" else
                                        max(5, repeats // 5)))
    return result


def write_sketch(path: Path, digit: int = 2, seed: int = config.SEED) -> Path:
    """One digit drawn like a sketchpad user (RGBA canvas, transparent background) as a PNG."""
    from cvdemo.testsets import draw_canvas

    image = draw_canvas(digit, np.random.default_rng(seed), canvas=280, brush=18, scale=200)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def bench_classify(checkpoints: Path, image: Path, repeats: int, workdir: Path) -> dict:
    """``Service.classify`` on one file: decode -> preprocess -> every model of the shipped set,
    as the app serves it (LiteRT where it answers like Keras), alternated call by call with the
    same service on the compiled Keras function, the same-run baseline (``keras``)."""
    from cvdemo.service import Service

    served = {kind: Service(checkpoints=Path(checkpoints), runs=workdir / "runs", warm=True, inference=inference)
              for kind, inference in (("app", None), ("keras", "keras"))}
    for service in served.values():
        ready = [m.served.ready.wait(300) for m in service.model_set().models.values()]
        if not all(ready):
            raise BenchError("a LiteRT conversion did not finish within 300 s")
    first = {kind: service.classify(str(image)) for kind, service in served.items()}     # warm
    timings: dict[str, list[float]] = {kind: [] for kind in served}
    per_model: dict[str, dict[str, list[float]]] = {kind: {n: [] for n in first["app"].models} for kind in served}
    for _ in range(repeats):
        for kind, service in served.items():
            started = time.perf_counter()
            answer = service.classify(str(image))
            timings[kind].append(time.perf_counter() - started)
            for name, model_answer in answer.models.items():
                per_model[kind][name].append(model_answer.ms / 1000)
    summary = summarize(timings["app"])
    summary["models"] = list(first["app"].models)
    summary["runtime"] = {name: a.runtime for name, a in first["app"].models.items()}
    summary["per_model_p50"] = {name: summarize(v)["p50"] for name, v in per_model["app"].items()}
    summary["keras"] = {**summarize(timings["keras"]),
                        "per_model_p50": {name: summarize(v)["p50"] for name, v in per_model["keras"].items()}}
    summary["keras_ratio"] = round(summary["keras"]["p50"] / max(summary["p50"], 1e-9), 2)
    return summary
