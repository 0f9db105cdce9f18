"""How good is one layer × pooling as a feature vector? Scores, neighbours, and a recommendation.

Everything takes plain data: an (N, C) feature array per ``"<layer>/<pooling>"`` key and,
optionally, one label per image. The metric choices, made once and used everywhere:

* **Cosine geometry.** k-NN accuracy, silhouette, nearest neighbours and neighbour overlap
  all use cosine similarity (L2-normalised vectors), the usual retrieval metric for CNN
  features. It ignores a layer's overall scale, so layers and poolings with very different
  magnitudes (max vs avg) compare fairly, and multiplying features by a constant changes
  nothing.
* **Linear probe** = ``StandardScaler`` + ``LogisticRegression`` (L2, C=1), cross-validated.
* **Cross-validation** = stratified K-fold, shuffled with ``seed``, folds clamped to the
  smallest class size (at least 2).
* **Labels**: ``None`` or ``""`` entries mean "unlabelled"; those images are left out of the
  supervised scores. Supervised scores need at least 2 classes with at least 2 images each;
  otherwise they are ``None`` and :func:`label_problem` says why in plain words.

Example:
    >>> rng = np.random.default_rng(0)
    >>> X = np.vstack([rng.normal(+3, 1, (20, 8)), rng.normal(-3, 1, (20, 8))])
    >>> y = ["cat"] * 20 + ["dog"] * 20
    >>> knn_accuracy(X, y), linear_probe_accuracy(X, y)
    (1.0, 1.0)
    >>> label_problem(["cat", "cat", "dog"])
    "class 'dog' has only 1 image; every class needs at least 2 for cross-validated scores."
"""

from __future__ import annotations

import functools
import math
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from extractor.errors import LayerExplorerError, check_int
from extractor.layers import split_key
from extractor.reduce import DegenerateFeaturesError, check_features

__all__ = [
    "ScoringError",
    "SCORE_COLUMNS",
    "label_problem",
    "silhouette",
    "knn_accuracy",
    "linear_probe_accuracy",
    "nearest_neighbours",
    "neighbour_overlap",
    "overlap_matrix",
    "effective_rank",
    "ConfigScore",
    "score_sweep",
    "Recommendation",
    "recommend",
]

#: Columns of :func:`score_sweep`'s table, in order. Numeric scores are NaN where not computed.
SCORE_COLUMNS = (
    "layer",
    "pooling",
    "dim",
    "knn_acc",
    "linear_acc",
    "silhouette",
    "effective_rank",
    "seconds",
    "ms_per_image",
    "depth",
    "problem",
)

# "Within 1 point" of the best accuracy, for the cheapest-good-enough recommendation.
_TOLERANCE = 0.01
# Silhouette is O(N^2) in memory; above this many labelled images it is estimated on a sample.
_SILHOUETTE_SAMPLE = 4000
# Rows per block when finding neighbours, so N x N similarity never has to exist at once.
_BLOCK = 1024


class ScoringError(LayerExplorerError):
    """Inputs to a score don't fit together (lengths, k, folds, index); the message says how."""


# --------------------------------------------------------------------------- labels


def _clean_labels(labels: Sequence | None, n: int | None = None) -> list[str | None] | None:
    if labels is None:
        return None
    if isinstance(labels, (str, bytes)):
        raise ScoringError("labels must be a list with one label per image, not a single string.")
    out = [None if (lab is None or (isinstance(lab, float) and math.isnan(lab)) or str(lab) == "") else str(lab)
           for lab in labels]
    if n is not None and len(out) != n:
        raise ScoringError(f"Got {len(out)} labels for {n} images; pass exactly one label per image (None for unlabelled).")
    return out


