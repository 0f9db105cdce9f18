"""Linear CKA: the estimator against its published formulas, its invariances, and full maps."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

import extractor.cka as cka_module
from extractor.cka import CKAError, GramAccumulator, cka_from_grams, cka_matrix, full_map_grams, linear_cka


def _rng(seed=0):
    return np.random.default_rng(seed)


def _published_cka(x, y):
    """Kornblith et al. 2019, eq. for linear CKA via HSIC with the explicit centering matrix H."""
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, m = x @ x.T, y @ y.T

    def hsic(a, b):
        return np.trace(a @ h @ b @ h) / (n - 1) ** 2

    return hsic(k, m) / np.sqrt(hsic(k, k) * hsic(m, m))


def _published_debiased(x, y):
    """Song et al. 2012 unbiased HSIC, written term by term with explicit loops over the formula."""
    n = x.shape[0]

    def hsic_u(k, m):
        k, m = k.copy(), m.copy()
        np.fill_diagonal(k, 0)
        np.fill_diagonal(m, 0)
        one = np.ones(n)
        term1 = np.trace(k @ m)
        term2 = (one @ k @ one) * (one @ m @ one) / ((n - 1) * (n - 2))
        term3 = 2 / (n - 2) * (one @ k @ m @ one)
        return (term1 + term2 - term3) / (n * (n - 3))

    k, m = x @ x.T, y @ y.T
    return hsic_u(k, m) / np.sqrt(hsic_u(k, k) * hsic_u(m, m))


def test_doctests():
    assert doctest.testmod(cka_module, extraglobs={"np": np}).failed == 0


@pytest.mark.parametrize("debiased", [False, True])
def test_self_similarity_is_one_and_symmetric(debiased):
    x, y = _rng().normal(size=(40, 12)), _rng(1).normal(size=(40, 30))
    assert linear_cka(x, x, debiased) == pytest.approx(1.0, abs=1e-9)
    assert linear_cka(x, y, debiased) == pytest.approx(linear_cka(y, x, debiased), abs=1e-12)


@pytest.mark.parametrize("debiased", [False, True])
def test_invariant_to_orthogonal_maps_and_isotropic_scaling(debiased):
    rng = _rng(2)
    x, y = rng.normal(size=(50, 10)), rng.normal(size=(50, 7))
    q, _ = np.linalg.qr(rng.normal(size=(10, 10)))
    base = linear_cka(x, y, debiased)
    assert linear_cka(x @ q, y, debiased) == pytest.approx(base, abs=1e-9)
    assert linear_cka(7.5 * x, 0.01 * y, debiased) == pytest.approx(base, abs=1e-9)


def test_not_invariant_to_general_linear_maps():
    rng = _rng(3)
    x = rng.normal(size=(60, 6))
    a = np.diag([100.0, 1, 1, 1, 1, 0.01]) @ rng.normal(size=(6, 6))  # invertible, far from orthogonal
    assert np.linalg.matrix_rank(a) == 6
    assert linear_cka(x, x @ a) < 0.9


@pytest.mark.parametrize("shape", [((30, 5), (30, 8)), ((20, 50), (20, 40))])  # feature-space and Gram paths
def test_matches_published_formula(shape):
    rng = _rng(4)
    x, y = rng.normal(size=shape[0]), rng.normal(size=shape[1])
    y = y + 0.5 * x[:, :1]  # some shared structure so the value is not near 0
    assert linear_cka(x, y) == pytest.approx(_published_cka(x, y), abs=1e-6)
    assert cka_from_grams(x @ x.T, y @ y.T) == pytest.approx(_published_cka(x, y), abs=1e-6)


def test_debiased_matches_its_formula():
    rng = _rng(5)
    x, y = rng.normal(size=(25, 40)), rng.normal(size=(25, 9))
    y[:, 0] += x[:, 0]
    assert linear_cka(x, y, debiased=True) == pytest.approx(_published_debiased(x, y), abs=1e-6)
    # the debiased estimator corrects the biased one's pull towards 1 on few images
    assert linear_cka(x, y, debiased=True) < linear_cka(x, y)


def test_matrix_agrees_with_pairwise_calls():
    rng = _rng(6)
    feats = {f"l{i}": rng.normal(size=(30, 4 + i)) for i in range(3)}
    for debiased in (False, True):
        m = cka_matrix(feats, debiased=debiased)
        for i, a in enumerate(feats):
            for j, b in enumerate(feats):
                assert m.values[i, j] == pytest.approx(linear_cka(feats[a], feats[b], debiased), abs=1e-9)
    other = {"o": rng.normal(size=(30, 3))}
    m = cka_matrix(feats, other)
    assert m.values.shape == (3, 1) and m.columns == ("o",)
    assert list(m.frame().columns) == ["layer", "o"]


def test_errors_are_explained():
    with pytest.raises(CKAError, match="same images"):
        linear_cka(np.ones((5, 2)), np.ones((6, 2)))
    with pytest.raises(CKAError, match="at least 4"):
        linear_cka(np.eye(3), np.eye(3), debiased=True)
    assert np.isnan(linear_cka(np.ones((5, 2)), _rng().normal(size=(5, 2))))  # constant: undefined, not 0


def test_full_maps_equal_pooled_on_one_by_one_maps():
    maps = {"a": _rng(7).normal(size=(23, 1, 1, 6)), "b": _rng(8).normal(size=(23, 1, 1, 4))}
    grams = full_map_grams(lambda idx: {k: v[list(idx)] for k, v in maps.items()}, 23, block_size=5)
    full = cka_matrix(row_grams=grams, debiased=True)
    pooled = cka_matrix({k: v.mean(axis=(1, 2)) for k, v in maps.items()}, debiased=True)
    np.testing.assert_allclose(full.values, pooled.values, atol=1e-10)


def test_full_maps_memory_stays_n_by_n_beyond_one_block():
    n, block = 40, 8
    maps = _rng(9).normal(size=(n, 4, 4, 3))
    asked = []

    def maps_of(idx):
        asked.append(len(idx))
        return {"x": maps[list(idx)]}

    grams = full_map_grams(maps_of, n, block_size=block)
    assert max(asked) <= block  # never more than one block of maps asked for at a time
    b = n // block
    assert len(asked) == b * (b + 1) // 2
    assert grams["x"].shape == (n, n) and grams["x"].nbytes == n * n * 8
    np.testing.assert_allclose(grams["x"], maps.reshape(n, -1) @ maps.reshape(n, -1).T)
    acc = GramAccumulator(n)
    assert acc.nbytes == n * n * 8  # the accumulator holds the Gram and nothing of size n × H·W·C
    with pytest.raises(CKAError, match="not complete"):
        acc.matrix()
