"""Files that appear whole or not at all: the one atomic file write, the one folder swap, hashing.

Every writer in the package (checkpoints, indexes, datasets, caches, reports) goes through these,
so a crash or a concurrent reader never sees half a file. Knows nothing about what the bytes mean.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

READABLE = 0o644          # what a written file ends up as: mkstemp makes 0600, unreadable to another user


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write`` on a temp file in the same folder, fsync, then os.replace: all or nothing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = write_temp(path.parent, f".{path.name}.", ".tmp", write)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """``atomic_write`` of a bytes payload."""
    atomic_write(path, lambda f: f.write(data))


def json_default(value: Any):
    """``json.dumps(default=...)`` for numpy scalars and arrays and paths."""
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def to_json(document: Any, indent: int | None = 2) -> str:
    """The project's JSON text of a document (numpy values and paths allowed)."""
    return json.dumps(document, indent=indent, default=json_default)


def write_json(path: Path, document: Any, indent: int | None = 2) -> None:
    """Write a JSON document atomically."""
    atomic_write_bytes(path, to_json(document, indent).encode())


def write_temp(directory: Path, prefix: str, suffix: str, write: Callable[[BinaryIO], None]) -> Path:
    """A new hidden, fsynced, world-readable file in ``directory``; the caller links or moves it."""
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, READABLE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def content_file(data: bytes, folder: Path, suffix: str) -> Path:
    """``data`` as ``folder/<its SHA-256>.<suffix>``, written once and atomically: a reader never sees
    a file change under it, and the same bytes asked for twice are one file."""
    path = Path(folder) / f"{hashlib.sha256(data).hexdigest()[:32]}{suffix}"
    try:
        os.utime(path)               # reused: recently used again, for the cache's LRU bound
    except FileNotFoundError:
        atomic_write_bytes(path, data)
    return path


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's content, read in 1 MB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def staged_folder(final: Path, replace: bool = True) -> Iterator[Path]:
    """Yield a hidden temp folder beside ``final``, swapped in as ``final`` when the block succeeds.

    ``replace=True``: an existing ``final`` is replaced (moved aside first, then deleted).
    ``replace=False``: an existing ``final`` wins (another writer finished first) and the staged
    copy is dropped. On an exception nothing changes and the staged folder is deleted.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        yield staging
        if not final.exists():
            try:
                os.replace(staging, final)
            except OSError:
                if not (final.exists() and not replace):
                    raise
        elif replace:
            old = final.with_name(f".{final.name}-old-{os.getpid()}-{staging.name[-8:]}")
            os.replace(final, old)
            os.replace(staging, final)
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
