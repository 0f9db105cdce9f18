"""Scores on synthetic clusters with known answers, neighbour overlap, the sweep table, the recommendation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from extractor.errors import LayerExplorerError
from extractor.reduce import DegenerateFeaturesError
from extractor.scoring import (
    SCORE_COLUMNS,
    ConfigScore,
    Recommendation,
    ScoringError,
    effective_rank,
    knn_accuracy,
    label_problem,
    linear_probe_accuracy,
    nearest_neighbours,
    neighbour_overlap,
    overlap_matrix,
    recommend,
    score_sweep,
    silhouette,
)


def blobs(n_per=20, dim=32, classes=4, sep=8.0, seed=0):
    """Gaussian blobs around random directions, non-negative like ReLU features."""
    rng = np.random.default_rng(seed)
    centers = np.abs(rng.normal(size=(classes, dim))) * sep
    X = np.vstack([c + rng.normal(size=(n_per, dim)) for c in centers]).astype(np.float32)
    labels = [f"class{i}" for i in np.repeat(np.arange(classes), n_per)]
    return X, labels


# --------------------------------------------------------------------------- labels


def test_label_problem_says_why():
    assert "no labels" in label_problem(None)
    assert "only one class" in label_problem(["a", "a", "a"])
    assert label_problem(["a", "a", "b"]) == (
        "class 'b' has only 1 image; every class needs at least 2 for cross-validated scores."
    )
    assert "none of the images" in label_problem([None, "", None])
    assert label_problem(["a", "a", "b", "b"]) is None
    assert label_problem(["a", "a", "b", "b", None, ""]) is None  # unlabelled images are left out


@pytest.mark.parametrize("labels", [None, ["a"] * 8, ["a"] * 7 + ["b"]])
def test_supervised_scores_are_none_when_labels_cannot_support_them(labels):
    X = np.random.default_rng(0).normal(size=(8, 4))
    assert knn_accuracy(X, labels) is None
    assert linear_probe_accuracy(X, labels) is None
    assert silhouette(X, labels) is None


def test_label_length_mismatch_is_an_error():
    with pytest.raises(ScoringError, match="3 labels for 4 images"):
        knn_accuracy(np.eye(4), ["a", "a", "b"])
    assert issubclass(ScoringError, LayerExplorerError)


def test_non_finite_features_refused():
    X, y = blobs()
    X[3, 3] = np.nan
    with pytest.raises(DegenerateFeaturesError):
        knn_accuracy(X, y)


@pytest.mark.parametrize("kw", [{"k": 0}, {"folds": 1}, {"k": 2.5}, {"folds": True}])
def test_bad_k_or_folds(kw):
    X, y = blobs()
    with pytest.raises(ScoringError):
        knn_accuracy(X, y, **kw)


# --------------------------------------------------------------------------- known answers


def test_separated_blobs_score_perfectly():
    X, y = blobs(sep=8.0)
    assert knn_accuracy(X, y) == 1.0
    assert linear_probe_accuracy(X, y) == 1.0
    assert silhouette(X, y) > 0.7


def test_random_labels_score_near_chance():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 32)).astype(np.float32)
    y = [f"c{i}" for i in rng.integers(0, 4, size=200)]
    assert abs(knn_accuracy(X, y) - 0.25) < 0.12
    assert abs(linear_probe_accuracy(X, y) - 0.25) < 0.12
    assert abs(silhouette(X, y)) < 0.05


def test_unlabelled_images_are_left_out():
    X, y = blobs(n_per=10, classes=2)
    rng = np.random.default_rng(3)
    noise = rng.normal(size=(5, X.shape[1])).astype(np.float32) * 50
    assert knn_accuracy(np.vstack([X, noise]), y + [None] * 5) == knn_accuracy(X, y)


def test_folds_clamped_to_smallest_class():
    # Class "b" has 2 images: 2 folds, and every image is still scored once.
    X = np.array([[1, 0], [1, 0.1], [1, 0.2], [0, 1], [0.1, 1]], np.float32)
    y = ["a", "a", "a", "b", "b"]
    assert knn_accuracy(X, y, k=1, folds=5) == 1.0
    assert linear_probe_accuracy(X, y, folds=5) == 1.0


def test_knn_is_cosine_and_scale_invariant():
    X, y = blobs(sep=1.5, seed=4)
    scale = np.random.default_rng(0).uniform(0.1, 10, size=(X.shape[0], 1)).astype(np.float32)
    assert knn_accuracy(X * scale, y) == knn_accuracy(X, y)
    assert silhouette(X * scale, y) == pytest.approx(silhouette(X, y), abs=1e-5)


def test_linear_probe_span_shortcut_matches_plain_sklearn_pipeline():
    """More features than training images: fitting in the training span must not change predictions."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(5)
    y_int = np.repeat(np.arange(3), 20)
    X = (rng.normal(size=(60, 400)) + 0.15 * rng.normal(size=(3, 400))[y_int]).astype(np.float32)
    y = [str(v) for v in y_int]
    ours = linear_probe_accuracy(X, y, folds=4, seed=0)
    cv = StratifiedKFold(n_splits=4, shuffle=True, random_state=0)
    pred = cross_val_predict(make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)), X, y_int, cv=cv)
    assert 0.4 < ours < 1.0  # a problem neither trivial nor hopeless, so the comparison means something
    assert ours == pytest.approx((pred == y_int).mean(), abs=1 / 60 + 1e-9)


