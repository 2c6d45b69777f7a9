"""The bad-input battery through preprocessing, ``python -m cvdemo predict`` and zips.

Odd but legitimate encodings of a real held-out digit must work (and, with the shipped models,
be classified right); broken or hostile ones must raise ImageError with a specific message;
degenerate sizes get an answer or an ImageError, never another exception.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from cvdemo import config
from cvdemo.data import DatasetError, extract_zip, scan_folder
from cvdemo.images import ImageError, preprocess

from conftest import write_digits
from inputs import CASES, DIGIT, make_inputs, paper, query_digit


@pytest.fixture(scope="module")
def battery(tmp_path_factory):
    return make_inputs(tmp_path_factory.mktemp("battery"))


@pytest.fixture(scope="module")
def reference():
    return preprocess(paper(query_digit(DIGIT)))[..., 0]


@pytest.mark.parametrize("name", sorted(CASES))
def test_battery_through_preprocess(name, battery, reference):
    path, expect = battery[name]
    if expect.kind == "error":
        with pytest.raises(ImageError) as err:
            preprocess(path)
        message = str(err.value)
        assert all(word in message.lower() for word in expect.words), message
        assert "\n" not in message and len(message) < 300
        return
    try:
        out = preprocess(path)
    except ImageError as err:
        assert expect.kind == "either", f"{name} was refused: {err}"
        assert str(err)
        return
    assert out.shape == (28, 28, 1) and out.dtype == np.float32
    assert np.isfinite(out).all() and 0 <= out.min() and out.max() <= 1
    if expect.kind == "digit":
        corr = float(np.corrcoef(out[..., 0].ravel(), reference.ravel())[0, 1])
        assert corr > 0.85, f"{name}: correlation with the plain digit {corr:.3f}"


def test_battery_bytes_and_file_objects_agree(battery):
    """Uploads arrive as paths, bytes or file objects: same answer or the same error."""
    for name, (path, _) in battery.items():
        results = []
        for source in (path, path.read_bytes(), open(path, "rb")):
            try:
                results.append(preprocess(source, name=path.name))
            except ImageError as err:
                results.append(str(err))
            finally:
                if hasattr(source, "close"):
                    source.close()
        if isinstance(results[0], str):
            assert results[1] == results[2] == results[0], name
        else:
            assert all(np.array_equal(results[0], r) for r in results[1:]), name


@pytest.mark.parametrize("shape", [(1, 1), (10, 10_000), (10_000, 10), (1, 5000), (2, 2, 4), (3, 1, 3)])
@pytest.mark.parametrize("fill", ["blank", "stroke"])
def test_degenerate_arrays(shape, fill):
    a = np.full(shape, 255, np.uint8)
    if fill == "stroke":
        a[tuple(slice(0, max(1, s // 2)) for s in shape[:2])] = 0
    try:
        out = preprocess(a)
    except ImageError as err:
        assert str(err)
    else:
        assert out.shape == (28, 28, 1) and 0 <= out.min() and out.max() <= 1


# The same battery through ``python -m cvdemo predict``: tests/test_cli.py::test_predict_command_json
# (one subprocess for both, to keep the default run short).


# ----------------------------------------------------------------------------- shipped models

def _shipped():
    names = ("scratch", "finetuned")
    if not all((config.CHECKPOINT_DIR / f"{n}.keras").exists() for n in names):
        pytest.skip("the shipped checkpoints (checkpoints/scratch.keras, finetuned.keras) are absent")
    from cvdemo.service import Service

    return Service(checkpoints=config.CHECKPOINT_DIR, warm=False)


def test_shipped_models_classify_odd_encodings_right(tmp_path):
    """Held-out real digits 0/1/2 in every odd encoding: the shipped models get them right."""
    service = _shipped()
    wrong, total = [], 0
    for digit in (0, 1, 2):
        for index in range(3):
            for name, (path, expect) in make_inputs(tmp_path / f"{digit}_{index}", digit, index).items():
                if expect.kind != "digit":
                    continue
                answers = service.classify(path).models
                for model, answer in answers.items():
                    total += 1
                    if answer.label != f"{digit}_digits":
                        wrong.append(f"{model} {name} {digit}#{index} -> {answer.label}")
    assert total >= 2 * 8 * 9
    assert len(wrong) <= total * 0.03, wrong


def test_shipped_models_refuse_broken_inputs(battery):
    service = _shipped()
    for _name, (path, expect) in battery.items():
        if expect.kind == "error":
            with pytest.raises(ImageError):
                service.classify(path)


# ----------------------------------------------------------------------------- zips

def _zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


@pytest.fixture(scope="module")
def jpeg_bytes(tmp_path_factory):
    folder = write_digits(tmp_path_factory.mktemp("z") / "d", per_class=2)
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.jpg"))}


@pytest.mark.parametrize("evil", ["../escaped.png", "../../etc/evil.png", "/tmp/abs_evil.png",
                                  "0_digits/../../up.png", "C:/windows/evil.png", "..\\win.png"])
def test_zip_slip_is_refused_and_nothing_is_written(evil, jpeg_bytes, tmp_path):
    archive = _zip(tmp_path / "evil.zip", {**jpeg_bytes, evil: b"\x89PNG payload"})
    dest = tmp_path / "sandbox" / "dest"
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(DatasetError, match="unsafe path"):
        extract_zip(archive, dest)
    assert sorted(tmp_path.rglob("*")) == before           # nothing written, inside or outside
    assert not Path("/tmp/abs_evil.png").exists()


def test_zip_symlink_is_refused(jpeg_bytes, tmp_path):
    path = tmp_path / "link.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in jpeg_bytes.items():
            archive.writestr(name, data)
        link = zipfile.ZipInfo("0_digits/link.png")
        link.external_attr = (0o120777 << 16)
        archive.writestr(link, "/etc/passwd")
    with pytest.raises(DatasetError, match="symbolic link"):
        extract_zip(path, tmp_path / "dest")


def test_zip_bomb_by_size_is_refused_before_writing(tmp_path):
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for cls in ("a", "b"):
            archive.writestr(f"{cls}/big.png", b"\0" * (3 * 2**20))      # 3 MB each, compresses to KB
    assert path.stat().st_size < 50_000
    with pytest.raises(DatasetError, match="MB"):
        extract_zip(path, tmp_path / "dest", max_bytes=4 * 2**20)
    assert not (tmp_path / "dest").exists() or not any((tmp_path / "dest").rglob("*.png"))


def test_zip_that_lies_about_sizes_is_stopped(tmp_path):
    """Headers declaring a small size for a big entry: the streamed byte count catches it."""
    path = _zip(tmp_path / "liar.zip", {"a/x.png": b"\0" * 300_000, "b/y.png": b"\0" * 10})
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("a/x.png")
    # patch the declared uncompressed size (local header and central directory) to 10 bytes
    for offset in (info.header_offset + 22, raw.rfind(b"PK\x01\x02", 0, raw.rfind(b"b/y.png")) + 24):
        raw[offset:offset + 4] = (10).to_bytes(4, "little")
    path.write_bytes(bytes(raw))
    with pytest.raises((DatasetError, zipfile.BadZipFile)):
        extract_zip(path, tmp_path / "dest", max_bytes=100_000)


def test_zip_bomb_by_file_count_is_refused(tmp_path):
    entries = {f"a/{i}.png": b"" for i in range(60)}
    with pytest.raises(DatasetError, match="files"):
        extract_zip(_zip(tmp_path / "many.zip", entries), tmp_path / "dest", max_files=50)
    assert not (tmp_path / "dest").exists()


def test_not_a_zip(tmp_path):
    path = tmp_path / "fake.zip"
    path.write_bytes(b"just text")
    with pytest.raises(DatasetError, match="not a valid zip"):
        extract_zip(path, tmp_path / "dest")


def test_zip_with_one_class_or_none(jpeg_bytes, tmp_path):
    one = {k: v for k, v in jpeg_bytes.items() if k.startswith("1_digits/")}
    root = extract_zip(_zip(tmp_path / "one.zip", one), tmp_path / "one")
    with pytest.raises(DatasetError, match="at least 2"):
        scan_folder(root)
    flat = {Path(k).name: v for k, v in jpeg_bytes.items()}
    with pytest.raises(DatasetError, match="class folders|at least 2"):
        scan_folder(extract_zip(_zip(tmp_path / "flat.zip", flat), tmp_path / "flat"))
    with pytest.raises(DatasetError):
        scan_folder(extract_zip(_zip(tmp_path / "empty.zip", {"readme.txt": b"hi"}), tmp_path / "empty"))


def test_zip_nested_wrappers_and_junk_entries(jpeg_bytes, tmp_path):
    entries = {f"my data/train/{k}": v for k, v in jpeg_bytes.items()}
    entries.update({"my data/train/0_digits/notes.txt": b"x", "__MACOSX/my data/._junk.png": b"x",
                    "my data/train/1_digits/.DS_Store": b"x", "my data/train/run.sh": b"rm -rf /"})
    root = extract_zip(_zip(tmp_path / "nested.zip", entries), tmp_path / "dest")
    assert root == tmp_path / "dest" / "my data" / "train"
    dataset = scan_folder(root)
    assert dataset.class_names == ["0_digits", "1_digits", "2_digits"]
    assert dataset.counts() == {"0_digits": 2, "1_digits": 2, "2_digits": 2}
    written = {p.relative_to(tmp_path / "dest").as_posix() for p in (tmp_path / "dest").rglob("*") if p.is_file()}
    assert not [w for w in written if not w.endswith(".jpg")], written


def test_zip_with_broken_images_trains_on_the_rest(jpeg_bytes, tmp_path):
    from cvdemo.data import load_arrays

    entries = {**jpeg_bytes, "0_digits/broken.png": b"\x89PNG\r\n\x1a\n broken", "2_digits/empty.jpg": b""}
    dataset = scan_folder(extract_zip(_zip(tmp_path / "mixed.zip", entries), tmp_path / "dest"))
    arrays = load_arrays(dataset, "digits")
    assert len(arrays.labels) == 6
    assert sorted(p for p, _ in arrays.skipped) == ["0_digits/broken.png", "2_digits/empty.jpg"]
