"""Analysis computations on hand-made numbers: metrics, calibration, centroids, t-SNE, duplicates."""
from __future__ import annotations

import numpy as np
import pytest

from cvdemo import analysis
from cvdemo.evaluate import metrics


def test_metrics_match_a_hand_checked_example():
    # true: 0 0 0 1 1 2 ; predicted: 0 0 1 1 2 2
    labels = np.array([0, 0, 0, 1, 1, 2])
    predicted = np.array([0, 0, 1, 1, 2, 2])
    scores = metrics(labels, predicted, ["a", "b", "c"])
    assert scores["accuracy"] == pytest.approx(4 / 6)
    # class a: P=2/2 R=2/3 ; b: P=1/2 R=1/2 ; c: P=1/2 R=1/1
    assert scores["per_class"]["a"]["precision"] == pytest.approx(1.0)
    assert scores["per_class"]["a"]["recall"] == pytest.approx(2 / 3)
    assert scores["per_class"]["b"]["f1"] == pytest.approx(0.5)
    assert scores["per_class"]["c"]["f1"] == pytest.approx(2 * 0.5 * 1 / 1.5)
    f1_a = 2 * 1 * (2 / 3) / (1 + 2 / 3)
    assert scores["macro_f1"] == pytest.approx((f1_a + 0.5 + 2 / 3) / 3)
    assert scores["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    normalised = analysis.confusion_normalised(np.array(scores["confusion_matrix"]))
    np.testing.assert_allclose(normalised, [[2 / 3, 1 / 3, 0], [0, 0.5, 0.5], [0, 0, 1]])


def test_confusion_normalised_keeps_empty_rows_at_zero():
    out = analysis.confusion_normalised(np.array([[0, 0], [1, 3]]))
    np.testing.assert_allclose(out, [[0, 0], [0.25, 0.75]])


def test_expected_calibration_error_on_a_hand_made_example():
    # four predictions: confidences 0.95 (right), 0.95 (wrong), 0.65 (right), 0.65 (right)
    probabilities = np.array([[0.95, 0.05], [0.95, 0.05], [0.35, 0.65], [0.35, 0.65]])
    labels = np.array([0, 1, 1, 1])
    ece, bins = analysis.calibration(probabilities, labels, n_bins=10)
    # bin 0.9-1.0: accuracy 0.5, confidence 0.95 -> gap 0.45, weight 1/2
    # bin 0.6-0.7: accuracy 1.0, confidence 0.65 -> gap 0.35, weight 1/2
    assert ece == pytest.approx(0.5 * 0.45 + 0.5 * 0.35)
    filled = [b for b in bins if b["count"]]
    assert [(b["count"], b["accuracy"]) for b in filled] == [(2, 1.0), (2, 0.5)]
    assert sum(b["count"] for b in bins) == 4


def test_perfectly_confident_and_right_is_perfectly_calibrated():
    ece, bins = analysis.calibration(np.eye(3), np.arange(3))
    assert ece == pytest.approx(0.0)
    assert bins[-1]["count"] == 3          # confidence exactly 1.0 lands in the last bin


def test_centroid_distances_on_hand_made_features():
    features = np.array([[0.0, 0.0], [2.0, 0.0], [10.0, 0.0], [10.0, 2.0]])
    labels = np.array([0, 0, 1, 1])
    centroids = analysis.class_centroids(features, labels, n_classes=3)
    np.testing.assert_allclose(centroids[:2], [[1.0, 0.0], [10.0, 1.0]])
    assert np.isnan(centroids[2]).all()          # class without images
    d = analysis.centroid_distances(features, centroids)
    assert d.shape == (4, 3)
    np.testing.assert_allclose(d[0, :2], [1.0, np.hypot(10, 1)])
    np.testing.assert_allclose(d[3, :2], [np.hypot(9, 2), 1.0])
    assert np.isnan(d[:, 2]).all()


def _result_with(features_by_model: dict, probabilities_by_model: dict, labels):
    """A minimal AnalysisResult from hand-made features and probabilities."""
    labels = np.asarray(labels)
    models = {}
    for name, features in features_by_model.items():
        features = np.asarray(features, float)
        d = analysis.centroid_distances(features, analysis.class_centroids(features, labels, 2))
        models[name] = analysis.ModelResult(
            name, metrics(labels, np.asarray(probabilities_by_model[name]).argmax(1), ["a", "b"]),
            np.asarray(probabilities_by_model[name], float), features, d, np.zeros((len(labels), 2)),
            np.zeros((len(labels), 3)), 0.0, [], 1.0, {})
    data = {"class_names": ["a", "b"], "paths": [f"/x/{i}.png" for i in range(len(labels))]}
    return analysis.AnalysisResult("k", data, labels, np.arange(len(labels)), [], models)


def test_misclassified_rows_compare_centroid_distances_across_models():
    labels = [0, 0, 0, 1, 1, 1]
    # image 2 is labelled a but sits among the b's in both feature spaces
    one = [[0, 0], [0, 1], [9, 0], [10, 0], [10, 1], [11, 0]]
    two = [[0, 0], [1, 0], [20, 0], [20, 1], [21, 0], [20, 2]]
    p_right = np.eye(2)[[0, 0, 0, 1, 1, 1]] * 0.8 + 0.1
    p_wrong = np.eye(2)[[0, 0, 1, 1, 1, 1]] * 0.8 + 0.1
    result = _result_with({"m1": one, "m2": two}, {"m1": p_wrong, "m2": p_right}, labels)
    rows = result.misclassified()
    assert [r["index"] for r in rows] == [2]
    row = rows[0]
    assert row["models"]["m1"]["predicted"] == "b" and not row["models"]["m1"]["correct"]
    assert row["models"]["m2"]["correct"]
    m1 = row["models"]["m1"]
    centroid_a, centroid_b = np.mean(np.array(one)[:3], 0), np.mean(np.array(one)[3:], 0)
    assert m1["d_true"] == pytest.approx(np.linalg.norm(np.array([9, 0]) - centroid_a))
    assert m1["d_pred"] == pytest.approx(np.linalg.norm(np.array([9, 0]) - centroid_b))
    assert m1["ratio"] > 1                        # nearer the predicted class
    assert row["models"]["m2"]["ratio"] == pytest.approx(1.0)   # right answer: pred == true
    assert row["suspect"]                        # closer to b's centroid in both models
    assert [s["index"] for s in result.suspects()] == [2]


def test_an_image_near_its_own_class_is_not_a_suspect():
    labels = [0, 0, 1, 1]
    features = [[0, 0], [1, 0], [10, 0], [11, 0]]
    p = np.eye(2)[[1, 0, 1, 1]] * 0.8 + 0.1       # image 0 misclassified, yet sits with its class
    result = _result_with({"m": features}, {"m": p}, labels)
    rows = result.misclassified()
    assert len(rows) == 1 and not rows[0]["suspect"] and rows[0]["models"]["m"]["ratio"] < 1
    assert result.suspects() == []


def test_tsne_shapes_and_seeding():
    rng = np.random.default_rng(0)
    features = np.concatenate([rng.normal(0, 1, (12, 8)), rng.normal(6, 1, (12, 8))])
    two = analysis.embed_tsne(features, 2, seed=3)
    three = analysis.embed_tsne(features, 3, seed=3)
    assert two.shape == (24, 2) and three.shape == (24, 3)
    np.testing.assert_allclose(two, analysis.embed_tsne(features, 2, seed=3))
    # the two clusters stay apart
    gap = np.linalg.norm(two[:12].mean(0) - two[12:].mean(0))
    assert gap > np.linalg.norm(two[:12] - two[:12].mean(0), axis=1).mean()


def test_tsne_handles_tiny_inputs():
    assert analysis.embed_tsne(np.ones((2, 4)), 3).shape == (2, 3)
    assert analysis.embed_tsne(np.random.default_rng(1).random((4, 4)), 2).shape == (4, 2)


def test_near_duplicates_find_copies_not_lookalikes():
    rng = np.random.default_rng(0)
    train = rng.random((10, 28, 28, 1)).astype(np.float32)
    evaluated = rng.random((4, 28, 28, 1)).astype(np.float32)
    evaluated[1] = train[7]                                   # exact copy
    evaluated[3] = np.clip(train[2] + 0.01, 0, 1)             # re-encoded copy
    found = analysis.near_duplicates(train, evaluated)
    assert [(i, j) for i, j, _ in found] == [(1, 7), (3, 2)]
    assert found[0][2] == pytest.approx(0.0, abs=1e-6)
    assert analysis.near_duplicates(train, evaluated[[0, 2]]) == []


def test_cache_key_changes_with_model_and_data():
    metas = {"scratch": {"model_sha256": "a"}, "finetuned": {"model_sha256": "b"}}
    key = analysis.cache_key(metas, "data1")
    assert key == analysis.cache_key(dict(reversed(list(metas.items()))), "data1")
    assert key != analysis.cache_key(metas, "data2")
    assert key != analysis.cache_key({**metas, "scratch": {"model_sha256": "c"}}, "data1")
