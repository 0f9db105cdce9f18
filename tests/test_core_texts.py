"""Issue 10, items 11/12: the core's sentences read right (no doubled prefix, no "0.0 points lower",
the count of configurations that really competed, the perplexity that was really used, plurals)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from extractor.reduce import DegenerateFeaturesError, check_features, pca_2d, tsne_2d
from extractor.scoring import label_problem, recommend
from extractor.sweep import SweepReport


def table_of(rows):
    return pd.DataFrame(rows, columns=["layer", "pooling", "dim", "knn_acc", "linear_acc", "silhouette",
                                       "seconds", "depth"])


@pytest.mark.parametrize("labels", [None, [None, None, None], ["a", "a", "a"], ["a", "a", "b"]])
def test_label_problem_reads_after_a_heading_without_its_own(labels):
    why = label_problem(labels)
    for heading in ("No accuracy scores: ", "No recommendation: "):
        text = heading + why
        assert text.count(":") == 1 or "(" in why  # no second "No labels:"-style prefix
    assert why[0].islower() and not why.lower().startswith("no labels")


def test_sweep_says_why_there_is_no_recommendation_once():
    report = SweepReport(table=table_of([]), recommendation=None, label_problem=label_problem(None))
    text = report.recommendation_text()
    assert text.startswith("No recommendation: the images have no labels")
    assert text.count("one folder per class") == 1 and ".." not in text and ". ." not in text


def test_equal_scores_are_not_called_0_0_points_lower():
    t = table_of([("b4", "avg", 512, 0.9, 0.95, 0.2, 2.0, 4), ("b3", "avg", 256, 0.9, 0.95, 0.2, 1.0, 3)])
    r = recommend(t)
    assert r.cheapest_layer == "b3" and r.layer == "b3"  # a tie goes to the smaller one outright
    t = table_of([("b4", "avg", 512, 0.9, 0.9504, 0.2, 2.0, 4), ("b3", "avg", 256, 0.9, 0.95, 0.2, 1.0, 3)])
    r = recommend(t)
    assert (r.layer, r.cheapest_layer) == ("b4", "b3")
    assert "0.0 points" not in r.reason and "less than 0.1 points lower" in r.reason


def test_configurations_without_a_score_are_counted_apart():
    rows = [(f"b{i}", "avg", 64 * i, 0.5 + i / 100, 0.5 + i / 100, 0.1, 1.0, i) for i in range(1, 9)]
    rows += [("b9", "flatten", 9999, np.nan, np.nan, np.nan, 1.0, 9)] * 2  # swept but not scorable
    r = recommend(table_of(rows))
    assert "highest of 8 scored configurations (10 swept)" in r.reason
    assert "highest of 10" not in r.reason


def test_all_scored_says_just_the_count():
    rows = [(f"b{i}", "avg", 64 * i, 0.5 + i / 100, 0.5 + i / 100, 0.1, 1.0, i) for i in range(1, 4)]
    assert "the highest of 3 configurations" in recommend(table_of(rows)).reason


def test_tsne_reports_the_perplexity_it_used():
    X = np.random.default_rng(0).normal(size=(10, 8))
    emb = tsne_2d(X, perplexity=30, max_iter=250)
    assert emb.params == (("perplexity", 3.0),)
    assert tsne_2d(X, perplexity=2.5, max_iter=250).params == (("perplexity", 2.5),)
    assert pca_2d(X).params == ()


def test_one_bad_image_is_singular():
    X = np.random.default_rng(0).normal(size=(5, 4))
    X[2, 1] = np.nan
    with pytest.raises(DegenerateFeaturesError, match=r"1 of 5 images has NaN"):
        check_features(X)


def test_backbone_descriptions_stand_on_their_own():
    from extractor import BACKBONES

    for spec in BACKBONES.values():
        assert "seed article" not in spec.description.lower(), spec.name


def test_identical_tiny_vectors_are_called_collapsed_not_copies():
    X = np.tile(np.full((1, 6), 3e-12), (4, 1))
    with pytest.raises(DegenerateFeaturesError) as info:
        check_features(X)
    assert "collapsed" in str(info.value) and "copies" not in str(info.value)
    assert "batch normalisation" in str(info.value)