def label_problem(labels: Sequence | None) -> str | None:
    """Why supervised scores (k-NN, linear probe, silhouette) can't be computed, or ``None`` if they can.

    The reason starts in lower case and carries no heading of its own: callers put it after theirs
    ("No accuracy scores: …", "No recommendation: …"), so it never reads "No …: No labels: …".

    Example:
        >>> label_problem(None)
        'the images have no labels; put them in one folder per class (the folder name becomes the label) to get accuracy scores.'
        >>> label_problem(["a", "a", "b", "b"]) is None
        True
    """
    clean = _clean_labels(labels)
    if clean is None:
        return ("the images have no labels; put them in one folder per class (the folder name becomes the label) "
                "to get accuracy scores.")
    present = [lab for lab in clean if lab is not None]
    if not present:
        return "none of the images has a label; label at least 2 classes with at least 2 images each."
    classes, counts = np.unique(np.array(present, dtype=str), return_counts=True)
    if classes.size < 2:
        return f"only one class ({classes[0]!r}); accuracy needs at least 2 classes with at least 2 images each."
    small = [str(c) for c, k in zip(classes, counts, strict=False) if k < 2]
    if small:
        shown = ", ".join(repr(c) for c in small[:3]) + (f" and {len(small) - 3} more" if len(small) > 3 else "")
        verb = "has" if len(small) == 1 else "have"
        return f"class {shown} {verb} only 1 image; every class needs at least 2 for cross-validated scores."
    return None


def _labelled(X, labels):
    """(X of labelled rows as float, integer y, class names), or None when label_problem says so."""
    X = _finite_matrix(X)
    clean = _clean_labels(labels, X.shape[0])
    if label_problem(clean) is not None:
        return None
    keep = np.array([lab is not None for lab in clean])
    classes, y = np.unique(np.array([lab for lab in clean if lab is not None], dtype=str), return_inverse=True)
    return X[keep], y, classes


def _splits(y: np.ndarray, folds: int, seed: int):
    from sklearn.model_selection import StratifiedKFold

    smallest = int(np.bincount(y).min())
    n_splits = max(2, min(int(folds), smallest))
    return list(StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))


# --------------------------------------------------------------------------- helpers


def _finite_matrix(X, *, min_rows: int = 1) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2 or not np.issubdtype(X.dtype, np.number):
        raise ScoringError(f"Expected a numeric (images, channels) array, got shape {X.shape} and dtype {X.dtype}.")
    if X.shape[0] < min_rows:
        raise ScoringError(f"Need at least {min_rows} images here; got {X.shape[0]}.")
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float32)
    if not np.isfinite(X).all():
        raise DegenerateFeaturesError(
            "Some feature values are NaN or infinite (often float16 overflow); switch precision to float32 "
            "or pick another layer."
        )
    return np.ascontiguousarray(X)


def _unit_rows(X: np.ndarray) -> np.ndarray:
    """L2-normalised rows; an all-zero row stays zero (cosine similarity 0 to everything)."""
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms > 0, norms, 1.0)


# --------------------------------------------------------------------------- threads

_local = threading.local()


