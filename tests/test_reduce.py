"""PCA / t-SNE / UMAP maps: known answers on synthetic data, and every refusal by name."""

from __future__ import annotations

import numpy as np
import pytest

from extractor.errors import LayerExplorerError
from extractor.reduce import (
    DegenerateFeaturesError,
    Embedding,
    EmbeddingError,
    TooFewImagesError,
    check_features,
    embed,
    pca_2d,
    tsne_2d,
    umap_2d,
    umap_available,
)


def blobs(n_per=20, dim=16, classes=3, sep=10.0, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, dim)) * sep
    X = np.vstack([c + rng.normal(size=(n_per, dim)) for c in centers]).astype(np.float32)
    return X, np.repeat(np.arange(classes), n_per)


# --------------------------------------------------------------------------- check_features


def test_errors_are_layer_explorer_errors():
    assert issubclass(TooFewImagesError, EmbeddingError)
    assert issubclass(DegenerateFeaturesError, EmbeddingError)
    assert issubclass(EmbeddingError, LayerExplorerError)
    assert issubclass(EmbeddingError, ValueError)


def test_too_few_images_message():
    with pytest.raises(TooFewImagesError) as err:
        check_features(np.random.default_rng(0).normal(size=(2, 5)))
    assert str(err.value) == "PCA/t-SNE need at least 3 images; you have 2. Add images or pick a demo set."


@pytest.mark.parametrize("func", [pca_2d, tsne_2d])
def test_embedders_refuse_two_images(func):
    with pytest.raises(TooFewImagesError):
        func(np.random.default_rng(0).normal(size=(2, 5)))


def test_identical_rows_refused():
    X = np.tile(np.arange(6, dtype=np.float32), (5, 1))
    with pytest.raises(DegenerateFeaturesError, match="same feature vector"):
        check_features(X)
    with pytest.raises(DegenerateFeaturesError):
        pca_2d(X)


def test_all_zero_features_refused_with_their_own_message():
    with pytest.raises(DegenerateFeaturesError, match="zero"):
        pca_2d(np.zeros((4, 3), np.float32))


def test_constant_columns_with_tiny_float_noise_still_refused():
    X = np.full((5, 4), 1000.0, np.float32)
    X[0, 0] = np.nextafter(np.float32(1000.0), np.float32(2000.0))  # one ulp: round-off, not signal
    with pytest.raises(DegenerateFeaturesError):
        check_features(X)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_rows_named(bad):
    X = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    X[4, 2] = bad
    with pytest.raises(DegenerateFeaturesError, match=r"1 of 6 images .*\(image numbers 4\).*float32"):
        check_features(X)
    with pytest.raises(DegenerateFeaturesError):
        tsne_2d(X)


def test_shape_and_dtype_checks():
    with pytest.raises(EmbeddingError, match="shape"):
        check_features(np.zeros((4, 2, 2)))
    with pytest.raises(DegenerateFeaturesError, match="0 columns"):
        check_features(np.zeros((4, 0)))
    out = check_features(np.arange(12, dtype=np.int64).reshape(4, 3))
    assert out.dtype == np.float32 and out.flags.c_contiguous
    assert check_features(np.eye(3)).dtype == np.float64
    assert check_features(np.asfortranarray(np.eye(3, dtype=np.float32))).flags.c_contiguous


# --------------------------------------------------------------------------- PCA


def test_pca_matches_known_anisotropic_gaussian():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(4000, 3)) * np.array([10.0, 3.0, 1.0])
    emb = pca_2d(X)
    assert isinstance(emb, Embedding) and emb.method == "pca"
    assert emb.coords.shape == (4000, 2) and emb.coords.dtype == np.float32
    np.testing.assert_allclose(emb.explained_variance, [100 / 110, 9 / 110], atol=0.01)
    # The axes are the x and y directions: coordinates match (up to sign) the centred columns.
    for axis in range(2):
        corr = np.corrcoef(emb.coords[:, axis], X[:, axis])[0, 1]
        assert abs(corr) > 0.99
    assert emb.notes == ()


def test_pca_matches_sklearn_exact_pca_on_wide_features():
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(2)
    # 600 x 1024 takes the randomized route; the spectrum decays like real pooled features.
    X = (rng.normal(size=(600, 1024)) * np.linspace(4, 0.1, 1024) + rng.normal(size=(600, 1)) * 3).astype(np.float32)
    emb = pca_2d(X)
    ref = PCA(n_components=2, svd_solver="full").fit(X)
    np.testing.assert_allclose(emb.explained_variance, ref.explained_variance_ratio_, rtol=0.02)
    exact = ref.transform(X)
    for axis in range(2):
        assert abs(np.corrcoef(emb.coords[:, axis], exact[:, axis])[0, 1]) > 0.99


def test_pca_is_deterministic():
    X, _ = blobs()
    np.testing.assert_array_equal(pca_2d(X, seed=3).coords, pca_2d(X, seed=3).coords)


def test_pca_single_direction_pads_second_axis_with_zeros():
    # Two distinct vectors (each repeated): only one direction of variation.
    X = np.array([[0, 0, 0], [1, 2, 3], [0, 0, 0], [1, 2, 3]], np.float32)
    emb = pca_2d(X)
    assert emb.coords.shape == (4, 2)
    np.testing.assert_array_equal(emb.coords[:, 1], 0)
    assert emb.explained_variance[1] == 0.0 and emb.explained_variance[0] == pytest.approx(1.0)
    assert any("only one direction" in note for note in emb.notes)


