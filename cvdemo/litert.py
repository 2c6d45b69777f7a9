"""Inference on LiteRT where it answers like Keras: a Keras model converted to a flat buffer once
(cached under ``.cache/litert/``, keyed by the model's architecture and weights), served by a small
pool of ``ai_edge_litert`` interpreters, and trusted only after it matches the compiled Keras
function on a probe batch. Anything else (no package, a refused conversion, a mismatch) serves
the Keras function and says why. Training, gradients and Grad-CAM stay on TensorFlow.

A server converts only in a child process (:func:`convert_in_child`): the converter can abort the
process it runs in. The interpreters are not thread-safe: a caller takes one from the pool and gives it back, so
``config.LITERT_POOL`` calls run at once and the rest wait their turn.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import queue
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import config
from .fsutil import atomic_write_bytes

log = logging.getLogger(__name__)
Infer = Callable[[np.ndarray], "np.ndarray | list[np.ndarray]"]

PROBE_TOLERANCE = 1e-4          # max |Δ| of any output between LiteRT and Keras on the probe batch
PROBE_SIZE = 16
CONVERTING = "converting to LiteRT in the background"
_CONVERTING = threading.Lock()  # one conversion at a time: they would share two cores with requests


@dataclass
class Served:
    """An inference function and how it runs: "litert", or "keras" with the reason. A conversion
    in the background replaces ``infer`` and ``backend`` when it is ready: call ``served.infer``
    each time rather than keeping the function."""

    infer: Infer
    backend: str
    reason: str = ""
    ready: threading.Event = field(default_factory=threading.Event)   # set once the backend is final

    def __post_init__(self):
        if self.reason != CONVERTING:
            self.ready.set()


class LiteRTModel:
    """A converted model behind a pool of interpreters; call it like ``compiled_inference``'s function."""

    def __init__(self, flat: bytes, outputs: int, pool: int = config.LITERT_POOL,
                 threads: int = config.LITERT_THREADS):
        from ai_edge_litert.interpreter import Interpreter

        self.outputs = outputs
        self._free: queue.Queue = queue.Queue()
        for _ in range(max(1, pool)):
            interpreter = Interpreter(model_content=flat, num_threads=threads)
            signature = interpreter.get_signature_list()["serving_default"]
            runner = interpreter.get_signature_runner()
            self._free.put((runner, signature["inputs"][0], sorted(signature["outputs"], key=_output_number)))

    def __call__(self, batch: np.ndarray):
        batch = np.ascontiguousarray(batch, np.float32)
        runner, name, outputs = self._free.get()
        try:
            # the runner resizes its input for a new batch size; copies: the next call reuses the buffers
            result = runner(**{name: batch})
            arrays = [np.array(result[o]) for o in outputs]
        finally:
            self._free.put((runner, name, outputs))
        return arrays if self.outputs > 1 else arrays[0]


def _output_number(name: str) -> int:
    """``output_3`` -> 3: the signature's outputs follow the Keras model's, numbered."""
    return int(name.rsplit("_", 1)[-1]) if name.rsplit("_", 1)[-1].isdigit() else 0


def model_key(model) -> str:
    """A digest of a Keras model's layers, output layers and weights, and of the converter's
    version. The model's and its tensors' own names are left out: Keras numbers those in the
    order they are built."""
    import tensorflow as tf

    layers = [(type(layer).__name__, layer.get_config()) for layer in model.layers]
    digest = hashlib.sha256(json.dumps([layers, list(model.output_names)], sort_keys=True,
                                       default=str).encode())
    digest.update(tf.__version__.encode())
    for weight in model.weights:
        digest.update(np.ascontiguousarray(weight.numpy()).tobytes())
    return digest.hexdigest()[:32]


def convert(model) -> bytes:
    """The model as a LiteRT flat buffer (TensorFlow's converter; it prints every signature)."""
    import tensorflow as tf

    with contextlib.redirect_stdout(io.StringIO()):
        return tf.lite.TFLiteConverter.from_keras_model(model).convert()


