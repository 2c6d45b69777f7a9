"""The image library people search: answers with their hits, class agreement, and adding files.

Adding copies files into the database folder safely (checked like a query, never overwriting);
the index picks them up on its next update. Knows nothing about the UI.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import class_display_name
from ..fsutil import write_temp
from ..images import ImageError, decode, flatten, preprocess
from .search import Hit


def class_key(label: str | None) -> str | None:
    """A class name normalised for comparison: database folders say ``2``, classifiers ``2_digits``.

    Case-insensitive, through the one display name (``config.class_display_name``); None stays None.
    """
    return None if label is None else class_display_name(str(label).strip().casefold())


def same_class(a: str | None, b: str | None) -> bool:
    """True when two class names mean the same class (see :func:`class_key`); None matches nothing."""
    return a is not None and b is not None and class_key(a) == class_key(b)


@dataclass
class RetrievalAnswer:
    """One query's result: ranked hits, what the extractor saw, and how long it took."""

    hits: list[Hit]
    query_input: np.ndarray        # (28, 28, 1) float32, the preprocessed query
    extractor: str
    ms: float
    database: Path | None = None   # the searched folder, to show hit paths relative to it
    backend: str = "auto"          # which search answered (snapshot.BACKENDS)
    private: Path | None = None    # where the asker's own additions are kept (private.PrivateAdditions)

    @property
    def majority(self) -> str | None:
        """The most common label among the hits (ties: the better-ranked one), or None."""
        labels = [h.label for h in self.hits if h.label is not None]
        if not labels:
            return None
        return max(labels, key=lambda label: (labels.count(label), -labels.index(label)))

    def is_private(self, hit: Hit) -> bool:
        """True for one of the asker's own additions (see :mod:`.private`)."""
        return self.private is not None and Path(hit.path).is_relative_to(self.private)

    def shown_path(self, hit: Hit) -> str:
        """A hit's path for clients: ``<database folder name>/<relative path>``, or ``your
        additions/<class>/<file>`` for the asker's own; never absolute."""
        if self.is_private(hit):
            return "/".join(["your additions", *([hit.label] if hit.label else []), Path(hit.path).name])
        if self.database is not None:
            try:
                return (Path(self.database.name) / Path(hit.path).relative_to(self.database)).as_posix()
            except ValueError:
                pass
        return Path(hit.path).name

    def as_list(self) -> list[dict]:
        """The hits as ``{rank, path, label, distance}`` dicts, paths as :meth:`shown_path` gives them."""
        return [{**h.as_dict(), "path": self.shown_path(h)} for h in self.hits]


@dataclass
class AddReport:
    added: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)    # (file name, reason)


_FORMAT_SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp"}
_SAFE = re.compile(r"[^A-Za-z0-9_-]+")


def safe_label(label: str | None) -> str | None:
    """A class folder name from user text: letters, digits, '-' and '_' only (None stays None)."""
    if label is None or not str(label).strip():
        return None
    cleaned = _SAFE.sub("_", str(label).strip()).strip("_")[:40]
    if not cleaned:
        raise ValueError(f"{label!r} cannot be used as a class name (use letters, digits, - or _).")
    return cleaned