def test_pca_one_feature_column():
    emb = pca_2d(np.array([[1.0], [2.0], [4.0]]))
    assert emb.coords.shape == (3, 2) and np.isfinite(emb.coords).all()
    np.testing.assert_array_equal(emb.coords[:, 1], 0)


# --------------------------------------------------------------------------- t-SNE


def test_tsne_clamps_perplexity_for_ten_images_with_a_note():
    X = np.random.default_rng(0).normal(size=(10, 64))
    emb = tsne_2d(X, max_iter=250)
    assert emb.method == "tsne" and emb.explained_variance is None
    assert emb.coords.shape == (10, 2) and np.isfinite(emb.coords).all()
    assert emb.notes[0] == "Perplexity lowered from 30 to 3 because there are only 10 images."
    assert any("PCA before t-SNE" in note for note in emb.notes)


def test_tsne_three_images_uses_minimum_perplexity():
    emb = tsne_2d(np.random.default_rng(0).normal(size=(3, 4)), max_iter=250)
    assert "to 2 because there are only 3 images" in emb.notes[0]
    assert np.isfinite(emb.coords).all()


def test_tsne_keeps_perplexity_and_skips_pca_when_not_needed():
    X, y = blobs(n_per=30, dim=8, classes=2, sep=20.0)
    # 500 iterations: scikit-learn spends the first 250 in early exaggeration, so max_iter=250 stops
    # before the map has been optimised at all (scikit-learn 1.9 then leaves one point astray).
    emb = tsne_2d(X, perplexity=10, max_iter=500)
    assert emb.notes == ()
    # Well-separated blobs stay separated: every point's nearest map neighbour is same-class.
    d = np.linalg.norm(emb.coords[:, None] - emb.coords[None], axis=2)
    np.fill_diagonal(d, np.inf)
    assert (y[d.argmin(axis=1)] == y).mean() == 1.0


def test_tsne_is_reproducible_with_a_seed():
    X, _ = blobs(n_per=10, dim=8)
    a = tsne_2d(X, seed=5, max_iter=250).coords
    b = tsne_2d(X, seed=5, max_iter=250).coords
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_tsne_on_a_single_feature_column():
    emb = tsne_2d(np.arange(10.0).reshape(10, 1), max_iter=250)
    assert emb.coords.shape == (10, 2) and np.isfinite(emb.coords).all()


@pytest.mark.parametrize("kw", [{"perplexity": 0}, {"perplexity": -5}, {"perplexity": float("nan")},
                                {"perplexity": "thirty"}, {"max_iter": 100}, {"max_iter": 1.5}])
def test_tsne_rejects_bad_parameters(kw):
    with pytest.raises(EmbeddingError):
        tsne_2d(np.random.default_rng(0).normal(size=(10, 4)), **kw)


# --------------------------------------------------------------------------- UMAP and dispatch


def test_umap_missing_says_how_to_install(monkeypatch):
    import extractor.reduce as reduce

    monkeypatch.setattr(reduce, "umap_available", lambda: False)
    with pytest.raises(EmbeddingError, match="pip install umap-learn"):
        reduce.umap_2d(np.random.default_rng(0).normal(size=(10, 4)))
    with pytest.raises(EmbeddingError, match="umap-learn"):
        reduce.embed(np.random.default_rng(0).normal(size=(10, 4)), "umap")


def test_umap_uses_the_package_when_present(monkeypatch):
    """A stand-in `umap` module checks the arguments we pass (umap-learn is optional)."""
    import sys
    import types

    import extractor.reduce as reduce

    seen = {}

    class FakeUMAP:
        def __init__(self, **kw):
            seen.update(kw)

        def fit_transform(self, X):
            seen["shape"] = X.shape
            return X[:, :2] * 1.0

    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=FakeUMAP))
    monkeypatch.setattr(reduce, "umap_available", lambda: True)
    emb = reduce.umap_2d(np.random.default_rng(0).normal(size=(8, 100)), n_neighbors=15, seed=4)
    assert emb.method == "umap" and emb.coords.shape == (8, 2) and emb.coords.dtype == np.float32
    assert seen["n_neighbors"] == 7 and seen["random_state"] == 4 and seen["shape"] == (8, 8)
    assert any("n_neighbors lowered from 15 to 7" in note for note in emb.notes)


def test_umap_available_is_a_bool():
    assert isinstance(umap_available(), bool)


@pytest.mark.skipif(not umap_available(), reason="umap-learn not installed (optional)")
def test_real_umap():
    X, _ = blobs(n_per=20, dim=8)
    assert umap_2d(X).coords.shape == (60, 2)


def test_embed_dispatches_and_rejects_unknown_methods():
    X, _ = blobs(n_per=5, dim=4)
    assert embed(X).method == "pca"
    assert embed(X, "PCA").method == "pca"
    assert embed(X, "t-SNE", max_iter=250).method == "tsne"
    with pytest.raises(EmbeddingError, match="pca, tsne, umap"):
        embed(X, "isomap")