def _single_threaded(func):
    """Run ``func`` with one BLAS/OpenMP thread.

    The scores are many small dense problems (Gram matrices of a few hundred rows, L-BFGS on
    n_train x n_train). On a busy 2-core machine, two BLAS threads spin-wait on each other:
    measured 10-100x slower than one thread (silhouette 0.011 s vs 0.2-0.5 s, a linear probe
    0.2 s vs up to 1.9 s, on 600 x 2048). Large products lose at most 2x. threadpoolctl's
    limit is process-wide, so another thread's BLAS runs single-threaded meanwhile; that is
    harmless here. Nested calls (score_sweep -> knn_accuracy) set the limit only once,
    because setting it costs ~20 ms.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        if getattr(_local, "limited", False):
            return func(*args, **kwargs)
        from threadpoolctl import threadpool_limits

        _local.limited = True
        try:
            with threadpool_limits(limits=1):
                return func(*args, **kwargs)
        finally:
            _local.limited = False

    return wrapper


# --------------------------------------------------------------------------- supervised scores


@_single_threaded
def silhouette(X, labels, *, seed: int = 0) -> float | None:
    """Mean silhouette of the label classes under cosine distance, in [-1, 1]; ``None`` if labels don't allow it.

    High (→ 1) when images of a class sit close together and far from other classes.
    Above 4000 labelled images it is estimated on a random sample of 4000 (``seed``).

    Example:
        >>> silhouette(np.array([[1, 0], [1, .1], [0, 1], [.1, 1]]), ["a", "a", "b", "b"]) > 0.8
        True
    """
    from sklearn.metrics import silhouette_score

    prep = _labelled(X, labels)
    if prep is None:
        return None
    Xl, y, _ = prep
    sample = _SILHOUETTE_SAMPLE if len(y) > _SILHOUETTE_SAMPLE else None
    value = float(silhouette_score(Xl, y, metric="cosine", sample_size=sample, random_state=seed))
    return value if math.isfinite(value) else None


@_single_threaded
def knn_accuracy(X, labels, *, k: int = 5, folds: int = 5, seed: int = 0) -> float | None:
    """Cross-validated k-nearest-neighbour accuracy with cosine similarity; ``None`` if labels don't allow it.

    Each held-out image takes the majority label of its ``k`` most similar training images
    (ties go to the class whose neighbours are more similar). ``k`` is clamped to the
    training-fold size. Returns the fraction of images classified correctly over all folds.

    Example:
        >>> X = np.r_[np.eye(3)[[0] * 4], np.eye(3)[[1] * 4]] + 0.01
        >>> knn_accuracy(X, list("aaaabbbb"), k=3)
        1.0
    """
    k = check_int(k, "k", 1, error=ScoringError)
    folds = check_int(folds, "folds", 2, error=ScoringError)
    prep = _labelled(X, labels)
    if prep is None:
        return None
    Xl, y, classes = prep
    U = _unit_rows(Xl)
    S = U @ U.T  # all pairwise cosine similarities once; each fold only indexes into it
    correct = 0
    for train, test in _splits(y, folds, seed):
        kk = min(k, len(train))
        sims = S[np.ix_(test, train)]
        idx = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
        nb_y = y[train][idx]
        nb_s = np.take_along_axis(sims, idx, axis=1)
        rows = np.repeat(np.arange(len(test)), kk)
        votes = np.zeros((len(test), classes.size))
        np.add.at(votes, (rows, nb_y.ravel()), 1.0)
        # Similarity sums lie in [-kk, kk]; scaled by 1/(2kk+1) they can break a tie in the
        # vote count but never overturn a difference of one vote.
        sim_sum = np.zeros_like(votes)
        np.add.at(sim_sum, (rows, nb_y.ravel()), nb_s.ravel())
        pred = np.argmax(votes + sim_sum / (2 * kk + 1), axis=1)
        correct += int((pred == y[test]).sum())
    return correct / len(y)


def _train_span(Ztr: np.ndarray, Zte: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates of train and test rows in the span of the (standardised) training rows.

    With more features than training images, an L2-regularised linear model's weights lie in
    the span of the training rows (representer theorem), so fitting on these n_train
    coordinates gives the same predictions as fitting on all D features, at a fraction of
    the cost: one n_train x n_train Gram matrix instead of hundreds of D-wide L-BFGS steps.
    """
    G = (Ztr @ Ztr.T).astype(np.float64)
    w, V = np.linalg.eigh(G)
    keep = w > max(w.max(), 0.0) * 1e-6  # drop round-off directions (float32 Gram)
    w, V = w[keep], V[:, keep]
    root = np.sqrt(w)
    Ptr = V * root                                     # = Ztr @ basis, basis = Ztr.T V / sqrt(w)
    Pte = ((Zte @ Ztr.T).astype(np.float64) @ V) / root
    return Ptr, Pte


