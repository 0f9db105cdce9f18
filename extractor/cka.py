"""Linear CKA: how alike two layers' representations of the same images are (Kornblith et al., ICML 2019).

Centered kernel alignment compares two representations X (n × p) and Y (n × q) of the same n
images through their Gram matrices K = X Xᵀ and L = Y Yᵀ:

    CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) · HSIC(L, L))

with ``HSIC(K, L) = tr(K H L H) / (n − 1)²`` and H the centering matrix (the biased estimator).
It is 1 for identical representations and invariant to orthogonal transforms and isotropic
scaling, but not to general invertible linear maps, so it sees differences that a linear probe
would not. The biased estimator is pulled towards 1 when there are few images per dimension;
``debiased=True`` uses the unbiased HSIC estimator of Song et al. (2012), as in Kornblith et al.
§3 and Nguyen et al. (2021), which is the right choice for small sets (it needs n ≥ 4).

Everything goes through n × n Gram matrices, never through the (possibly huge) feature axis
twice: :func:`cka_matrix` computes each layer's Gram once and then every pair costs O(n²).
:class:`GramAccumulator` builds the Gram of *full* (H·W·C) maps from blocks of images, so a
full-maps comparison holds n × n floats per layer plus one block of maps, never n × H·W·C.

Example:
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(50, 8))
    >>> Q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    >>> round(linear_cka(X, X), 6), round(linear_cka(X, 3 * X @ Q), 6)
    (1.0, 1.0)
    >>> linear_cka(X, rng.normal(size=(50, 8))) < 0.5
    True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import LayerExplorerError

__all__ = [
    "CKAError",
    "CKAResult",
    "GramAccumulator",
    "cka_from_grams",
    "cka_matrix",
    "estimator_name",
    "full_map_grams",
    "gram",
    "linear_cka",
]

MIN_IMAGES_DEBIASED = 4  # the unbiased HSIC divides by n(n − 3)
DEBIASED_BELOW = 100  # the app's default: debiased for sets smaller than this


class CKAError(LayerExplorerError):
    """Representations that cannot be compared (different image counts, too few images, empty)."""


def estimator_name(debiased: bool) -> str:
    """How the estimator is named in CSV metadata and captions.

    >>> estimator_name(True)
    'linear CKA, debiased (unbiased HSIC, Song et al. 2012)'
    """
    return "linear CKA, debiased (unbiased HSIC, Song et al. 2012)" if debiased else "linear CKA, biased (Kornblith et al. 2019)"


def _as_2d(x, what: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        arr = arr.reshape(arr.shape[0], -1)
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise CKAError(f"{what} is empty (shape {arr.shape}); CKA needs one row per image and at least one feature.")
    if not np.isfinite(arr).all():
        raise CKAError(f"{what} holds NaN or infinite values; check the features (e.g. a bfloat16 overflow).")
    return arr


def gram(x) -> np.ndarray:
    """The linear kernel X Xᵀ (n × n, float64) of one representation; extra axes are flattened.

    >>> gram(np.eye(3)).shape
    (3, 3)
    """
    arr = _as_2d(x, "the representation")
    return arr @ arr.T


def _check_pair(n_k: int, n_l: int, debiased: bool) -> None:
    if n_k != n_l:
        raise CKAError(f"the two representations describe {n_k} and {n_l} images; CKA compares the same images, "
                       "so both need one row per image, in the same order.")
    if n_k < 2:
        raise CKAError(f"CKA needs at least 2 images; got {n_k}.")
    if debiased and n_k < MIN_IMAGES_DEBIASED:
        raise CKAError(f"the debiased estimator needs at least {MIN_IMAGES_DEBIASED} images; got {n_k}. "
                       "Use the biased estimator (debiased=False) or add images.")


def _center(k: np.ndarray) -> np.ndarray:
    """H K H without forming H: subtract row and column means, add back the grand mean."""
    return k - k.mean(axis=0, keepdims=True) - k.mean(axis=1, keepdims=True) + k.mean()


def _unbiased_prep(k: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """K̃ (zero diagonal), 1ᵀK̃1 and K̃1: what the unbiased HSIC needs of one Gram."""
    kt = k.copy()
    np.fill_diagonal(kt, 0.0)
    rows = kt.sum(axis=1)
    return kt, float(rows.sum()), rows


def _hsic_unbiased(a, b, n: int) -> float:
    """Song et al. (2012), eq. 5: [tr(K̃L̃) + 1ᵀK̃1·1ᵀL̃1 / ((n−1)(n−2)) − 2/(n−2)·1ᵀK̃L̃1] / (n(n−3))."""
    kt, ksum, krows = a
    lt, lsum, lrows = b
    trace = float(np.sum(kt * lt))  # tr(K̃ L̃) for symmetric matrices
    return (trace + ksum * lsum / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * float(krows @ lrows)) / (n * (n - 3))


def _prepared(k: np.ndarray, debiased: bool):
    return _unbiased_prep(k) if debiased else _center(k)


def _hsic(a, b, n: int, debiased: bool) -> float:
    if debiased:
        return _hsic_unbiased(a, b, n)
    return float(np.sum(a * b))  # tr(HKH · HLH); the 1/(n−1)² cancels in the ratio


def _ratio(kl: float, kk: float, ll: float) -> float:
    if kk <= 0 or ll <= 0:
        # A representation that does not vary over the images (all rows equal, e.g. a dead layer)
        # has no similarity structure to compare: NaN, shown as "n/a", not a made-up 0 or 1.
        return float("nan")
    return float(kl / np.sqrt(kk * ll))


def cka_from_grams(k: np.ndarray, m: np.ndarray, debiased: bool = False) -> float:
    """Linear CKA from two n × n Gram matrices (X Xᵀ and Y Yᵀ).

    >>> x = np.arange(12.0).reshape(6, 2) ** 2
    >>> round(cka_from_grams(gram(x), gram(x)), 6)
    1.0
    """
    k = np.asarray(k, np.float64)
    m = np.asarray(m, np.float64)
    if k.ndim != 2 or k.shape[0] != k.shape[1] or m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise CKAError(f"Gram matrices must be square n × n; got {k.shape} and {m.shape}.")
    n = k.shape[0]
    _check_pair(n, m.shape[0], debiased)
    a, b = _prepared(k, debiased), _prepared(m, debiased)
    return _ratio(_hsic(a, b, n, debiased), _hsic(a, a, n, debiased), _hsic(b, b, n, debiased))


def linear_cka(x, y, debiased: bool = False) -> float:
    """Linear CKA between two representations of the same n images (rows), in [0, 1].

    Feature maps (n, H, W, C) are flattened per image. NaN when one representation is constant
    over the images. The biased form uses the feature-space identity
    ``‖Yᵀ X‖²_F / (‖Xᵀ X‖_F ‖Yᵀ Y‖_F)`` on centred columns when that is cheaper than n × n Grams.

    >>> x = np.random.default_rng(1).normal(size=(20, 5))
    >>> round(linear_cka(x, x, debiased=True), 6)
    1.0
    """
    xa, ya = _as_2d(x, "the first representation"), _as_2d(y, "the second representation")
    n = xa.shape[0]
    _check_pair(n, ya.shape[0], debiased)
    if not debiased and max(xa.shape[1], ya.shape[1]) < n:
        xc, yc = xa - xa.mean(axis=0), ya - ya.mean(axis=0)
        cross = np.linalg.norm(yc.T @ xc) ** 2
        return _ratio(cross, np.linalg.norm(xc.T @ xc) ** 2, np.linalg.norm(yc.T @ yc) ** 2)
    return cka_from_grams(xa @ xa.T, ya @ ya.T, debiased)


@dataclass(frozen=True)
class CKAResult:
    """CKA between every row layer and every column layer; ``values[i, j]`` for rows[i] × columns[j]."""

    rows: tuple[str, ...]
    columns: tuple[str, ...]
    values: np.ndarray
    debiased: bool
    n_images: int
    features: str = "avg"  # "avg" (avg-pooled vectors) or "full" (flattened maps)

    @property
    def estimator(self) -> str:
        return estimator_name(self.debiased)

    def frame(self):
        """A DataFrame: column ``layer`` (row names), then one column per column layer."""
        import pandas as pd

        df = pd.DataFrame(self.values, columns=list(self.columns))
        df.insert(0, "layer", list(self.rows))
        return df


def cka_matrix(
    rows: Mapping[str, np.ndarray] | None = None,
    columns: Mapping[str, np.ndarray] | None = None,
    *,
    debiased: bool = False,
    row_grams: Mapping[str, np.ndarray] | None = None,
    column_grams: Mapping[str, np.ndarray] | None = None,
    features: str = "avg",
) -> CKAResult:
    """CKA between every pair of layers: ``rows`` × ``columns`` (``columns`` defaults to ``rows``).

    Pass feature arrays (``{layer: (n, d) or (n, H, W, C)}``) or, for full maps built with
    :func:`full_map_grams`, their Gram matrices (``row_grams``/``column_grams``). Each Gram is
    prepared once, so m layers cost m Grams plus m² O(n²) products.

    >>> rng = np.random.default_rng(0)
    >>> a = rng.normal(size=(30, 4))
    >>> res = cka_matrix({"a": a, "b": a @ rng.normal(size=(4, 4))})
    >>> res.values.shape, round(float(res.values[0, 0]), 6), bool(res.values[0, 1] == res.values[1, 0])
    ((2, 2), 1.0, True)
    """
    if row_grams is None:
        if not rows:
            raise CKAError("no layers to compare; pass at least one representation.")
        row_grams = {name: gram(x) for name, x in rows.items()}
    if column_grams is None:
        column_grams = row_grams if columns is None else {name: gram(x) for name, x in columns.items()}
    if not row_grams or not column_grams:
        raise CKAError("no layers to compare; pass at least one representation on each side.")
    sizes = {k.shape[0] for k in list(row_grams.values()) + list(column_grams.values())}
    if len(sizes) != 1:
        raise CKAError(f"the layers describe different numbers of images ({sorted(sizes)}); "
                       "compare representations of the same images.")
    n = sizes.pop()
    _check_pair(n, n, debiased)
    same = column_grams is row_grams
    prep_r = {name: _prepared(k, debiased) for name, k in row_grams.items()}
    prep_c = prep_r if same else {name: _prepared(k, debiased) for name, k in column_grams.items()}
    self_r = {name: _hsic(p, p, n, debiased) for name, p in prep_r.items()}
    self_c = self_r if same else {name: _hsic(p, p, n, debiased) for name, p in prep_c.items()}
    rnames, cnames = list(row_grams), list(column_grams)
    values = np.full((len(rnames), len(cnames)), np.nan)
    for i, r in enumerate(rnames):
        for j, c in enumerate(cnames):
            if same and j < i:
                values[i, j] = values[j, i]
                continue
            values[i, j] = _ratio(_hsic(prep_r[r], prep_c[c], n, debiased), self_r[r], self_c[c])
    return CKAResult(tuple(rnames), tuple(cnames), values, debiased, n, features)


class GramAccumulator:
    """The n × n Gram of flattened full maps, filled one block of images against another.

    ``add(rows_a, maps_a, rows_b, maps_b)`` writes ``K[a, b] = A Bᵀ`` (and its transpose). The
    accumulator itself only ever holds the n × n float64 matrix; the blocks are the caller's.

    >>> acc = GramAccumulator(4)
    >>> x = np.arange(8.0).reshape(4, 2)
    >>> acc.add(range(0, 2), x[:2], range(0, 4), x)
    >>> acc.add(range(2, 4), x[2:], range(2, 4), x[2:])
    >>> acc.complete, bool(np.allclose(acc.matrix(), x @ x.T))
    (True, True)
    """

    def __init__(self, n: int):
        self.n = int(n)
        self._k = np.zeros((self.n, self.n), np.float64)
        self._filled = np.zeros((self.n, self.n), bool)

    def add(self, rows_a: Sequence[int], maps_a: np.ndarray, rows_b: Sequence[int], maps_b: np.ndarray) -> None:
        ia, ib = np.asarray(list(rows_a), int), np.asarray(list(rows_b), int)
        a = np.asarray(maps_a, np.float64).reshape(len(ia), -1)
        b = np.asarray(maps_b, np.float64).reshape(len(ib), -1)
        if a.shape[1] != b.shape[1]:
            raise CKAError(f"blocks of one layer must have the same map size; got {a.shape[1]} and {b.shape[1]} values.")
        block = a @ b.T
        self._k[np.ix_(ia, ib)] = block
        self._k[np.ix_(ib, ia)] = block.T
        self._filled[np.ix_(ia, ib)] = True
        self._filled[np.ix_(ib, ia)] = True

    @property
    def complete(self) -> bool:
        return bool(self._filled.all())

    @property
    def nbytes(self) -> int:
        return self._k.nbytes

    def matrix(self) -> np.ndarray:
        if not self.complete:
            raise CKAError("the Gram matrix is not complete: some pairs of image blocks were never added.")
        return self._k


def full_map_grams(
    maps_of: Callable[[Sequence[int]], Mapping[str, np.ndarray]],
    n: int,
    block_size: int,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Gram matrices of full (flattened H·W·C) maps of every layer, n × n each, block by block.

    ``maps_of(indices)`` returns ``{layer: (len(indices), H, W, C)}`` for those images (one
    forward pass). With one block (n ≤ block_size) that is a single pass. Otherwise the block
    pairs are visited row by row: block *i* is kept while blocks *j > i* are recomputed, so at
    most two blocks of maps exist at a time and memory is n × n per layer plus two blocks —
    paid for with (b² + b) / 2 forward passes for b blocks. Choose ``block_size`` from a memory
    budget: the larger it is, the fewer passes.

    >>> data = np.random.default_rng(0).normal(size=(5, 2, 2, 3))
    >>> grams = full_map_grams(lambda idx: {"x": data[list(idx)]}, 5, block_size=2)
    >>> bool(np.allclose(grams["x"], data.reshape(5, -1) @ data.reshape(5, -1).T))
    True
    """
    if n < 1:
        raise CKAError("no images to compare.")
    if block_size < 1:
        raise CKAError(f"block_size must be at least 1; got {block_size}.")
    blocks = [list(range(s, min(n, s + block_size))) for s in range(0, n, block_size)]
    total = len(blocks) * (len(blocks) + 1) // 2
    done = 0
    acc: dict[str, GramAccumulator] = {}
    for i, bi in enumerate(blocks):
        maps_i = maps_of(bi)
        for layer in maps_i:
            acc.setdefault(layer, GramAccumulator(n))
        for j in range(i, len(blocks)):
            bj = blocks[j]
            maps_j = maps_i if j == i else maps_of(bj)
            for layer, a in maps_i.items():
                acc[layer].add(bi, a, bj, maps_j[layer])
            del maps_j
            done += 1
            if progress is not None:
                progress(done, total)
        del maps_i
    return {layer: a.matrix() for layer, a in acc.items()}