def add_files(database: Path, files: list[Path | str], label: str | None = None,
              known_hashes: set[str] | frozenset = frozenset()) -> AddReport:
    """Copy image files into ``database/<label>/`` (or the top folder), never overwriting.

    Each file is checked with the same decoder and preprocessing as a query (non-images and blank
    images are refused with the reason), named from its sanitised stem and its *decoded* format,
    written to a hidden temp file and hard-linked into place (``os.link`` fails rather than
    replace an existing name; the next free ``-N`` suffix is taken). Content already in
    ``known_hashes`` is skipped as a duplicate.
    """
    database = Path(database)
    folder_name = safe_label(label)
    target = database / folder_name if folder_name else database
    target.mkdir(parents=True, exist_ok=True)
    if not target.resolve().is_relative_to(database.resolve()):
        raise ValueError("The class folder must lie inside the database.")
    report = AddReport()
    seen = set(known_hashes)
    for source in files:
        source = Path(source)
        shown = source.name or "file"
        try:
            data = source.read_bytes()
        except OSError as err:
            report.skipped.append((shown, f"cannot be read ({err.strerror or type(err).__name__})"))
            continue
        try:
            decoded = decode(data, name=shown)
            preprocess(decoded.image, "digits", name=shown)      # refuses blank images too
        except ImageError as err:
            report.skipped.append((shown, str(err)))
            continue
        digest = hashlib.sha256(data).hexdigest()
        if digest in seen:
            report.skipped.append((shown, "the same image is already in the database"))
            continue
        suffix = _FORMAT_SUFFIX.get(decoded.source_format or "", ".png")
        stem = _SAFE.sub("_", source.stem).strip("_.")[:60] or "image"
        final = _place(target, stem, suffix, data)
        if final is None:
            report.skipped.append((shown, "no free file name"))
            continue
        report.added.append(final)
        seen.add(digest)
    return report


def _place(folder: Path, stem: str, suffix: str, data: bytes) -> Path | None:
    """Write ``data`` as ``folder/<stem>[-N]<suffix>`` under the first free name, never replacing a
    file: a hidden temp file hard-linked into place (``os.link`` fails on an existing name), or an
    exclusive create where the file system has no hard links. None when no name is free."""
    tmp = write_temp(folder, ".add-", suffix, lambda f: f.write(data))
    try:
        for n in range(10_000):
            final = folder / (f"{stem}{suffix}" if n == 0 else f"{stem}-{n}{suffix}")
            try:
                os.link(tmp, final)
                return final
            except FileExistsError:
                continue
            except OSError:
                try:
                    with open(final, "xb") as out:
                        out.write(data)
                    return final
                except FileExistsError:
                    continue
        return None
    finally:
        tmp.unlink(missing_ok=True)


def thumbnail(path: Path, side: int = 160):
    """A database image, decoded safely and reduced to fit ``side`` pixels, for showing (PIL image)."""
    im = flatten(decode(path).image, background=255)
    im.thumbnail((side, side))
    return im


@dataclass
class Agreement:
    """How the neighbours' classes compare with what the classifiers say about the same query."""

    majority: str | None                 # the neighbours' most common class
    votes: int                           # how many hits carry it
    hits: int
    said: dict[str, str]                 # model -> its label; empty when no classifier answered
    known: list[str]                     # the classes the classifiers know
    classified: bool = True              # False: no classifier could answer (reason in ``why_not``)
    why_not: str = ""

    @property
    def predicted(self) -> str | None:
        """The classifiers' common answer, or None when they disagree or none answered."""
        labels = set(self.said.values())
        return next(iter(labels)) if len(labels) == 1 else None

    @property
    def agree(self) -> bool:
        return same_class(self.predicted, self.majority)

    @property
    def unknown_to_classifiers(self) -> bool:
        """The neighbours' class is none the classifiers were trained on."""
        return self.majority is not None and not any(same_class(self.majority, c) for c in self.known)

    def mark(self, hit: Hit) -> str:
        """' ✓' / ' ✗' for a hit of the predicted class or another, '' when there is no prediction."""
        if self.predicted is None:
            return ""
        return " ✓" if same_class(hit.label, self.predicted) else " ✗"


def agreement(answer: RetrievalAnswer, said: dict[str, str] | None = None, known: list[str] | None = None,
              why_not: str = "") -> Agreement:
    """Compare a retrieval answer with the classifiers' labels (``said``: model -> label)."""
    near = answer.majority
    return Agreement(majority=near, votes=sum(h.label == near for h in answer.hits), hits=len(answer.hits),
                     said=dict(said or {}), known=list(known or []), classified=said is not None,
                     why_not=why_not)
