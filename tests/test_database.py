"""The shipped retrieval data: deterministic, held out from the database, all formats present."""
from __future__ import annotations

import hashlib
import re

import numpy as np
from PIL import Image

from cvdemo import config, database
from cvdemo.data import mnist_partition
from cvdemo.images import preprocess


def _digest(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_database_is_deterministic_mixed_and_from_the_pool(tmp_path):
    a = database.write_database(tmp_path / "a", per_class=4)
    b = database.write_database(tmp_path / "b", per_class=4)
    assert _digest(a) == _digest(b)
    images = [p for p in a.rglob("*") if p.is_file() and p.name != ".gitignore"]
    assert sorted({p.parent.name for p in images}) == [str(d) for d in range(10)]
    assert len(images) == 40 and {p.suffix for p in images} == {".jpg", ".png"}
    pool = set(mnist_partition()["pool"].tolist())
    for path in images:
        assert int(re.search(r"_(\d+)\.", path.name).group(1)) in pool
        with Image.open(path) as im:
            assert im.size == (config.SAMPLE_IMAGE_SIZE, config.SAMPLE_IMAGE_SIZE)
    assert (a / ".gitignore").read_text().strip() == ".index/"


def test_rewriting_keeps_the_index_cache(tmp_path):
    out = database.write_database(tmp_path / "db", per_class=1)
    (out / ".index").mkdir()
    (out / ".index" / "x.json").write_text("{}")
    database.write_database(out, per_class=1)
    assert (out / ".index" / "x.json").exists()


def test_queries_are_held_out_in_every_format_with_drawn_digits(tmp_path):
    out = database.write_queries(tmp_path / "q")
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} == {".jpg", ".jpeg", ".png"}
    reserved = set(mnist_partition()["query"].tolist())
    mnist = [p for p in files if p.name.startswith("query_")]
    assert len(mnist) == 10 * database.QUERIES_PER_CLASS
    assert all(int(re.search(r"_(\d+)\.", p.name).group(1)) in reserved for p in mnist)
    drawn = sorted(p for p in files if p.name.startswith("drawn_"))
    assert [p.parent.name for p in drawn] == ["1", "7"]
    for path in drawn:
        with Image.open(path) as im:
            assert im.mode == "RGBA" and np.asarray(im)[..., 3].min() == 0     # transparent canvas
        assert preprocess(path).max() == 1.0                                   # and it is a digit


def test_eval_queries_hold_every_reserved_digit(tmp_path):
    out = database.write_eval_queries(tmp_path / "eval")
    files = [p for p in out.rglob("*.png")]
    assert len(files) == 10 * config.QUERY_RESERVE


def test_shipped_folders_match_the_generator(tmp_path):
    """images_database/ and query_images/ in the repository are what the command writes."""
    shipped_db = {k: v for k, v in _digest(config.DATABASE_DIR).items() if not k.startswith(".index/")}
    assert shipped_db == _digest(database.write_database(tmp_path / "db"))
    assert _digest(config.QUERY_DIR) == _digest(database.write_queries(tmp_path / "q"))


def test_shipped_checkpoints_hold_the_default_extractor_with_its_metadata():
    """The measured best extractor ships, so a fresh clone indexes with it, offline."""
    import json

    from cvdemo import retrieval

    assert retrieval.default_extractor(config.CHECKPOINT_DIR) == retrieval.PREFERENCE[0] == "digits_all_cnn"
    meta = json.loads((config.CHECKPOINT_DIR / "pretrained_scratch_digits_all.json").read_text())
    assert meta["classes"] == list(range(10)) and meta["profile"] == "digits"
    assert meta["preprocessing_version"] == config.PREPROCESSING_VERSION and meta["val_accuracy"] > 0.97
