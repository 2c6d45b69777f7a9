"""A visitor's teaching examples: per session, on disk in the dataset layout, bounded, forgotten.

Each owner (a browser session, or an API caller's id) has a folder ``<class>/<id>.png`` of the
originals, the layout ``python -m cvdemo train`` and the Train tab read, and beside it
``__model_input__/<class>/<id>.png``, what the model saw (``scan_folder`` skips ``__`` folders).
Class names are checked by :func:`class_name`. Owners never share a folder; nothing here
touches the shipped dataset. Knows nothing about models or the UI.
"""
from __future__ import annotations

import hashlib
import io
import re
import shutil
import tempfile
import time
import unicodedata
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .. import config
from ..config import TeachConfig, class_display_name
from ..fsutil import atomic_write_bytes
from ..images import to_display
from ..owners import PerOwner

SEEN = "__model_input__"          # what the model saw, beside the originals
_NAME = re.compile(r"[\w\- ]+")


class ExampleError(ValueError):
    """An example or class name refused; ``str(err)`` is for the visitor."""


class ExamplesFull(ExampleError):
    """The session holds as many examples, or as many bytes of them, as it may."""


def class_name(text, known: list[str], limit: int = TeachConfig.max_class_chars) -> str:
    """The class a visitor means by ``text``: a known class when it reads the same (``2`` is
    ``2_digits``), else ``text`` itself as a new class name, checked. Raises ExampleError."""
    name = " ".join(unicodedata.normalize("NFKC", str(text or "")).split())
    if not name:
        raise ExampleError("Say which class it is: pick one or type a new class name.")
    for existing in known:
        if name == existing or name == class_display_name(existing):
            return existing
    if len(name) > limit or not _NAME.fullmatch(name) or name.startswith(("_", "-")):
        raise ExampleError(f"A class name is 1 to {limit} letters, digits, spaces, - or _ "
                           f"(and does not start with - or _); {name[:40]!r} is not.")
    return name


@dataclass(frozen=True)
class Example:
    """One example: ``id`` names it for removal; ``original`` trains, ``seen`` is shown."""

    id: str
    label: str
    original: Path
    seen: Path
    source: str                   # where it came from: "drawing", "upload", "zip"
    added: float

    def as_dict(self) -> dict:
        return {"id": self.id, "class": self.label, "source": self.source}


@dataclass
class _Owned:
    examples: list[Example] = field(default_factory=list)
    used: float = field(default_factory=time.monotonic)
    bytes: int = 0


class ExampleStore(PerOwner):
    """Per-owner examples under ``root`` (one sub-folder per owner, named by a hash). Thread-safe."""

    def __init__(self, root: Path, cfg: TeachConfig = TeachConfig()):
        super().__init__(root, cfg.ttl_s)
        self.cfg = cfg

    def add(self, owner: str, original: Image.Image, seen: np.ndarray, label: str, source: str = "drawing") -> Example:
        """Keep ``original`` (a decoded image) and ``seen`` (the model input, (S, S, C) in [0, 1])
        as one example of ``label`` (already a :func:`class_name`). Raises ExampleError when the
        session is full or already holds this picture."""
        if not owner:
            raise ExampleError("Examples belong to a session; this request has none.")
        self._sweep()
        data = _png(original)
        seen_data = _png(Image.fromarray(to_display(seen, scale=1)))
        digest = hashlib.sha256(data).hexdigest()[:16]
        limit = self.cfg.max_session_mb * 2**20
        with self._lock:
            owned = self._owners.setdefault(owner, _Owned())
            owned.used = time.monotonic()
            if len(owned.examples) >= self.cfg.max_examples:
                raise ExamplesFull(f"This session already holds {self.cfg.max_examples} examples; remove some first.")
            if any(e.id == digest for e in owned.examples):
                raise ExampleError("That exact picture is already one of your examples.")
            if owned.bytes + len(data) + len(seen_data) > limit:
                raise ExamplesFull(f"Your examples would pass {self.cfg.max_session_mb} MB; remove some first.")
            folder = self.folder(owner)
            example = Example(digest, label, folder / label / f"{digest}.png", folder / SEEN / label / f"{digest}.png",
                              source, time.time())
            atomic_write_bytes(example.original, data)
            atomic_write_bytes(example.seen, seen_data)
            owned.examples.append(example)
            owned.bytes += len(data) + len(seen_data)
        return example

    def list(self, owner: str | None) -> list[Example]:
        with self._lock:
            owned = self._owners.get(owner) if owner else None
            if owned:
                owned.used = time.monotonic()
            return list(owned.examples) if owned else []

    def counts(self, owner: str | None) -> dict[str, int]:
        found: dict[str, int] = {}
        for example in self.list(owner):
            found[example.label] = found.get(example.label, 0) + 1
        return found

    def remove(self, owner: str | None, example_id: str) -> bool:
        """Remove one example (both its files); False when the owner has none by that id."""
        with self._lock:
            owned = self._owners.get(owner) if owner else None
            position = next((i for i, e in enumerate(owned.examples) if e.id == example_id), None) if owned else None
            if position is None:
                return False
            gone = owned.examples.pop(position)
            for path in (gone.original, gone.seen):
                try:
                    owned.bytes -= path.stat().st_size
                    path.unlink()
                except FileNotFoundError:
                    pass
        return True

    def snapshot(self, owner: str, dest: Path) -> Path:
        """A copy of the owner's originals in the dataset layout under ``dest``, which a teaching
        reads while the visitor goes on adding and removing."""
        examples = self.list(owner)
        for example in examples:
            target = Path(dest) / example.label / example.original.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(example.original, target)
        return Path(dest)

    def zip(self, owner: str, dest_dir: Path) -> Path:
        """The owner's examples as a zip in the dataset layout (``3/<id>.png``), with what the
        model saw under ``__model_input__/``; written to a new file in ``dest_dir``."""
        examples = self.list(owner)
        if not examples:
            raise ExampleError("You have no examples to download yet.")
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for example in examples:
                archive.write(example.original, f"{example.label}/{example.original.name}")
                archive.write(example.seen, f"{SEEN}/{example.label}/{example.seen.name}")
        Path(dest_dir).mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="examples-", suffix=".zip", dir=dest_dir)
        with open(fd, "wb") as out:
            out.write(buffer.getvalue())
        return Path(name)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=False)
    return buffer.getvalue()


def example_files(folder: Path) -> list[tuple[Path, str]]:
    """(file, class) of every image in a folder of class subfolders (a snapshot or an unpacked
    zip), one class allowed; ``__model_input__`` and hidden entries are skipped."""
    found = []
    for sub in sorted(p for p in Path(folder).iterdir() if p.is_dir() and not p.name.startswith((".", "__"))):
        found += [(path, sub.name) for path in sorted(sub.rglob("*"))
                  if path.is_file() and not path.name.startswith(".")
                  and path.suffix.lower() in config.IMAGE_EXTENSIONS]
    return found