@_single_threaded
def linear_probe_accuracy(X, labels, *, folds: int = 5, seed: int = 0, max_iter: int = 1000) -> float | None:
    """Cross-validated accuracy of ``StandardScaler`` + ``LogisticRegression`` (L2, C=1); ``None`` if labels don't allow it.

    The scaler is fitted on each training fold only. When features are wider than the
    training fold, the fit happens in the span of the training rows, which is exact for
    L2-regularised logistic regression and keeps 25k-dim flatten features fast.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(40, 300)); X[:20, :10] += 2
        >>> linear_probe_accuracy(X, ["a"] * 20 + ["b"] * 20) >= 0.9
        True
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    folds = check_int(folds, "folds", 2, error=ScoringError)
    max_iter = check_int(max_iter, "max_iter", 1, error=ScoringError)
    prep = _labelled(X, labels)
    if prep is None:
        return None
    Xl, y, _ = prep
    correct = 0
    for train, test in _splits(y, folds, seed):
        scaler = StandardScaler().fit(Xl[train])
        Ztr, Zte = scaler.transform(Xl[train]), scaler.transform(Xl[test])
        if Ztr.shape[1] > Ztr.shape[0]:
            Ztr, Zte = _train_span(Ztr, Zte)
        clf = LogisticRegression(max_iter=max_iter)
        with warnings.catch_warnings():
            # Separable classes make L-BFGS creep towards large weights; the accuracy is what
            # we report and it has long settled by then.
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(Ztr, y[train])
        correct += int((clf.predict(Zte) == y[test]).sum())
    return correct / len(y)


# --------------------------------------------------------------------------- neighbours


def _top_k(X: np.ndarray, k: int) -> np.ndarray:
    """(N, k) indices of each row's k most cosine-similar other rows, most similar first."""
    U = _unit_rows(X)
    n = U.shape[0]
    out = np.empty((n, k), dtype=np.intp)
    for start in range(0, n, _BLOCK):
        stop = min(start + _BLOCK, n)
        sims = U[start:stop] @ U.T
        sims[np.arange(stop - start), np.arange(start, stop)] = -np.inf  # never your own neighbour
        idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, idx, axis=1), axis=1, kind="stable")
        out[start:stop] = np.take_along_axis(idx, order, axis=1)
    return out


def nearest_neighbours(X, index: int, k: int = 5) -> list[tuple[int, float]]:
    """The ``k`` images most cosine-similar to image ``index`` (itself excluded), most similar first.

    ``k`` is clamped to N - 1. Returns ``[(image_index, cosine_similarity), ...]``.

    Example:
        >>> nearest_neighbours(np.array([[1, 0], [1, 0.1], [0, 1]]), 0, k=2)
        [(1, 0.995...), (2, 0.0)]
    """
    X = _finite_matrix(X, min_rows=2)
    n = X.shape[0]
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not -n <= index < n:
        raise ScoringError(f"Image index {index!r} is out of range for {n} images (0 to {n - 1}).")
    index = int(index) % n
    k = min(check_int(k, "k", 1, error=ScoringError), n - 1)
    U = _unit_rows(X)
    sims = (U @ U[index]).astype(np.float64)
    sims[index] = -np.inf
    order = np.argsort(-sims, kind="stable")[:k]  # stable: equal similarities keep image order
    return [(int(i), float(sims[i])) for i in order]


def _overlap_from_indices(a: np.ndarray, b: np.ndarray) -> float:
    # Each row of a (and of b) holds distinct indices, so after sorting the concatenation
    # every adjacent equal pair is one shared neighbour.
    both = np.sort(np.concatenate([a, b], axis=1), axis=1)
    shared = (both[:, 1:] == both[:, :-1]).sum(axis=1)
    return float(shared.mean() / a.shape[1])


