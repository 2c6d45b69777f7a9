"""Datasets: sample data, class folders, the seeded split, augmentation and metrics."""
from __future__ import annotations

import numpy as np
import pytest

from cvdemo import data
from cvdemo.data import DatasetError, scan_folder, split_indices

from conftest import write_digits

# ----------------------------------------------------------------------------- split

def test_split_is_deterministic_disjoint_and_complete():
    labels = np.repeat(np.arange(3), [50, 37, 13])
    train, val = split_indices(labels, 0.2, seed=11)
    again = split_indices(labels, 0.2, seed=11)
    assert np.array_equal(train, again[0]) and np.array_equal(val, again[1])
    assert not set(train) & set(val)
    assert sorted([*train, *val]) == list(range(len(labels)))
    assert len(val) == 20
    other = split_indices(labels, 0.2, seed=12)
    assert not np.array_equal(val, other[1])          # the seed matters


def test_split_is_stratified():
    labels = np.repeat(np.arange(3), [500, 300, 100])
    _, val = split_indices(labels, 0.2)
    assert np.bincount(labels[val]).tolist() == [100, 60, 20]


def test_split_keeps_every_class_in_validation_when_possible():
    labels = np.repeat(np.arange(4), [10, 5, 5, 5])
    train, val = split_indices(labels, 0.2)
    assert set(labels[val]) == {0, 1, 2, 3} and set(labels[train]) == {0, 1, 2, 3}


def test_split_of_a_folder_is_identical_across_runs(tmp_path):
    """Same files -> same validation files, twice, through the real prepare() path."""
    from cvdemo.config import TrainConfig
    from cvdemo.train import prepare

    root = write_digits(tmp_path / "d", per_class=10)
    first, second = (prepare(root, TrainConfig(profile="digits")) for _ in range(2))
    val_files = [[first.arrays.paths[i] for i in p.val_idx] for p in (first, second)]
    assert val_files[0] == val_files[1]
    assert not set(first.arrays.paths[i] for i in first.train_idx) & set(val_files[0])
    assert first.fingerprint == second.fingerprint
    assert {c: v["val"] for c, v in first.counts().items()} == {"0_digits": 2, "1_digits": 2, "2_digits": 2}


# ----------------------------------------------------------------------------- folders

def test_sample_dataset_layout(tmp_path):
    out = data.write_sample_dataset(tmp_path / "Hand_written_digits", classes=(0, 1))
    assert sorted(p.name for p in out.iterdir()) == ["0_digits", "1_digits"]
    files = sorted(out.glob("0_digits/*.jpg"))
    assert len(files) == (data.mnist_digits()[1] == 0).sum() - 20     # the query reserve is held out
    from PIL import Image

    with Image.open(files[0]) as im:
        assert im.size == (100, 100) and im.mode == "L"
    query = set(data.mnist_partition()["query"].tolist())
    used = {int(p.stem.split("_")[1]) for p in out.glob("*/*.jpg")}
    assert not used & query


def test_scan_folder_reads_classes_and_lists_skips(tmp_path):
    root = write_digits(tmp_path / "d", per_class=3)
    (root / "1_digits" / "notes.txt").write_text("hello")
    (root / ".hidden").mkdir()
    dataset = scan_folder(root)
    assert dataset.class_names == ["0_digits", "1_digits", "2_digits"]
    assert dataset.counts() == {"0_digits": 3, "1_digits": 3, "2_digits": 3}
    assert [s[0] for s in dataset.skipped] == ["1_digits/notes.txt"]


def test_any_class_names_and_formats(tmp_path):
    from PIL import Image

    for cls, suffix in (("cat", ".png"), ("dog", ".bmp"), ("emu", ".webp")):
        (tmp_path / cls).mkdir()
        Image.new("RGB", (20, 20), (10, 200, 30)).save(tmp_path / cls / f"a{suffix}")
    assert scan_folder(tmp_path).class_names == ["cat", "dog", "emu"]


def test_unreadable_files_are_skipped_and_listed(tmp_path):
    root = write_digits(tmp_path / "d", per_class=3)
    (root / "0_digits" / "broken.jpg").write_bytes(b"not a jpeg")
    arrays = data.load_arrays(scan_folder(root), "digits")
    assert len(arrays.labels) == 9 and arrays.images.shape == (9, 28, 28, 1)
    assert arrays.skipped and arrays.skipped[0][0] == "0_digits/broken.jpg"
    assert "could not be read" in arrays.skipped[0][1]


@pytest.mark.parametrize("layout, words", [
    ({}, "none"),
    ({"only_digits": 2}, "only"),
    ({"0_digits": 2, "1_digits": 0}, "no images"),
])
def test_unusable_layouts(tmp_path, layout, words):
    from PIL import Image

    for cls, n in layout.items():
        (tmp_path / cls).mkdir()
        for i in range(n):
            Image.new("L", (10, 10), 0).save(tmp_path / cls / f"{i}.png")
    with pytest.raises(DatasetError) as err:
        scan_folder(tmp_path)
    assert words in str(err.value)


def test_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match="not a folder"):
        scan_folder(tmp_path / "nope")


def test_class_with_only_unreadable_images(tmp_path):
    root = write_digits(tmp_path / "d", per_class=2, classes=(0,))
    (root / "1_digits").mkdir()
    (root / "1_digits" / "x.png").write_bytes(b"junk")
    with pytest.raises(DatasetError, match="1_digits"):
        data.load_arrays(scan_folder(root), "digits")


def test_profile_detection(tmp_path):
    from PIL import Image

    digits = write_digits(tmp_path / "d", per_class=4)
    assert data.detect_profile(scan_folder(digits)) == "digits"
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / "p" / cls).mkdir(parents=True)
        for i in range(4):
            photo = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
            photo[..., 0] = 180                           # colourful, textured
            Image.fromarray(photo).save(tmp_path / "p" / cls / f"{i}.png")
    assert data.detect_profile(scan_folder(tmp_path / "p")) == "photo"


