"""Which images an analysis evaluates: a checkpoint's own validation split, rebuilt from its
metadata, or every image of an external labelled folder (with the training files for the
leakage check). Knows nothing about models.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import config


@dataclass
class EvalData:
    """The labelled images the models are analysed on (plus, when known, the training images)."""

    description: str
    root: Path
    class_names: list[str]
    paths: list[Path]
    labels: np.ndarray                        # (N,) int64
    fingerprint: str
    train_counts: dict[str, int] | None
    train_paths: list[Path] = field(default_factory=list)
    train_root: Path | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    external: bool = False

    def counts(self) -> dict[str, int]:
        found = np.bincount(self.labels, minlength=len(self.class_names))
        return {name: int(found[i]) for i, name in enumerate(self.class_names)}


def training_root(meta: dict) -> Path | None:
    """The folder a checkpoint was trained on, here; the sample dataset is rebuilt if needed."""
    from ..data import ensure_sample_dataset

    root = Path(meta.get("data", {}).get("root", ""))
    if root.name == config.SAMPLE_DATA_DIR.name and (
            not root.is_dir() or root.resolve() == config.SAMPLE_DATA_DIR.resolve()):
        return ensure_sample_dataset(config.SAMPLE_DATA_DIR)
    return root if str(root) and root.is_dir() else None


def _training_files(meta: dict, root: Path) -> tuple[list[Path], list[int], list[Path]]:
    """(val paths, val labels, train paths) of the checkpoint's split, rebuilt from its metadata."""
    from ..data import DatasetError, scan_folder

    dataset = scan_folder(root)
    if list(dataset.class_names) != list(meta["class_names"]):
        raise DatasetError(f"{root} now has classes {dataset.class_names}, but the model was trained "
                           f"on {meta['class_names']}.")
    paths = dataset.first_per_class((meta.get("train_config") or {}).get("max_images_per_class")).paths
    val_names = set(meta["data"].get("val_files", []))
    by_name = {str(p.relative_to(root)): p for p in paths}
    missing = sorted(val_names - set(by_name))
    if missing:
        raise DatasetError(f"{len(missing)} validation file(s) of the model are gone from {root} "
                           f"(e.g. {missing[0]}); pass --data DIR to analyse another folder.")
    label_of = {p: dataset.class_names.index(Path(name).parts[0]) for name, p in by_name.items()}
    val = [by_name[n] for n in sorted(val_names)]
    train = [p for n, p in sorted(by_name.items()) if n not in val_names]
    return val, [label_of[p] for p in val], train


def select_data(meta: dict, data_dir: Path | None = None) -> EvalData:
    """The checkpoint's own validation split, or every image of an external labelled folder."""
    from ..data import DatasetError, fingerprint, scan_folder

    class_names = list(meta["class_names"])
    train_counts = {c: int(v["train"]) for c, v in meta.get("data", {}).get("counts", {}).items()} or None
    root = training_root(meta)
    if data_dir is not None:
        dataset = scan_folder(Path(data_dir))
        if list(dataset.class_names) != class_names:
            raise DatasetError(f"The models were trained on classes {class_names}, but {Path(data_dir).name} "
                               f"has {dataset.class_names}.")
        train_paths = []
        if root is not None:
            try:
                train_paths = _training_files(meta, root)[2]
            except DatasetError:
                train_paths = []
        return EvalData(f"every image of {Path(data_dir)}", Path(data_dir), class_names, list(dataset.paths),
                        dataset.labels, fingerprint(dataset.paths, dataset.root), train_counts, train_paths,
                        root, list(dataset.skipped), external=True)
    if root is None:
        raise DatasetError(f"The training data of this model ({meta.get('data', {}).get('root')}) is not on "
                           "this machine; pass --data DIR to analyse a labelled folder instead.")
    val, labels, train = _training_files(meta, root)
    digest = hashlib.sha256(json.dumps([meta["data"].get("fingerprint"), sorted(meta["data"]["val_files"])])
                            .encode()).hexdigest()[:16]
    return EvalData(f"validation split of {root.name} ({len(val)} images)", root, class_names, val,
                    np.asarray(labels, np.int64), digest, train_counts, train, root)