@_single_threaded
def neighbour_overlap(A, B, *, k: int = 10) -> float:
    """How much two feature spaces agree on who is similar to whom, in [0, 1].

    Mean over images of |kNN_A(i) ∩ kNN_B(i)| / k with cosine similarity; ``k`` is clamped
    to N - 1. 1 means identical neighbourhoods; two unrelated spaces give about k / (N - 1).

    Example:
        >>> X = np.random.default_rng(0).normal(size=(50, 16))
        >>> neighbour_overlap(X, 3 * X)
        1.0
    """
    A = _finite_matrix(A, min_rows=2)
    B = _finite_matrix(B, min_rows=2)
    if A.shape[0] != B.shape[0]:
        raise ScoringError(f"Both feature sets must describe the same images; got {A.shape[0]} and {B.shape[0]} rows.")
    k = min(check_int(k, "k", 1, error=ScoringError), A.shape[0] - 1)
    return _overlap_from_indices(_top_k(A, k), _top_k(B, k))


@_single_threaded
def overlap_matrix(features: Mapping[str, np.ndarray], *, k: int = 10) -> pd.DataFrame:
    """Pairwise :func:`neighbour_overlap` between all configurations, as a symmetric DataFrame.

    Index and columns are the feature keys in the given order; the diagonal is 1.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> m = overlap_matrix({"a/avg": rng.normal(size=(30, 4)), "b/avg": rng.normal(size=(30, 8))}, k=5)
        >>> float(m.loc["a/avg", "a/avg"]), m.shape
        (1.0, (2, 2))
    """
    keys = list(features)
    if not keys:
        raise ScoringError("No feature configurations to compare; extract at least one layer first.")
    mats = {key: _finite_matrix(features[key], min_rows=2) for key in keys}
    sizes = {m.shape[0] for m in mats.values()}
    if len(sizes) > 1:
        raise ScoringError(f"All configurations must describe the same images; got row counts {sorted(sizes)}.")
    n = sizes.pop()
    k = min(check_int(k, "k", 1, error=ScoringError), n - 1)
    nbrs = {key: _top_k(m, k) for key, m in mats.items()}
    out = np.eye(len(keys))
    for i, a in enumerate(keys):
        for j in range(i + 1, len(keys)):
            out[i, j] = out[j, i] = _overlap_from_indices(nbrs[a], nbrs[keys[j]])
    return pd.DataFrame(out, index=keys, columns=keys)


# --------------------------------------------------------------------------- unsupervised


@_single_threaded
def effective_rank(X) -> float | None:
    """Participation ratio of the PCA spectrum, (Σλ)² / Σλ²: roughly how many directions carry variance.

    1 when all variance lies along one direction; up to min(N - 1, C) when it is spread
    evenly. Computed from a Gram matrix (no eigen-decomposition), so it is cheap even for
    wide features. ``None`` when the features don't vary at all.

    Example:
        >>> X = np.random.default_rng(0).normal(size=(2000, 4))
        >>> round(effective_rank(X))
        4
    """
    X = _finite_matrix(X, min_rows=1)
    Xc = X - X.mean(axis=0, dtype=np.float64).astype(X.dtype)
    G = Xc @ Xc.T if Xc.shape[0] <= Xc.shape[1] else Xc.T @ Xc
    G = G.astype(np.float64)
    total = float(np.trace(G))
    squares = float((G * G).sum())
    if total <= 0 or squares <= 0:
        return None
    return total * total / squares


# --------------------------------------------------------------------------- the sweep