CHILD_TIMEOUT_S = 600


def convert_in_child(model, timeout: float = CHILD_TIMEOUT_S) -> bytes:
    """:func:`convert` in a child process (``python -m cvdemo.litert``), at low priority.

    TensorFlow's converter aborts the whole process now and then when it runs beside another
    thread that builds or traces models (seen after a teaching: the new set converting while
    the same thread loads the rest of it), so a server never converts in its own process."""
    with tempfile.TemporaryDirectory(prefix="cvdemo-litert-") as tmp:
        source, target = Path(tmp) / "model.keras", Path(tmp) / "model.tflite"
        model.save(source)
        try:
            done = subprocess.run([sys.executable, "-m", "cvdemo.litert", str(source), str(target)],
                                  capture_output=True, text=True, timeout=timeout, cwd=config.ROOT)
        except subprocess.TimeoutExpired as err:
            raise RuntimeError(f"the converter took over {timeout:.0f} s") from err
        if done.returncode != 0 or not target.is_file():
            said = [line for line in done.stderr.splitlines() if line.strip()]
            raise RuntimeError(f"the converter exited with {done.returncode}" + (f": {said[-1][:200]}" if said else ""))
        return target.read_bytes()


def cached_file(key: str, folders: list[Path]) -> Path | None:
    """The conversion of the model whose :func:`model_key` is ``key``, in the first of ``folders`` that holds it."""
    name = f"{key}.tflite"
    return next((Path(f) / name for f in folders if (Path(f) / name).is_file()), None)


def converted(model, cache: Path | None = None, beside: Path | None = None,
              key: str | None = None, isolated: bool = False) -> tuple[bytes, Path | None]:
    """(``convert(model)``, the file it came from): read from ``beside`` (a checkpoint folder's
    ``litert/``, shipped with it) or the cache (``config.LITERT_CACHE``) when the same model was
    converted before; else converted now and written to the cache. ``key``: the model's
    :func:`model_key` when the caller has it (it hashes every weight); ``isolated``: convert in a
    child process (:func:`convert_in_child`)."""
    cache = config.LITERT_CACHE if cache is None else Path(cache)
    key = key or model_key(model)
    found = cached_file(key, [f for f in (beside, cache) if f is not None])
    if found is not None:
        return found.read_bytes(), found
    flat = convert_in_child(model) if isolated else convert(model)
    try:
        atomic_write_bytes(cache / f"{key}.tflite", flat)
    except OSError as err:         # a read-only disk: convert again next start, serve now
        log.warning("LiteRT: could not cache %s: %s", model.name, err)
    return flat, None


def probe_batch(input_shape: tuple[int, ...], size: int = PROBE_SIZE) -> np.ndarray:
    """Inputs the two paths must agree on: blank, full, and seeded noise at several densities."""
    rng = np.random.default_rng(config.SEED)
    noise = rng.random((size, *input_shape), dtype=np.float32)
    noise *= (noise > np.linspace(0.0, 0.95, size, dtype=np.float32).reshape(-1, *[1] * len(input_shape)))
    noise[0], noise[1] = 0.0, 1.0
    return noise


def mismatch(lite: Infer, keras_infer: Infer, batch: np.ndarray) -> str:
    """Why ``lite`` does not answer like ``keras_infer`` on ``batch`` ("" when it does): any output
    off by more than ``PROBE_TOLERANCE``, or a different argmax of the first output."""
    ours, theirs = lite(batch), keras_infer(batch)
    ours, theirs = (ours, theirs) if isinstance(theirs, list) else ([ours], [theirs])
    for i, (a, b) in enumerate(zip(ours, theirs)):
        if a.shape != b.shape:
            return f"output {i} has shape {a.shape}, Keras gives {b.shape}"
        gap = float(np.max(np.abs(a - b))) if a.size else 0.0
        if gap > PROBE_TOLERANCE:
            return f"output {i} differs from Keras by up to {gap:.2g} (tolerance {PROBE_TOLERANCE:g})"
    if (np.argmax(ours[0], axis=-1) != np.argmax(theirs[0], axis=-1)).any():
        return "a different argmax than Keras"
    return ""


