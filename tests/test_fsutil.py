"""The one atomic write and folder swap: all or nothing, readable by all, never half a folder."""
from __future__ import annotations

import os

import pytest

from cvdemo import fsutil


def test_staged_folder_replaces_a_folder_whole(tmp_path):
    final = tmp_path / "data"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with fsutil.staged_folder(final) as staging:
        (staging / "new.txt").write_text("new")
        assert not (final / "new.txt").exists()          # nothing shows before the block ends
    assert sorted(p.name for p in final.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["data"]  # no staging or old folder left behind


def test_staged_folder_keeps_the_old_folder_when_the_block_fails(tmp_path):
    final = tmp_path / "data"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), fsutil.staged_folder(final) as staging:
        (staging / "half.txt").write_text("half")
        raise RuntimeError("killed halfway")
    assert sorted(p.name for p in final.iterdir()) == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["data"]


def test_staged_folder_without_replace_lets_the_first_writer_win(tmp_path):
    final = tmp_path / "unpacked"
    with fsutil.staged_folder(final, replace=False) as staging:
        (staging / "first").write_text("1")
    with fsutil.staged_folder(final, replace=False) as staging:
        (staging / "second").write_text("2")
    assert sorted(p.name for p in final.iterdir()) == ["first"]
    assert [p.name for p in tmp_path.iterdir()] == ["unpacked"]


def test_atomic_write_leaves_a_readable_file_or_the_old_one(tmp_path):
    target = tmp_path / "doc.json"
    fsutil.write_json(target, {"a": 1})
    assert target.read_text().strip().startswith("{") and (os.stat(target).st_mode & 0o777) == fsutil.READABLE

    def die(f):
        f.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fsutil.atomic_write(target, die)
    assert '"a": 1' in target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["doc.json"]      # no temp file left


def test_json_default_handles_numpy_and_paths(tmp_path):
    import numpy as np

    text = fsutil.to_json({"n": np.int64(3), "x": np.float32(0.5), "a": np.arange(2), "p": tmp_path}, indent=None)
    assert text == f'{{"n": 3, "x": 0.5, "a": [0, 1], "p": "{tmp_path}"}}'


def test_content_file_is_written_once_per_content(tmp_path):
    first = fsutil.content_file(b"png bytes", tmp_path / "pictures", ".png")
    again = fsutil.content_file(b"png bytes", tmp_path / "pictures", ".png")
    other = fsutil.content_file(b"other bytes", tmp_path / "pictures", ".png")
    assert first == again != other and first.read_bytes() == b"png bytes" and first.suffix == ".png"
    assert len(list((tmp_path / "pictures").iterdir())) == 2