@dataclass
class ConfigScore:
    """One row of the layer × pooling sweep (scores are ``None`` where not computed).

    ``knn``, ``linear`` and ``silhouette`` are the supervised scores (fractions in [0, 1],
    silhouette in [-1, 1]); ``effective_rank`` is unsupervised; ``seconds`` is the
    extraction time per image passed in (the row also gives it as ``ms_per_image``); ``depth``
    orders layers input → output; ``problem`` says why this configuration could not be scored
    (e.g. NaN features).
    """

    layer: str
    pooling: str
    dim: int
    knn: float | None
    linear: float | None
    silhouette: float | None
    seconds: float | None
    depth: int
    effective_rank: float | None = None
    problem: str | None = None

    def as_row(self) -> dict:
        """The row as :data:`SCORE_COLUMNS` names it (``knn`` → ``knn_acc``, ``linear`` → ``linear_acc``)."""
        d = asdict(self)
        d["knn_acc"] = d.pop("knn")
        d["linear_acc"] = d.pop("linear")
        d["ms_per_image"] = None if self.seconds is None else self.seconds * 1000.0
        return {c: d[c] for c in SCORE_COLUMNS}


@_single_threaded
def score_sweep(
    features: Mapping[str, np.ndarray],
    labels: Sequence[str | None] | None,
    *,
    depths: Mapping[str, int] | None = None,
    costs_ms: Mapping[str, float] | None = None,
    k: int = 5,
    folds: int = 5,
    seed: int = 0,
    progress: Callable[[int, int, str], None] | None = None,
) -> pd.DataFrame:
    """Score every ``"<layer>/<pooling>"`` configuration; one row each, columns :data:`SCORE_COLUMNS`.

    The one scoring step of a sweep (the command line's and the Layer-selection page's).

    * ``knn_acc``, ``linear_acc``, ``silhouette``: supervised, NaN when ``labels`` is None, holds
      no label at all, or can't support them (``table.attrs["label_problem"]`` says why).
    * ``effective_rank``: always computed (see :func:`effective_rank`).
    * ``ms_per_image`` (and ``seconds``, the same time in seconds): looked up in ``costs_ms``
      (milliseconds per image, e.g. :func:`extractor.sweep.layer_costs`) by key, then by layer
      name; NaN if absent.
    * ``depth``: ``depths[layer]``, else the order in which layers first appear in ``features``.
    * ``problem``: why a configuration got no scores (NaN features, all vectors identical), else None.
      One bad configuration never stops the sweep.

    ``progress(done, total, key)`` is called after each configuration (e.g. to move a progress bar).
    ``table.attrs`` also holds ``n_images``, ``n_labelled`` and ``n_classes`` for :func:`recommend`.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> feats = {"b1/avg": rng.normal(size=(30, 8)), "b2/max": rng.normal(size=(30, 16))}
        >>> t = score_sweep(feats, ["a", "b", "c"] * 10, costs_ms={"b1": 0.5})
        >>> list(t["dim"]), t.attrs["n_classes"], t["ms_per_image"].tolist()
        ([8, 16], 3, [0.5, nan])
    """
    keys = list(features)
    if not keys:
        raise ScoringError("No feature configurations to score; extract at least one layer and pooling first.")
    shapes = {key: np.shape(features[key]) for key in keys}
    sizes = {s[0] if len(s) else 0 for s in shapes.values()}
    if len(sizes) > 1:
        raise ScoringError(f"All configurations must describe the same images; got row counts {sorted(sizes)}.")
    n = sizes.pop()
    clean = _clean_labels(labels, n)
    if clean is not None and all(lab is None for lab in clean):
        clean = None  # no label at all: say "the images have no labels" (and how to give them some)
    why_not = label_problem(clean)
    k = check_int(k, "k", 1, error=ScoringError)
    folds = check_int(folds, "folds", 2, error=ScoringError)

    given_depths, depths = depths, {}
    for key in keys:
        depths.setdefault(split_key(key)[0], len(depths))
    if given_depths:
        depths.update({str(name): int(d) for name, d in given_depths.items()})

    rows = []
    for done, key in enumerate(keys, start=1):
        layer, pooling = split_key(key)
        shape = shapes[key]
        dim = int(np.prod(shape[1:])) if len(shape) > 1 else 0
        ms = (costs_ms or {}).get(key, (costs_ms or {}).get(layer))
        row = ConfigScore(layer=layer, pooling=pooling, dim=dim, knn=None, linear=None, silhouette=None,
                          seconds=None if ms is None else float(ms) / 1000.0, depth=depths.get(layer, len(depths)))
        try:
            X = check_features(features[key], min_images=2, purpose="Scores")
            row.effective_rank = effective_rank(X)
            if why_not is None:
                row.knn = knn_accuracy(X, clean, k=k, folds=folds, seed=seed)
                row.linear = linear_probe_accuracy(X, clean, folds=folds, seed=seed)
                row.silhouette = silhouette(X, clean, seed=seed)
        except LayerExplorerError as exc:
            row.problem = str(exc)
        rows.append(row.as_row())
        if progress is not None:
            progress(done, len(keys), key)

    table = pd.DataFrame(rows, columns=list(SCORE_COLUMNS))
    for col in ("knn_acc", "linear_acc", "silhouette", "effective_rank", "seconds", "ms_per_image"):
        table[col] = pd.to_numeric(table[col], errors="coerce").astype(float)
    table["dim"] = table["dim"].astype(int)
    table["depth"] = table["depth"].astype(int)
    labelled = [lab for lab in (clean or []) if lab is not None]
    table.attrs.update(
        n_images=int(n),
        n_labelled=len(labelled),
        n_classes=len(set(labelled)),
        label_problem=why_not,
    )
    return table