def fast_inference(model, input_shape: tuple[int, ...], backend: str | None = None,
                   cache: Path | None = None, beside: Path | None = None, when: str | None = None) -> Served:
    """The fastest inference of ``model`` that answers like Keras: LiteRT when it converts and
    matches the model on :func:`probe_batch`, else ``models.compiled_inference`` with the reason
    logged. ``backend`` "keras" (default ``config.INFERENCE_BACKEND``) skips LiteRT.

    A conversion found beside the checkpoint or in the cache is used at once. Otherwise
    ``when`` (default ``config.LITERT_CONVERT``) says when to convert: "now", in the
    "background" (Keras serves until it is checked and swapped in), or "off" (Keras only)."""
    from .models import compiled_inference

    backend = backend or config.INFERENCE_BACKEND
    when = when or config.LITERT_CONVERT
    if backend == "keras":
        return Served(compiled_inference(model, input_shape), "keras", "CVDEMO_INFERENCE=keras")
    key = model_key(model)
    folders = [f for f in (beside, config.LITERT_CACHE if cache is None else Path(cache)) if f is not None]
    if when == "now" or cached_file(key, folders) is not None:
        lite, reason = _checked(model, input_shape, cache, beside, key)
        return Served(lite, "litert") if lite else Served(compiled_inference(model, input_shape), "keras", reason)
    if when == "off":
        return Served(compiled_inference(model, input_shape), "keras", "no LiteRT conversion (CVDEMO_LITERT_CONVERT=off)")
    served = Served(compiled_inference(model, input_shape), "keras", CONVERTING)

    def upgrade():
        with _CONVERTING:
            lite, reason = _checked(model, input_shape, cache, beside, key, isolated=True)
        if lite is not None:
            served.infer, served.backend = lite, "litert"
        served.reason = reason
        served.ready.set()

    threading.Thread(target=upgrade, name=f"litert-{model.name}", daemon=True).start()
    return served


def _checked(model, input_shape, cache, beside, key: str, isolated: bool = False) -> tuple[LiteRTModel | None, str]:
    """(LiteRT for ``model``, "") if it converts and answers like it; else (None, the reason,
    logged). A cached conversion that fails is converted again, once."""
    # one eager call is the reference: tracing the Keras function is only worth it for a fallback
    reference = lambda x: _arrays(model([x] if isinstance(model.input, list) else x, training=False))
    reason = ""
    for _ in range(2):
        source = None
        try:
            flat, source = converted(model, cache, beside, key, isolated)
            lite = LiteRTModel(flat, outputs=len(model.outputs))
            reason = mismatch(lite, reference, probe_batch(input_shape))
        except Exception as err:        # noqa: BLE001 - any refusal falls back, with its reason
            reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'conversion failed'}"
        if not reason:
            return lite, ""
        if source is None or (beside is not None and source.parent == Path(beside)):
            break                       # a fresh conversion, or a shipped one: trying again changes nothing
        source.unlink(missing_ok=True)  # a damaged or stale cache file
    log.warning("LiteRT not used for %s: %s; serving the compiled Keras function", model.name, reason)
    return None, reason


def _arrays(out):
    return [np.asarray(t) for t in out] if isinstance(out, (list, tuple)) else np.asarray(out)


def _main(argv: list[str]) -> int:
    """``python -m cvdemo.litert SOURCE.keras TARGET.tflite``: :func:`convert_in_child`'s child."""
    import os

    from .checkpoints import load_model_file

    os.nice(10)                     # the server's requests come first
    flat = convert(load_model_file(Path(argv[0])))
    atomic_write_bytes(Path(argv[1]), flat)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