def test_scores_are_deterministic_for_a_seed():
    X, y = blobs(sep=1.0, seed=6)
    assert knn_accuracy(X, y, seed=2) == knn_accuracy(X, y, seed=2)
    assert linear_probe_accuracy(X, y, seed=2) == linear_probe_accuracy(X, y, seed=2)


# --------------------------------------------------------------------------- neighbours


def test_nearest_neighbours_cosine_sorted_and_excludes_itself():
    X = np.array([[1, 0], [2, 0.2], [0, 1], [1, 1]], np.float32)
    nn = nearest_neighbours(X, 0, k=3)
    assert [i for i, _ in nn] == [1, 3, 2]
    assert nn[0][1] == pytest.approx(2 / math.sqrt(4.04), abs=1e-6)
    assert nn[2][1] == pytest.approx(0.0, abs=1e-7)
    assert len(nearest_neighbours(X, 0, k=99)) == 3  # clamped to N - 1
    assert nearest_neighbours(X, -1, k=1)[0][0] in (0, 1)
    with pytest.raises(ScoringError, match="out of range"):
        nearest_neighbours(X, 4)


def test_neighbour_overlap_known_answers():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 16)).astype(np.float32)
    assert neighbour_overlap(X, X) == 1.0
    assert neighbour_overlap(X, 3.7 * X) == 1.0  # cosine ignores scale
    shuffled = X[rng.permutation(300)]  # unrelated neighbourhoods: about k / (N - 1)
    assert neighbour_overlap(X, shuffled) < 0.1
    assert neighbour_overlap(X[:5], X[:5] * 2, k=50) == 1.0  # k clamped to N - 1
    with pytest.raises(ScoringError, match="same images"):
        neighbour_overlap(X, X[:10])


def test_overlap_matrix_is_symmetric_with_unit_diagonal():
    rng = np.random.default_rng(1)
    A = rng.normal(size=(80, 8))
    feats = {"b1/avg": A, "b1/max": A * 2.0, "b2/avg": rng.normal(size=(80, 12))}
    m = overlap_matrix(feats, k=5)
    assert list(m.index) == list(feats) == list(m.columns)
    np.testing.assert_allclose(np.diag(m), 1.0)
    np.testing.assert_allclose(m.values, m.values.T)
    assert m.loc["b1/avg", "b1/max"] == 1.0
    assert m.loc["b1/avg", "b2/avg"] == pytest.approx(neighbour_overlap(A, feats["b2/avg"], k=5))
    assert m.loc["b1/avg", "b2/avg"] < 0.3


# --------------------------------------------------------------------------- effective rank


