"""Checkpoints on disk: ``<name>.keras`` beside ``<name>.json`` metadata, written atomically.

The JSON records the SHA-256 of the model file it belongs to, so a pair torn apart by a crash
is detected; the previous good pair is kept as ``<name>.prev.*`` and loaded instead. Models load
in Keras safe mode only. Knows nothing about training or the UI.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import config
from .fsutil import READABLE, atomic_write_bytes, sha256_file, to_json


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, corrupt or inconsistent. ``str(err)`` is for the user."""


@dataclass
class Checkpoint:
    """A loaded model with the metadata that says how to feed it."""

    name: str
    model: Any                  # keras.Model
    meta: dict
    path: Path

    @property
    def class_names(self) -> list[str]:
        return list(self.meta["class_names"])

    @property
    def profile(self) -> str:
        return self.meta.get("profile", "digits")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.meta["input_shape"])


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for package in ("keras", "tensorflow-cpu", "tensorflow", "numpy", "Pillow", "scikit-learn"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found


def paths_for(directory: Path, name: str) -> tuple[Path, Path]:
    return Path(directory) / f"{name}.keras", Path(directory) / f"{name}.json"


def save(model, meta: dict, directory: Path, name: str) -> Path:
    """Save ``model`` and ``meta`` as a consistent pair; returns the .keras path.

    Order: model to a temp file; old pair hard-linked to ``.prev``; new model swapped in; JSON
    (with the new model's hash) swapped in. A crash at any point leaves a loadable pair.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model_path, meta_path = paths_for(directory, name)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".keras", dir=directory)
    os.close(fd)
    try:
        model.save(tmp)
        os.chmod(tmp, READABLE)
        full = {**meta, "name": name, "model_file": model_path.name, "model_sha256": sha256_file(Path(tmp)),
                "saved_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "library_versions": library_versions(),
                "preprocessing_version": meta.get("preprocessing_version", config.PREPROCESSING_VERSION)}
        _keep_previous(directory, name)
        os.replace(tmp, model_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    atomic_write_bytes(meta_path, to_json(full).encode())
    return model_path


def update_meta(directory: Path, name: str, changes: dict) -> dict:
    """Add or replace metadata keys of a checkpoint without touching its model file.

    The JSON is rewritten atomically and still names the same model hash, so a crash leaves
    either the old metadata or the new, both consistent with the model. Returns the new metadata.
    """
    model_path, meta_path = paths_for(directory, name)
    meta = json.loads(meta_path.read_text())
    if meta.get("model_sha256") not in (None, sha256_file(model_path)):
        raise CheckpointError(f"{model_path.name} does not match {meta_path.name}; not updating it.")
    meta.update(changes)
    atomic_write_bytes(meta_path, to_json(meta).encode())
    return meta


def _keep_previous(directory: Path, name: str) -> None:
    model_path, meta_path = paths_for(directory, name)
    prev_model, prev_meta = paths_for(directory, f"{name}.prev")
    if not (model_path.exists() and meta_path.exists()):
        return
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("model_sha256") != sha256_file(model_path):
            return          # the current pair is itself torn: keep the older .prev
    except (OSError, ValueError):
        return
    for src, dst in ((model_path, prev_model), (meta_path, prev_meta)):
        tmp = dst.with_name(f".{dst.name}.link")
        tmp.unlink(missing_ok=True)
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copy2(src, tmp)
        os.replace(tmp, dst)


def read_meta(directory: Path, name: str) -> dict:
    """The metadata of a checkpoint, verified against its model file (falls back to .prev)."""
    return _resolve(directory, name)[1]


def _resolve(directory: Path, name: str) -> tuple[Path, dict]:
    errors = []
    for candidate in (name, f"{name}.prev"):
        model_path, meta_path = paths_for(directory, candidate)
        if not model_path.exists() and not meta_path.exists():
            continue
        try:
            meta = json.loads(meta_path.read_text())
        except FileNotFoundError:
            errors.append(f"{meta_path.name} is missing")
            continue
        except (OSError, ValueError):
            errors.append(f"{meta_path.name} is not valid JSON")
            continue
        if not model_path.exists():
            errors.append(f"{model_path.name} is missing")
            continue
        for key in ("class_names", "input_shape"):
            if key not in meta:
                errors.append(f"{meta_path.name} lacks '{key}'")
                break
        else:
            if meta.get("model_sha256") not in (None, sha256_file(model_path)):
                errors.append(f"{model_path.name} does not match {meta_path.name} (interrupted save?)")
                continue
            return model_path, meta
    if not errors:
        raise CheckpointError(f"No checkpoint named '{name}' in {directory}.")
    raise CheckpointError(f"Checkpoint '{name}' in {directory} is unusable: {'; '.join(errors)}.")


def load(directory: Path, name: str) -> Checkpoint:
    """Load a checkpoint (safe mode, no compile). Raises CheckpointError with the reason."""
    model_path, meta = _resolve(directory, name)
    try:
        model = load_model_file(model_path)
    except Exception as err:
        raise CheckpointError(f"{model_path.name} could not be loaded: {type(err).__name__}: {err}") from None
    return Checkpoint(name=name, model=model, meta=meta, path=model_path)


def load_model_file(path: Path):
    """The one place a model file is deserialised: Keras safe mode (no code in the file runs),
    no compile, the custom layers registered first."""
    import keras

    from . import layers  # noqa: F401  registers the custom layers before deserialising

    return keras.saving.load_model(path, compile=False, safe_mode=True)


def list_names(directory: Path) -> list[str]:
    """Classifier checkpoints in a folder (those with a .json beside them), sorted.

    Pretrained feature extractors (``backbone_*``, ``pretrained_*``) are not the task's classifiers.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    names = set()
    for meta_path in directory.glob("*.json"):
        stem = meta_path.stem
        if stem.endswith(".prev") or stem.startswith(("backbone_", "pretrained_", ".")):
            continue
        if (directory / f"{stem}.keras").exists() or (directory / f"{stem}.prev.keras").exists():
            names.add(stem)
    return sorted(names)


def load_all(directory: Path) -> dict[str, Checkpoint]:
    """Every loadable classifier checkpoint in a folder; raises if one is corrupt."""
    return {name: load(directory, name) for name in list_names(directory)}
