"""The downloadable report bundle: figures, report.md, metrics.json, every model as .keras and
a TFLite file checked to answer like it, and a ``classify.py`` that uses cvdemo's preprocessing.
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np

from .. import config
from ..fsutil import atomic_write_bytes
from .cache import Analysis
from .compute import Progress

USAGE = '''"""Classify an image with a model from this bundle, using cvdemo's own preprocessing.

    python classify.py scratch.keras my_digit.png         # Keras (pip install cvdemo's requirements)
    python classify.py scratch.tflite my_digit.png        # LiteRT (the same model, converted)

Run it from a checkout of the cvdemo project (or with cvdemo on PYTHONPATH): the model expects
exactly what ``cvdemo.images.preprocess`` makes, (28, 28, 1) float32 in [0, 1], white ink on black.
"""
import json
import sys
from pathlib import Path

import numpy as np

from cvdemo.images import preprocess


def main(model_path: str, image_path: str) -> None:
    model_path = Path(model_path)
    meta = json.loads(model_path.with_suffix(".json").read_text())
    x = preprocess(image_path, meta.get("profile", "digits"), size=meta["input_shape"][0])[None]
    if model_path.suffix == ".tflite":
        from ai_edge_litert.interpreter import Interpreter    # pip install ai-edge-litert

        interpreter = Interpreter(model_path=str(model_path))
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x.astype(np.float32))
        interpreter.invoke()
        probabilities = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0]
    else:
        import keras

        import cvdemo.layers  # noqa: F401  registers the custom layers the fine-tuned model uses

        model = keras.saving.load_model(model_path, compile=False, safe_mode=True)
        probabilities = np.asarray(model(x, training=False))[0]
    for name, p in sorted(zip(meta["class_names"], probabilities), key=lambda t: -t[1]):
        print(f"{name}: {p:.3f}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python classify.py MODEL(.keras|.tflite) IMAGE")
    main(sys.argv[1], sys.argv[2])
'''


class ConversionError(RuntimeError):
    """A model that TFLite could not convert faithfully. ``str(err)`` is for the user."""


def to_tflite(model, sample: np.ndarray) -> bytes:
    """The model as LiteRT (``litert.convert``), checked to answer like Keras on ``sample``
    ((N, S, S, C) float32 model inputs) by ``litert.mismatch``; ConversionError otherwise."""
    from .. import litert

    try:
        flat = litert.convert(model)
    except Exception as err:
        raise ConversionError(f"TFLite conversion of {model.name} failed: {type(err).__name__}: {err}") from None
    why = litert.mismatch(lambda x: tflite_predict(flat, x), lambda x: np.asarray(model(x, training=False)), sample)
    if why:
        raise ConversionError(f"The TFLite conversion of {model.name} does not answer like the Keras model: {why}.")
    return flat


def tflite_predict(flat: bytes, images: np.ndarray) -> np.ndarray:
    """Probabilities of a TFLite model for (N, ...) images (``litert.LiteRTModel``)."""
    from ..litert import LiteRTModel

    return LiteRTModel(flat, outputs=1, pool=1)(np.asarray(images, np.float32))


def bundle(analysis: Analysis, checkpoints: dict, cache_dir: Path = config.CACHE_DIR,
           progress: Progress | None = None) -> Path:
    """A zip with the report (figures, report.md, metrics.json), each model as .keras + .json +
    .tflite, and ``classify.py`` / ``USAGE.md``. Cached beside the analysis; written atomically."""
    say = progress or (lambda fraction, message: None)
    target = Path(cache_dir) / "bundles" / f"cvdemo-report-{analysis.result.key}.zip"
    if target.is_file():
        say(1.0, "bundle from cache")
        return target
    sample = analysis.result.eval_images
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in [*analysis.figures.values(), analysis.report_md, analysis.metrics_json]:
            archive.write(path, f"report/{path.name}")
        for k, (name, ckpt) in enumerate(checkpoints.items()):
            say(k / len(checkpoints), f"converting {name} to TFLite")
            archive.write(ckpt.path, f"models/{name}.keras")
            archive.writestr(f"models/{name}.json", json.dumps(ckpt.meta, indent=2))
            check = sample[:8] if sample is not None and len(sample) else np.zeros((1, *ckpt.input_shape), np.float32)
            archive.writestr(f"models/{name}.tflite", to_tflite(ckpt.model, check))
        archive.writestr("classify.py", USAGE)
        archive.writestr("USAGE.md", _usage_md(list(checkpoints)))
    atomic_write_bytes(target, buffer.getvalue())
    say(1.0, "bundle ready")
    return target


def _usage_md(models: list[str]) -> str:
    first = models[0] if models else "scratch"
    return f"""# Using these models

`models/` holds each model as a Keras file (`.keras`, with its metadata in `.json`) and as a
TFLite file (`.tflite`, converted with `tf.lite.TFLiteConverter.from_keras_model` and checked to
give the same predictions). Models: {', '.join(models)}.

Every model expects the output of `cvdemo.images.preprocess` (28x28x1 float32 in [0, 1], white
ink on black, digit centred in a 20-pixel box), so classify with the same preprocessing:

```python
import keras, numpy as np
import cvdemo.layers                      # registers BackbonePreprocess (used by the fine-tuned model)
from cvdemo.images import preprocess

model = keras.saving.load_model("models/{first}.keras", compile=False, safe_mode=True)
x = preprocess("my_digit.png")[None]      # (1, 28, 28, 1)
print(np.asarray(model(x, training=False))[0])
```

or from the command line: `python classify.py models/{first}.tflite my_digit.png`.
The report is in `report/report.md`.
"""