def test_effective_rank():
    rng = np.random.default_rng(2)
    assert effective_rank(rng.normal(size=(3000, 5))) == pytest.approx(5, rel=0.05)
    line = np.outer(rng.normal(size=50), rng.normal(size=20))
    assert effective_rank(line) == pytest.approx(1.0)
    assert effective_rank(np.ones((4, 3))) is None
    wide = rng.normal(size=(20, 500))  # N < D: Gram route, at most N - 1 directions
    assert 1 < effective_rank(wide) <= 19


# --------------------------------------------------------------------------- the sweep


def sweep_features(seed=0):
    """Four configs of increasing quality; a cheap one nearly as good as the best."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(4), 15)
    labels = [f"c{v}" for v in y]

    def feats(dim, sep):
        centers = np.abs(rng.normal(size=(4, dim)))
        return (sep * centers[y] + rng.normal(size=(60, dim))).astype(np.float32)

    return {
        "block1/avg": feats(16, 0.0),
        "block2/avg": feats(32, 0.8),
        "block3/avg": feats(64, 6.0),
        "block3/max": feats(128, 6.0),
    }, labels


def test_score_sweep_table_with_labels():
    features, labels = sweep_features()
    calls = []
    table = score_sweep(features, labels, depths={"block1": 10, "block2": 20, "block3": 30},
                        costs_ms={"block3/max": 500.0, "block2": 200.0},
                        progress=lambda done, total, key: calls.append((done, total, key)))
    assert tuple(table.columns) == SCORE_COLUMNS
    assert list(table["layer"]) == ["block1", "block2", "block3", "block3"]
    assert list(table["pooling"]) == ["avg", "avg", "avg", "max"]
    assert list(table["dim"]) == [16, 32, 64, 128]
    assert list(table["depth"]) == [10, 20, 30, 30]
    assert table["seconds"].tolist()[1] == 0.2 and table["seconds"].tolist()[3] == 0.5
    assert math.isnan(table["seconds"].tolist()[0])
    assert table.loc[2, "knn_acc"] == 1.0 and table.loc[2, "linear_acc"] == 1.0
    assert table.loc[0, "knn_acc"] < 0.6  # block1 is noise
    assert table["effective_rank"].notna().all() and table["problem"].isna().all()
    assert calls == [(1, 4, "block1/avg"), (2, 4, "block2/avg"), (3, 4, "block3/avg"), (4, 4, "block3/max")]
    assert table.attrs["n_images"] == 60 and table.attrs["n_classes"] == 4 and table.attrs["label_problem"] is None


def test_score_sweep_without_labels_is_unsupervised_only():
    features, _ = sweep_features()
    table = score_sweep(features, None)
    assert tuple(table.columns) == SCORE_COLUMNS
    assert table[["knn_acc", "linear_acc", "silhouette"]].isna().all().all()
    assert table["effective_rank"].notna().all()
    assert list(table["depth"]) == [0, 1, 2, 2]  # order of first appearance when no depths are given
    assert "no labels" in table.attrs["label_problem"]
    assert recommend(table) is None


def test_score_sweep_one_bad_config_does_not_stop_the_sweep():
    features, labels = sweep_features()
    features["block4/avg"] = np.full((60, 8), np.nan, np.float32)
    features["block5/avg"] = np.ones((60, 8), np.float32)
    table = score_sweep(features, labels).set_index(["layer", "pooling"])
    assert "NaN" in table.loc[("block4", "avg"), "problem"]
    assert "same feature vector" in table.loc[("block5", "avg"), "problem"]
    assert math.isnan(table.loc[("block4", "avg"), "knn_acc"])
    assert table.loc[("block3", "avg"), "knn_acc"] == 1.0


def test_score_sweep_input_errors():
    with pytest.raises(ScoringError, match="No feature configurations"):
        score_sweep({}, None)
    with pytest.raises(ScoringError, match="row counts"):
        score_sweep({"a/avg": np.ones((5, 2)), "b/avg": np.ones((6, 2))}, None)
    with pytest.raises(ScoringError, match="labels"):
        score_sweep({"a/avg": np.eye(5)}, ["x"] * 4)


def test_nested_layer_names_split_on_the_last_slash():
    table = score_sweep({"outer/inner_conv/gem": np.random.default_rng(0).normal(size=(6, 3))}, None)
    assert (table.loc[0, "layer"], table.loc[0, "pooling"]) == ("outer/inner_conv", "gem")


def test_config_score_row_names():
    row = ConfigScore(layer="b", pooling="avg", dim=3, knn=0.5, linear=0.7, silhouette=None, seconds=None, depth=1)
    assert tuple(row.as_row()) == SCORE_COLUMNS
    assert row.as_row()["knn_acc"] == 0.5 and row.as_row()["linear_acc"] == 0.7


# --------------------------------------------------------------------------- recommendation


def table_of(rows):
    return pd.DataFrame(rows, columns=["layer", "pooling", "dim", "knn_acc", "linear_acc", "silhouette",
                                       "seconds", "depth"])


def test_recommend_best_and_cheapest_within_one_point():
    t = table_of([
        ("b3", "avg", 256, 0.90, 0.942, 0.1, 1.0, 3),
        ("b4", "avg", 512, 0.93, 0.950, 0.2, 2.0, 4),
        ("b4", "gem", 512, 0.95, 0.950, 0.2, 2.0, 4),   # ties b4/avg on linear, wins on k-NN
        ("b5", "avg", 2048, 0.94, 0.945, 0.3, 3.0, 5),
        ("b2", "avg", 128, 0.80, 0.930, 0.0, 0.5, 2),   # 2 points below: not "within 1 point"
    ])
    r = recommend(t)
    assert isinstance(r, Recommendation)
    assert (r.layer, r.pooling, r.score, r.metric, r.dim) == ("b4", "gem", 0.95, "linear_acc", 512)
    assert (r.cheapest_layer, r.cheapest_pooling, r.cheapest_dim) == ("b3", "avg", 256)
    assert r.cheapest_score == pytest.approx(0.942)
    assert "b4 with gem pooling" in r.reason and "95.0%" in r.reason
    assert "b3 with avg pooling" in r.reason and "94.2%" in r.reason and "2.0× smaller" in r.reason


def test_recommend_cheapest_is_best_when_nothing_smaller_is_close():
    t = table_of([("b3", "avg", 256, 0.7, 0.80, 0.1, 1.0, 3), ("b4", "avg", 512, 0.9, 0.95, 0.2, 2.0, 4)])
    r = recommend(t)
    assert (r.layer, r.cheapest_layer, r.cheapest_dim, r.cheapest_score) == ("b4", "b4", 512, 0.95)
    assert "also the cheapest" in r.reason


def test_recommend_same_size_prefers_faster():
    t = table_of([("b4", "avg", 512, 0.9, 0.95, 0.2, 2.0, 4), ("b3", "max", 512, 0.9, 0.945, 0.2, 0.5, 3)])
    r = recommend(t)
    assert (r.layer, r.cheapest_layer) == ("b4", "b3")
    assert "faster" in r.reason


def test_recommend_falls_back_to_knn_and_mentions_small_sets():
    t = table_of([("b3", "avg", 256, 0.8, np.nan, 0.1, 1.0, 3), ("b4", "avg", 512, 0.9, np.nan, 0.2, 2.0, 4)])
    t.attrs.update(n_labelled=20, n_classes=2)
    r = recommend(t)
    assert (r.layer, r.metric) == ("b4", "knn_acc")
    assert "k-NN accuracy" in r.reason and "20 labelled images" in r.reason and "5.0 points" in r.reason


def test_recommend_none_without_scores():
    assert recommend(table_of([])) is None
    assert recommend(table_of([("b3", "avg", 256, np.nan, np.nan, np.nan, 1.0, 3)])) is None


def test_recommend_on_a_real_sweep_table():
    features, labels = sweep_features()
    r = recommend(score_sweep(features, labels))
    assert r.layer == "block3" and r.score == 1.0
    assert (r.cheapest_layer, r.cheapest_pooling, r.cheapest_dim) == ("block3", "avg", 64)
    assert "60 labelled images in 4 classes" in r.reason