# --------------------------------------------------------------------------- recommendation


@dataclass(frozen=True)
class Recommendation:
    """The best configuration, the cheapest one within 1 point of it, and why.

    ``metric`` is the column the choice was made on: ``"linear_acc"``, or ``"knn_acc"``
    when no linear-probe scores exist. ``dim`` is the best configuration's vector length.
    """

    layer: str
    pooling: str
    score: float
    metric: str
    cheapest_layer: str
    cheapest_pooling: str
    cheapest_dim: int
    cheapest_score: float
    reason: str
    dim: int | None = None


_METRIC_NAMES = {"linear_acc": "linear-probe accuracy", "knn_acc": "k-NN accuracy"}


def recommend(table: pd.DataFrame) -> Recommendation | None:
    """Pick the most accurate configuration and the smallest one within 1 point (0.01) of it.

    Best = highest linear-probe accuracy, ties broken by k-NN accuracy, then smaller
    dimension, then shallower layer (k-NN accuracy is used alone when there is no linear
    probe). Cheapest = among configurations scoring at least best − 0.01, the smallest
    dimension, then the fastest, then the higher score. Returns ``None`` when the table
    has no accuracy scores (no labels); the caller should say so
    (``table.attrs["label_problem"]``).

    Example:
        >>> t = pd.DataFrame({"layer": ["b3", "b5"], "pooling": ["avg", "avg"], "dim": [256, 512],
        ...                   "knn_acc": [.90, .93], "linear_acc": [.945, .95], "seconds": [1.0, 2.0], "depth": [3, 5]})
        >>> r = recommend(t)
        >>> (r.layer, r.cheapest_layer)
        ('b5', 'b3')
    """
    if table is None or len(table) == 0:
        return None
    metric = None
    for col in ("linear_acc", "knn_acc"):
        if col in table.columns and pd.to_numeric(table[col], errors="coerce").notna().any():
            metric = col
            break
    if metric is None:
        return None
    other = "knn_acc" if metric == "linear_acc" else None

    t = table.reset_index(drop=True)
    t["_score"] = pd.to_numeric(t[metric], errors="coerce")
    t = t[t["_score"].notna()]
    t["_other"] = pd.to_numeric(t[other], errors="coerce").fillna(-np.inf) if other and other in t else -np.inf
    t["_dim"] = pd.to_numeric(t["dim"], errors="coerce").fillna(np.inf) if "dim" in t else np.inf
    t["_depth"] = pd.to_numeric(t["depth"], errors="coerce").fillna(np.inf) if "depth" in t else np.inf
    t["_secs"] = pd.to_numeric(t["seconds"], errors="coerce").fillna(np.inf) if "seconds" in t else np.inf

    best = t.sort_values(["_score", "_other", "_dim", "_depth"], ascending=[False, False, True, True],
                         kind="stable").iloc[0]
    near = t[t["_score"] >= best["_score"] - _TOLERANCE - 1e-12]
    cheap = near.sort_values(["_dim", "_secs", "_score", "_depth"], ascending=[True, True, False, True],
                             kind="stable").iloc[0]

    reason = _reason(t, best, cheap, metric, other, {**table.attrs, "n_swept": len(table)})
    return Recommendation(
        layer=str(best["layer"]),
        pooling=str(best["pooling"]),
        score=float(best["_score"]),
        metric=metric,
        cheapest_layer=str(cheap["layer"]),
        cheapest_pooling=str(cheap["pooling"]),
        cheapest_dim=int(cheap["dim"]) if math.isfinite(cheap["_dim"]) else 0,
        cheapest_score=float(cheap["_score"]),
        reason=reason,
        dim=int(best["dim"]) if math.isfinite(best["_dim"]) else None,
    )


