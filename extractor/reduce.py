"""Two-dimensional maps of pooled feature vectors: PCA, t-SNE and (optionally) UMAP.

Input is plain data, an (N, C) array of pooled features for one ``"<layer>/<pooling>"``
configuration; output is an :class:`Embedding` holding finite (N, 2) float32 coordinates
plus the notes a page should show next to the chart ("perplexity lowered from 30 to 3
because there are only 10 images"). Every refusal is a named :class:`EmbeddingError`
with a message meant for the user, so no chart is ever drawn from NaNs.

No TensorFlow here, and scikit-learn is imported inside the functions that need it, so
``import extractor.reduce`` stays fast.

Example:
    >>> X = np.random.default_rng(0).normal(size=(100, 512)).astype("float32")
    >>> emb = embed(X, "pca")
    >>> emb.coords.shape, emb.method, len(emb.explained_variance)
    ((100, 2), 'pca', 2)
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from dataclasses import dataclass

import numpy as np

from extractor.errors import LayerExplorerError, TrainingDataError, check_int
from extractor.feature_health import COLLAPSED_SCALE

__all__ = [
    "EmbeddingError",
    "TooFewImagesError",
    "DegenerateFeaturesError",
    "Embedding",
    "METHODS",
    "check_features",
    "pca_2d",
    "tsne_2d",
    "umap_available",
    "umap_2d",
    "embed",
]

#: Methods :func:`embed` knows, in the order a page should offer them.
METHODS = ("pca", "tsne", "umap")

# t-SNE and UMAP first reduce wide features to this many PCA dimensions: the usual
# practice (van der Maaten's own code does it); it removes noise and makes the
# neighbour search an order of magnitude cheaper on 2048-d vectors.
_PRE_PCA_DIMS = 50
# Lowest perplexity we clamp to: below ~2 every point only "sees" its single nearest
# neighbour and the map falls apart into pairs.
_MIN_PERPLEXITY = 2.0


class EmbeddingError(LayerExplorerError):
    """The features cannot be turned into a 2-D map; the message says why and what to do."""


class TooFewImagesError(EmbeddingError, TrainingDataError):
    """Fewer images than the work needs: a 2-D map needs 3; training needs enough per class.

    The one class for both (it is an :class:`EmbeddingError` and a ``TrainingDataError``).
    """


class DegenerateFeaturesError(EmbeddingError):
    """All vectors identical, no feature columns, or NaN/inf values: the map would be meaningless."""


@dataclass(frozen=True)
class Embedding:
    """A 2-D map of N images.

    Attributes:
        coords: (N, 2) float32, always finite.
        method: ``"pca"``, ``"tsne"`` or ``"umap"``.
        explained_variance: for PCA, the fraction of the total variance each of the two
            axes carries (``(0.41, 0.12)``); ``None`` for t-SNE and UMAP, whose axes mean nothing.
        notes: plain-language remarks about what was adjusted, for display under the chart.
        params: the parameters really used, as ``((name, value), ...)`` — e.g. the perplexity after
            clamping to the number of images, so a map's name never states the requested value.
    """

    coords: np.ndarray
    method: str
    explained_variance: tuple[float, ...] | None = None
    notes: tuple[str, ...] = ()
    params: tuple[tuple[str, float], ...] = ()


def check_features(X, *, min_images: int = 3, purpose: str = "PCA/t-SNE") -> np.ndarray:
    """Validate an (N, C) feature matrix and return it as a C-contiguous float array.

    float32 and float64 are kept as they are; any other dtype (float16, integers) becomes
    float32. Raises :class:`TooFewImagesError` below ``min_images`` rows and
    :class:`DegenerateFeaturesError` for NaN/inf values, zero columns, or when every row
    is the same vector (equivalently: every feature is constant across the images).
    ``purpose`` names what needs the images in the too-few message (scoring passes its own).

    Example:
        >>> check_features(np.eye(3)).shape
        (3, 3)
        >>> check_features(np.ones((4, 8)))
        Traceback (most recent call last):
        ...
        extractor.reduce.DegenerateFeaturesError: All 4 images have the same feature vector ...
    """
    X = np.asarray(X)
    if X.ndim != 2:
        raise EmbeddingError(
            f"Expected pooled features of shape (images, channels), got an array of shape {X.shape}; "
            "pick a pooling (avg, max, gem, ...) so each image gives one vector."
        )
    if not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
        raise EmbeddingError(f"Expected numeric features, got dtype {X.dtype}.")
    n, c = X.shape
    if n < min_images:
        raise TooFewImagesError(
            f"{purpose} need at least {min_images} images; you have {n}. Add images or pick a demo set."
        )
    if c == 0:
        raise DegenerateFeaturesError(
            f"The features have 0 columns for {n} images; pick a layer and pooling that give at least one value."
        )
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float32)
    X = np.ascontiguousarray(X)

    finite_rows = np.isfinite(X).all(axis=1)
    if not finite_rows.all():
        bad = np.flatnonzero(~finite_rows)
        shown = ", ".join(str(i) for i in bad[:5]) + (", ..." if bad.size > 5 else "")
        raise DegenerateFeaturesError(
            f"{bad.size} of {n} images {'has' if bad.size == 1 else 'have'} NaN or infinite feature values (image numbers {shown}). "
            "This usually means float16 overflowed in this layer: switch precision to float32, "
            "or pick another layer."
        )

    # "Identical rows" and "every column constant" are the same condition. The tolerance is
    # relative so that float32 round-off on identical images does not count as variation.
    spread = float(np.ptp(X, axis=0).max())
    scale = float(np.abs(X).max())
    if spread <= 1e-6 * scale or scale == 0.0:
        if scale == 0.0:
            raise DegenerateFeaturesError(
                f"Every feature is zero for all {n} images: this layer/pooling outputs nothing but zeros "
                "(often a ReLU layer with random weights). Pick another layer or pooling."
            )
        if scale < COLLAPSED_SCALE:  # not the images' fault: the network's activations vanished
            raise DegenerateFeaturesError(
                f"The features have collapsed: the largest value is {scale:.1e} and the {n} images give the same "
                "vector, so there is nothing to map. This usually means an untrained network with batch "
                "normalisation, not your images: calibrate its batch-norm statistics on the images, use trained "
                "weights, or pick an earlier layer."
            )
        raise DegenerateFeaturesError(
            f"All {n} images have the same feature vector (each of the {c} features is constant), "
            "so there is nothing to map. Are they copies of one image? Add different images or pick another layer."
        )
    return X


def _pca(X: np.ndarray, n_components: int, seed: int):
    """Fitted scikit-learn PCA: exact SVD when small, randomized (with power iterations) when large.

    Randomized SVD for a few components costs a handful of (N, D) x (D, k) products, which is
    what keeps 2000 x 2048 well under a second; for the top components of real CNN features
    (fast-decaying spectra) it agrees with the exact answer to many digits.
    """
    from sklearn.decomposition import PCA

    n, d = X.shape
    small = max(n, d) <= 500 or n_components >= 0.8 * min(n, d)
    solver = "full" if small else "randomized"
    # More oversampling and power iterations than sklearn's defaults: on the flat spectra of
    # wide pooled features the defaults under-estimate the 2nd component's variance by a few
    # percent; this costs ~0.05 s more on 2000 x 2048.
    return PCA(
        n_components=n_components,
        svd_solver=solver,
        n_oversamples=30,
        iterated_power=10,
        random_state=seed,
    ).fit(X)


def pca_2d(X, *, seed: int = 0) -> Embedding:
    """Project onto the first two principal components (centred, not standardised).

    ``explained_variance`` is the fraction of total variance on each axis. When the images
    vary along only one direction (e.g. two distinct vectors), the second axis is all zeros
    and a note says so.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(500, 3)) * [10.0, 3.0, 1.0]
        >>> [round(v, 2) for v in pca_2d(X).explained_variance]
        [0.91, 0.08]
    """
    X = check_features(X)
    n, d = X.shape
    notes: list[str] = []
    n_comp = min(2, n, d)
    pca = _pca(X, n_comp, seed)
    coords = pca.transform(X)
    ratios = [float(r) for r in pca.explained_variance_ratio_]
    # A component carrying ~no variance is round-off, not a direction: flatten it to zero.
    keep = [r > 1e-9 for r in ratios]
    if len(keep) < 2 or not keep[1]:
        coords = np.column_stack([coords[:, 0], np.zeros(n)])
        ratios = [ratios[0], 0.0]
        notes.append(
            "The images vary along only one direction in this feature space, so the second axis is flat (all zeros)."
        )
    coords = np.ascontiguousarray(coords, dtype=np.float32)
    _check_coords(coords, "PCA")
    return Embedding(coords=coords, method="pca", explained_variance=tuple(ratios), notes=tuple(notes))


def _pre_reduce(X: np.ndarray, seed: int, method_name: str) -> tuple[np.ndarray, list[str]]:
    """PCA to at most 50 dims before t-SNE/UMAP, with the note that says it happened."""
    n, d = X.shape
    if d <= _PRE_PCA_DIMS:
        return X, []
    k = min(_PRE_PCA_DIMS, n)
    reduced = _pca(X, k, seed).transform(X).astype(np.float32)
    return reduced, [f"Reduced {d} feature dimensions to {k} with PCA before {method_name} (faster, and less noise)."]


def tsne_2d(X, *, perplexity: float = 30.0, seed: int = 0, max_iter: int = 1000) -> Embedding:
    """t-SNE map (scikit-learn, Barnes-Hut, ``init="pca"``, ``learning_rate="auto"``).

    Perplexity must stay below the number of images; it is clamped to
    ``min(perplexity, max(2, (N - 1) / 3))`` (the bound scikit-learn's neighbour search
    uses) with a note. Features wider than 50 dims go through PCA to 50 first (note).
    t-SNE has no ``transform``: adding images means running it again.

    Example:
        >>> X = np.random.default_rng(0).normal(size=(10, 64))
        >>> emb = tsne_2d(X, max_iter=250)
        >>> emb.notes[0]
        'Perplexity lowered from 30 to 3 because there are only 10 images.'
    """
    from sklearn.manifold import TSNE

    X = check_features(X)
    n, _ = X.shape
    perplexity = _positive_number(perplexity, "perplexity", "30 is a good start; 5-50 is the usual range")
    check_int(max_iter, "max_iter", 250, error=EmbeddingError, hint="scikit-learn's minimum")

    notes: list[str] = []
    upper = max(_MIN_PERPLEXITY, (n - 1) / 3)
    used = min(perplexity, upper)
    if used < perplexity:
        notes.append(f"Perplexity lowered from {_fmt(perplexity)} to {_fmt(used)} because there are only {n} images.")
    reduced, pre_notes = _pre_reduce(X, seed, "t-SNE")
    notes.extend(pre_notes)
    if reduced.shape[1] < 2:
        # PCA initialisation needs two columns; a zero column adds no distance, changes nothing else.
        reduced = np.column_stack([reduced, np.zeros(n, reduced.dtype)])

    tsne = TSNE(
        n_components=2,
        perplexity=used,
        max_iter=int(max_iter),
        init="pca",
        learning_rate="auto",
        random_state=seed,
    )
    with warnings.catch_warnings():
        # sklearn warns about PCA init on few samples etc.; the note list is where we explain things.
        warnings.simplefilter("ignore", FutureWarning)
        coords = tsne.fit_transform(reduced)
    coords = np.ascontiguousarray(coords, dtype=np.float32)
    _check_coords(coords, "t-SNE")
    return Embedding(coords=coords, method="tsne", explained_variance=None, notes=tuple(notes),
                     params=(("perplexity", float(used)),))


def umap_available() -> bool:
    """Whether the optional ``umap-learn`` package is installed (it is not a requirement)."""
    return importlib.util.find_spec("umap") is not None


def umap_2d(X, *, n_neighbors: int = 15, seed: int = 0) -> Embedding:
    """UMAP map, when ``umap-learn`` is installed; :class:`EmbeddingError` otherwise.

    ``n_neighbors`` is clamped to ``N - 1`` (note); wide features go through PCA to 50 first.

    Example:
        >>> umap_2d(np.random.default_rng(0).normal(size=(50, 8))).coords.shape  # doctest: +SKIP
        (50, 2)
    """
    if not umap_available():
        raise EmbeddingError("UMAP needs the optional package umap-learn: `pip install umap-learn`, or use PCA or t-SNE.")
    X = check_features(X)
    n, _ = X.shape
    check_int(n_neighbors, "n_neighbors", 2, error=EmbeddingError, hint="15 is typical")
    notes: list[str] = []
    used = min(int(n_neighbors), n - 1)
    if used < n_neighbors:
        notes.append(f"n_neighbors lowered from {n_neighbors} to {used} because there are only {n} images.")
    reduced, pre_notes = _pre_reduce(X, seed, "UMAP")
    notes.extend(pre_notes)

    import umap  # optional dependency, imported only here

    # Spectral initialisation needs a connected-enough graph; on tiny sets it fails, random works.
    init = "spectral" if n > 20 else "random"
    model = umap.UMAP(n_components=2, n_neighbors=used, random_state=seed, init=init)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "n_jobs overridden by random_state" and friends
        coords = model.fit_transform(reduced)
    coords = np.ascontiguousarray(coords, dtype=np.float32)
    _check_coords(coords, "UMAP")
    return Embedding(coords=coords, method="umap", explained_variance=None, notes=tuple(notes),
                     params=(("n_neighbors", float(used)),))


def embed(X, method: str = "pca", **kw) -> Embedding:
    """Dispatch to :func:`pca_2d`, :func:`tsne_2d` or :func:`umap_2d` by name.

    Example:
        >>> embed(np.random.default_rng(0).normal(size=(20, 4)), "PCA").method
        'pca'
    """
    name = str(method).strip().lower().replace("-", "")
    funcs = {"pca": pca_2d, "tsne": tsne_2d, "umap": umap_2d}
    if name not in funcs:
        raise EmbeddingError(f"Unknown embedding method {method!r}; choose one of {', '.join(METHODS)}.")
    return funcs[name](X, **kw)


def _check_coords(coords: np.ndarray, what: str) -> None:
    if not np.isfinite(coords).all():
        raise DegenerateFeaturesError(
            f"{what} produced non-finite coordinates for these features; try PCA, another layer, or float32 precision."
        )


def _positive_number(value, name: str, hint: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise EmbeddingError(f"{name} must be a number; got {value!r} ({hint}).") from None
    if not math.isfinite(v) or v <= 0:
        raise EmbeddingError(f"{name} must be a positive number; got {value!r} ({hint}).")
    return v


def _fmt(x: float) -> str:
    """30.0 -> '30', 3.6667 -> '3.7': numbers as a person would write them in a note."""
    return f"{x:.0f}" if float(x).is_integer() else f"{x:.1f}"