def test_fingerprint_changes_with_content(tmp_path):
    root = write_digits(tmp_path / "d", per_class=2)
    paths = scan_folder(root).paths
    before = data.fingerprint(paths, root)
    assert before == data.fingerprint(list(reversed(paths)), root)
    paths[0].write_bytes(paths[1].read_bytes())
    assert data.fingerprint(paths, root) != before


# ----------------------------------------------------------------------------- augmentation

def test_augmenter_has_no_flip():
    import keras

    for profile in ("digits", "photo"):
        augmenter = data.make_augmenter(profile)
        names = [type(layer).__name__ for layer in augmenter.layers]
        assert not any("Flip" in n for n in names), names
        assert not any(isinstance(layer, keras.layers.RandomFlip) for layer in augmenter.layers)


def test_augmentation_never_mirrors():
    """A blob in the top-left quadrant stays there in every augmented view: rotation, shear,
    zoom and translation move it a few pixels, feet and flags add a little ink elsewhere, but a
    horizontal or vertical flip would move it to another quadrant. One flipped view in 256 fails."""
    image = np.zeros((28, 28, 1), np.float32)
    image[4:9, 4:9] = 1.0
    batch = np.repeat(image[None], 256, axis=0)
    out = np.asarray(data.make_augmenter("digits", seed=3)(batch, training=True))[..., 0]
    assert out.shape == batch.shape[:3]
    assert not np.allclose(out, batch[..., 0], atol=1e-3)            # it does something
    ok, why = _never_mirrored(out)
    assert ok, why
    for flip in (np.fliplr, np.flipud):                                # the check can fail
        once = out.copy()
        once[17] = flip(once[17])
        assert not _never_mirrored(once)[0]


def _never_mirrored(views: np.ndarray) -> tuple[bool, str]:
    """Every view keeps at least 30% of its ink in the top-left quadrant (augmented views of the
    blob keep 42% or more; a flipped one keeps what little a flag or a foot put there)."""
    half = views.shape[1] // 2
    share = views[:, :half, :half].sum(axis=(1, 2)) / views.sum(axis=(1, 2))
    worst = int(share.argmin())
    if share[worst] < 0.3:
        return False, f"view {worst} has only {share[worst]:.0%} of its ink in the top-left quadrant"
    return True, ""


def test_foot_goes_under_the_glyph_and_the_flag_at_its_top():
    """A slanted 1 gets its foot under the stroke's end, not under the image centre (an "L"),
    and its flag leaves the top of the stroke towards the left."""
    from cvdemo.layers import RandomFoot

    stroke = np.zeros((28, 28), np.float32)
    for row in range(4, 24):                      # a 1 leaning right: col 6 at the bottom, 12 at the top
        stroke[row, 6 + (23 - row) * 6 // 19] = 1.0
    batch = np.repeat(stroke[None, ..., None], 256, axis=0)
    out = np.asarray(RandomFoot(rate=2.0, seed=0)(batch, training=True))[..., 0]   # a foot and a flag on each
    added = out - batch[..., 0]
    feet = added[:, 21:24, :]
    assert (feet.sum(axis=(1, 2)) >= 4).all()                      # every image got a foot (5+ px, one under the stroke)
    centres = (feet.sum(axis=1) * np.arange(28)).sum(axis=1) / feet.sum(axis=(1, 2))
    assert abs(centres.mean() - 6) < 1.0, centres.mean()             # under the stroke's end
    assert (np.abs(centres - 6) <= 2.5).all()                       # +-1 jitter, clipped at the edge
    assert ((feet > 0).sum(axis=1).max(axis=1) == 2).any()          # some feet are 2 px thick
    flags = added[:, 4:12, :]
    assert (flags.sum(axis=(1, 2)) > 0).all()
    cols = np.nonzero(flags.sum(axis=1))[1]
    assert cols.max() <= 12 and cols.min() >= 12 - 7                 # left of the top, 3-7 px long
    assert np.array_equal(RandomFoot(seed=0)(batch, training=False), batch)


def test_augmentation_is_off_at_inference():
    batch = np.random.default_rng(0).random((4, 28, 28, 1)).astype(np.float32)
    out = np.asarray(data.make_augmenter("digits")(batch, training=False))
    assert np.allclose(out, batch)


# ----------------------------------------------------------------------------- metrics

def test_metrics_on_a_hand_checked_example():
    from cvdemo.evaluate import metrics

    #           true: 0 0 0 0 1 1 1 2 2 2
    #      predicted: 0 0 0 1 1 1 2 2 2 0
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    predicted = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 0])
    m = metrics(labels, predicted, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(0.7)
    assert m["confusion_matrix"] == [[3, 1, 0], [0, 2, 1], [1, 0, 2]]
    # a: precision 3/4, recall 3/4; b: 2/3, 2/3; c: 2/3, 2/3
    assert m["per_class"]["a"] == pytest.approx({"precision": 0.75, "recall": 0.75, "f1": 0.75, "support": 4})
    assert m["per_class"]["b"] == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3})
    assert m["macro_f1"] == pytest.approx((0.75 + 2 / 3 + 2 / 3) / 3)


def test_metrics_with_a_class_never_predicted():
    from cvdemo.evaluate import metrics

    m = metrics(np.array([0, 1, 2]), np.array([0, 0, 0]), ["x", "y", "z"])
    assert m["per_class"]["y"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert m["per_class"]["x"]["precision"] == pytest.approx(1 / 3)
    assert m["accuracy"] == pytest.approx(1 / 3)