def _duration(seconds: float) -> str:
    """Per-image extraction times are milliseconds; whole sweeps are seconds."""
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.1f} s"


def _name(row) -> str:
    return f"{row['layer']} with {row['pooling']} pooling" if row["pooling"] else str(row["layer"])


def _reason(t: pd.DataFrame, best, cheap, metric: str, other: str | None, attrs: Mapping) -> str:
    what = _METRIC_NAMES[metric]
    parts = []
    extra = f" (k-NN {best['_other']:.1%})" if other and math.isfinite(best["_other"]) else ""
    dims = f" from {int(best['_dim'])}-dimensional vectors" if math.isfinite(best["_dim"]) else ""
    # t holds only the configurations with a score; say so when others were swept but could not compete.
    scope = f"the highest of {len(t)} configurations"
    if attrs.get("n_swept", len(t)) > len(t):
        scope = f"the highest of {len(t)} scored configurations ({attrs['n_swept']} swept)"
    n_lab, n_cls = attrs.get("n_labelled"), attrs.get("n_classes")
    if n_lab and n_cls:
        scope += f" on {n_lab} labelled images in {n_cls} classes"
    parts.append(f"{_name(best)} scores {best['_score']:.1%} {what}{extra}{dims}, {scope}.")
    if metric == "knn_acc":
        parts.append("(No linear-probe scores were available, so k-NN accuracy decided.)")

    if cheap.name == best.name:
        parts.append("No smaller configuration comes within 1 point of it, so it is also the cheapest good choice.")
    else:
        gap = (best["_score"] - cheap["_score"]) * 100
        lower = "with the same score" if gap <= 0 else (
            "less than 0.1 points lower" if gap < 0.05 else f"only {gap:.1f} points lower")
        if cheap["_dim"] < best["_dim"]:
            ratio = best["_dim"] / cheap["_dim"] if cheap["_dim"] > 0 else float("inf")
            size = f"with {int(cheap['_dim'])} dimensions ({ratio:.1f}× smaller)"
        else:
            size = "with vectors of the same size"
            if math.isfinite(cheap["_secs"]) and math.isfinite(best["_secs"]):
                size += f", extracted faster ({_duration(cheap['_secs'])} vs {_duration(best['_secs'])})"
        parts.append(
            f"For a cheaper vector, {_name(cheap)} gets {cheap['_score']:.1%} {size}, "
            f"{lower}."
        )
    if n_lab and n_lab < 100:
        parts.append(f"With {n_lab} labelled images one image is worth {100 / n_lab:.1f} points, "
                     "so differences of a point or two are within noise.")
    return " ".join(parts)
