"""Which features a page needs, fetching them in one cached pass, and what is computed from them.

No widgets here. What is cached, and by what:

* :func:`fetch_features` asks :func:`ui.cache.pooled_features` for *every* block-level layer and
  global pooling at once when that fits :data:`FEATURE_BUDGET_BYTES`: one forward pass serves
  every later choice of layer or pooling on all three pages (and the default sweep), so
  switching one never runs the network again.
* :func:`embedding`, :func:`feature_silhouette`, :func:`overlap_table` — ``st.cache_data``
  keyed by a **rows id** (:func:`rows_id`: the backbone configuration and the content digests
  of the images that went through, in order), the feature key and plain parameters. The
  (N, C) features travel in an underscore argument that Streamlit does not hash: the id
  determines them, and hashing megabytes of floats on every rerun would cost more than a PCA.
  Labels are user data, so scores that use them are keyed by a labels id as well.

Example (inside a page)::

    fetch = fetch_features(table, block_layers, ["block4_pool"], ["avg", "max"], images=images, config=config)
    rid = rows_id(config, fetch.features.digests)
    emb = embedding(rid, "block4_pool/avg", "pca", (), fetch.features.features["block4_pool/avg"])
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from extractor import LayerInfo, RawMapsTooLargeError, feature_key, split_key
from extractor.calibration import has_batchnorm
from extractor.errors import LayerExplorerError
from extractor.feature_health import FeatureHealth, check_features
from extractor.pooling import GLOBAL_POOLINGS, pooled_dim
from extractor.reduce import Embedding, embed
from extractor.scoring import nearest_neighbours, overlap_matrix, silhouette

from . import cache, inference_slot, state
from .cache import PooledFeatures
from .config import BackboneConfig
from .image_set import ImageSet

__all__ = [
    "METHOD_NAMES",
    "METHOD_LABELS",
    "MapPlan",
    "plan_maps",
    "PANEL_LIMIT",
    "FEATURE_BUDGET_BYTES",
    "FLATTEN_BUDGET_BYTES",
    "POOLING_CHOICES",
    "POOLING_LABELS",
    "DEFAULT_MAP_POOLINGS",
    "DEFAULT_SWEEP_POOLINGS",
    "COMPUTED_MAPS_KEY",
    "digest_of",
    "rows_id",
    "labels_id",
    "widget_key",
    "default_map_layers",
    "panel_keys",
    "grid_columns",
    "estimate_bytes",
    "feature_requests",
    "FeatureFetch",
    "fetch_features",
    "method_params",
    "embedding",
    "feature_silhouette",
    "overlap_table",
    "neighbour_table",
    "MIN_MAP_IMAGES",
    "too_few_for_maps",
    "computed_label",
    "max_overlap_k",
    "overlap_k_key",
    "has_batchnorm_layers",
    "feature_health",
]


#: Fewest images a 2-D map is drawn from (``extractor.reduce.check_features``' own minimum).
MIN_MAP_IMAGES = 3


#: Most maps the Embeddings page draws at once (layers × poolings).
PANEL_LIMIT = 12


#: Pooled features of every block layer × global pooling are fetched at once when they fit this.
FEATURE_BUDGET_BYTES = 128 * 2**20


#: Most bytes of ``flatten`` vectors a page asks for at once (the core's own cap on raw maps).
FLATTEN_BUDGET_BYTES = 512 * 2**20


#: Poolings the pages offer, in this (canonical) order.
POOLING_CHOICES = ("avg", "max", "gem", "avgmax", "flatten")


POOLING_LABELS = {
    "avg": "avg (global average)",
    "max": "max (global max)",
    "gem": "gem (generalised mean, p = 3)",
    "avgmax": "avgmax (avg ‖ max)",
    "flatten": "flatten (every value)",
}


DEFAULT_MAP_POOLINGS = ("avg", "max")
#: The embedding methods, as a button and a caption name them, and as the method selector labels them.
METHOD_NAMES = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}
METHOD_LABELS = {"pca": "PCA (instant)", "tsne": "t-SNE", "umap": "UMAP"}


DEFAULT_SWEEP_POOLINGS = GLOBAL_POOLINGS


COMPUTED_MAPS_KEY = "emb_computed"  # {(rows_id, key, method, params)} of t-SNE/UMAP maps computed here


def digest_of(*parts: Any) -> str:
    """A short SHA-256 over the ``repr`` of plain values (strings, numbers, tuples).

    Example:
        >>> digest_of("a", (1, 2)) == digest_of("a", (1, 2)) != digest_of("a", (2, 1))
        True
    """
    h = hashlib.sha256()
    for part in parts:
        h.update(repr(part).encode("utf-8", "surrogatepass"))
        h.update(b"\x1f")
    return h.hexdigest()[:32]


def rows_id(config: BackboneConfig, digests: Sequence[str]) -> str:
    """Identity of a feature matrix's rows: the network's plain values and the images, in order."""
    return digest_of("rows", config.name, config.weights, tuple(config.input_size), config.resize,
                     config.precision, tuple(digests))


def labels_id(labels: Sequence[str | None] | None) -> str:
    """Identity of a label list (labels are user data: they key every score that uses them)."""
    return digest_of("labels", None if labels is None else tuple(labels))


def widget_key(*parts: str) -> str:
    """A widget key from parts that may hold any character (layer names can contain "/")."""
    return "__".join("".join(c if c.isalnum() or c in "-_" else "_" for c in str(p)) for p in parts)


def default_map_layers(block_layers: Sequence[str]) -> list[str]:
    """Two or three block outputs spread over depth, always including the last one.

    Example:
        >>> default_map_layers(["b1", "b2", "b3", "b4"])
        ['b2', 'b3', 'b4']
        >>> default_map_layers(["stem"] + [f"b{i}" for i in range(1, 17)])
        ['b5', 'b10', 'b16']
    """
    names = list(block_layers)
    n = len(names)
    if n <= 3:
        return names[-2:] if n == 3 else names
    start = (n - 1) // 3
    picks = sorted({int(round(v)) for v in np.linspace(start, n - 1, 3)})
    return [names[i] for i in picks]


def panel_keys(layers: Sequence[str], poolings: Sequence[str], limit: int = PANEL_LIMIT) -> tuple[list[str], int]:
    """``"layer/pooling"`` keys, layer-major, at most ``limit``; and how many were left out."""
    keys = [feature_key(layer, pooling) for layer in layers for pooling in poolings]
    return keys[:limit], max(0, len(keys) - limit)


@dataclass(frozen=True)
class MapPlan:
    """The maps the Embeddings page draws: their keys, how many were dropped, and what to fetch for them."""

    keys: list[str]
    dropped: int
    layers: list[str]  # the layers of the shown keys, in order
    poolings: list[str]  # the poolings of the shown keys, in order


def plan_maps(layers: Sequence[str], poolings: Sequence[str], limit: int = PANEL_LIMIT) -> MapPlan:
    """At most ``limit`` layer × pooling maps, and the layers and poolings they need.

    Example:
        >>> plan_maps(["b1", "b2"], ["avg", "max"], limit=3)
        MapPlan(keys=['b1/avg', 'b1/max', 'b2/avg'], dropped=1, layers=['b1', 'b2'], poolings=['avg', 'max'])
    """
    keys, dropped = panel_keys(layers, poolings, limit)
    return MapPlan(keys, dropped, list(dict.fromkeys(split_key(k)[0] for k in keys)),
                   list(dict.fromkeys(split_key(k)[1] for k in keys)))


def grid_columns(n_layers: int, n_poolings: int) -> int:
    """Columns of the map grid: one per pooling (so a row is one layer), wrapped at 4."""
    if n_poolings <= 1:
        return max(1, min(3, n_layers))
    return n_poolings if n_poolings <= 4 else 3


def _in_depth_order(table: Sequence[LayerInfo], names) -> tuple[str, ...]:
    wanted = set(names)
    return tuple(info.name for info in table if info.name in wanted)


def _in_pooling_order(poolings) -> tuple[str, ...]:
    wanted = set(poolings)
    return tuple(p for p in POOLING_CHOICES if p in wanted) + tuple(p for p in poolings if p not in POOLING_CHOICES)


def estimate_bytes(table: Sequence[LayerInfo], layers: Sequence[str], poolings: Sequence[str], n_images: int) -> int:
    """Bytes of float32 pooled features for ``layers`` × ``poolings`` over ``n_images`` images."""
    by_name = {info.name: info for info in table}
    per_image = 0
    for name in layers:
        info = by_name.get(name)
        if info is None:
            continue
        for pooling in poolings:
            dim = pooled_dim(info.shape, pooling)
            per_image += (dim or 0) * 4
    return per_image * int(n_images)


def feature_requests(
    table: Sequence[LayerInfo],
    block_layers: Sequence[str],
    layers: Sequence[str],
    poolings: Sequence[str],
    n_images: int,
    budget: int = FEATURE_BUDGET_BYTES,
) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """The ``(layers, poolings)`` calls of :func:`ui.cache.pooled_features` that cover a choice.

    Global poolings of block layers come from one shared call for *all* block layers × all
    global poolings when that fits ``budget`` (then any later choice is a cache hit); otherwise
    from a call for exactly the chosen ones. ``flatten`` always gets a call of its own, for the
    chosen layers only: it is large, and refused by the core when it would not fit in memory.
    Layers and poolings are put in depth / canonical order, so equal choices give equal keys.

    Example:
        >>> feature_requests(table, ["b1", "b2"], ["b2"], ["max", "flatten"], 70)
        [(('b1', 'b2'), ('avg', 'max', 'gem', 'avgmax')), (('b2',), ('flatten',))]
    """
    layers_t = _in_depth_order(table, layers)
    pooled = _in_pooling_order([p for p in poolings if p != "flatten"])
    requests = []
    if pooled and layers_t:
        blocks = _in_depth_order(table, block_layers)
        superset = (blocks, tuple(GLOBAL_POOLINGS))
        covered = set(layers_t) <= set(blocks) and set(pooled) <= set(GLOBAL_POOLINGS)
        if covered and estimate_bytes(table, blocks, GLOBAL_POOLINGS, n_images) <= budget:
            requests.append(superset)
        else:
            requests.append((layers_t, pooled))
    if "flatten" in poolings and layers_t:
        requests.append((layers_t, ("flatten",)))
    return requests


@dataclass
class FeatureFetch:
    """Pooled features for the chosen keys, and the keys that could not be served (with why)."""

    features: PooledFeatures
    keys: list[str]
    skipped: dict[str, str] = field(default_factory=dict)


def fetch_features(
    table: Sequence[LayerInfo],
    block_layers: Sequence[str],
    layers: Sequence[str],
    poolings: Sequence[str],
    *,
    images: ImageSet,
    config: BackboneConfig,
) -> FeatureFetch:
    """Features of ``layers`` × ``poolings`` (in that order) through :func:`ui.cache.pooled_features`.

    Draws nothing but the cache's own progress bar. A ``flatten`` request the core refuses
    as too large (``RawMapsTooLargeError``) is reported in ``skipped`` instead of failing the
    page; other errors propagate (wrap the call in ``state.page_guard``).
    """
    wanted = [feature_key(layer, pooling) for layer in layers for pooling in poolings]
    skipped: dict[str, str] = {}
    parts: list = []
    for req_layers, req_poolings in feature_requests(table, block_layers, layers, poolings, len(images)):
        if req_poolings == ("flatten",):
            # Checked from the layer table before any extractor is built (ui.cache.pooled_features
            # checks the whole set again with the core's own cap).
            need = estimate_bytes(table, req_layers, req_poolings, len(images))
            if need > FLATTEN_BUDGET_BYTES:
                message = (f"flatten for {len(images)} images at {', '.join(req_layers)} would need "
                           f"{need / 2**20:,.0f} MiB, over the {FLATTEN_BUDGET_BYTES / 2**20:,.0f} MiB limit. Use a "
                           "global pooling (avg, max, gem, avgmax), fewer images, or a deeper (smaller) layer.")
                skipped.update({feature_key(layer, "flatten"): message for layer in req_layers})
                continue
        try:
            parts.append(cache.pooled_features(req_layers, req_poolings, images=images, config=config))
        except RawMapsTooLargeError as exc:
            message = state.user_message(exc)
            for layer in req_layers:
                for pooling in req_poolings:
                    skipped[feature_key(layer, pooling)] = message
    if not parts:
        return FeatureFetch(PooledFeatures({}, [], [], [], []), [], skipped)
    base = parts[0]
    common = set(base.indices)
    for part in parts[1:]:
        common &= set(part.indices)
    merged: dict[str, np.ndarray] = {}
    for part in parts:
        rows = [j for j, i in enumerate(part.indices) if i in common]
        whole = len(rows) == len(part.indices)
        for key, arr in part.features.items():
            if key in wanted and key not in merged:
                merged[key] = arr if whole else arr[rows]
    keep = [j for j, i in enumerate(base.indices) if i in common]

    out = PooledFeatures(
        {key: merged[key] for key in wanted if key in merged},
        [base.names[j] for j in keep],
        [base.labels[j] for j in keep],
        [base.digests[j] for j in keep],
        [base.indices[j] for j in keep],
        list(base.failures),
        list(base.notes),
        # Each part is one extractor's, on one engine; parts may differ while a conversion is under way.
        runtime="+".join(sorted({part.runtime for part in parts if part.runtime})),
    )
    return FeatureFetch(out, [key for key in wanted if key in merged], skipped)


def method_params(method: str, *, perplexity: float = 30.0, n_neighbors: int = 15) -> tuple:
    """The parameters of ``method`` as a hashable tuple of ``(name, value)`` pairs (a cache key)."""
    if method == "tsne":
        return (("perplexity", float(perplexity)),)
    if method == "umap":
        return (("n_neighbors", int(n_neighbors)),)
    return ()


@st.cache_data(max_entries=96, max_size="256MB", show_spinner=False)
def embedding(rows: str, key: str, method: str, params: tuple, _X: np.ndarray) -> Embedding:
    """The 2-D map of one configuration (``extractor.reduce.embed``); cached by rows id, key, method, params.

    Raises the core's ``EmbeddingError`` subclasses (too few images, degenerate features).
    """
    with inference_slot.batch_slot(heavy=method != "pca"):  # t-SNE/UMAP: batch lane, clicks first; PCA is instant
        return embed(_X, method, **dict(params))


@st.cache_data(max_entries=96, show_spinner=False)
def feature_silhouette(rows: str, labels: str, key: str, _X: np.ndarray, _labels: Sequence) -> float | None:
    """Cosine silhouette of the label classes in the full feature space (``None`` without usable labels)."""
    try:
        return silhouette(_X, list(_labels))
    except LayerExplorerError:
        return None


@st.cache_data(max_entries=32, show_spinner=False)
def overlap_table(rows: str, keys: tuple[str, ...], k: int, _features: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """:func:`extractor.scoring.overlap_matrix` of ``keys`` (symmetric, diagonal 1)."""
    return overlap_matrix({key: _features[key] for key in keys}, k=int(k))


def neighbour_table(X: np.ndarray, index: int, k: int) -> list[tuple[int, float]]:
    """The ``k`` rows most cosine-similar to row ``index`` (itself excluded): ``[(row, similarity)]``."""

    return nearest_neighbours(X, int(index), k=int(k))


def too_few_for_maps(n_images: int) -> str:
    """The page's one message when there are too few images for any map; ``""`` when there are enough.

    Example:
        >>> too_few_for_maps(2).split(",")[0]
        'A 2-D map needs at least 3 images; there are 2'
        >>> too_few_for_maps(3)
        ''
    """
    if n_images >= MIN_MAP_IMAGES:
        return ""
    have = "there is 1" if n_images == 1 else f"there are {n_images}"
    return (f"A 2-D map needs at least {MIN_MAP_IMAGES} images; {have}, so no map, score or comparison of "
            "maps is drawn. Add images in the sidebar or pick a demo set.")


def computed_label(done: int, failed: int, method_name: str) -> str:
    """The status line after the slow maps ran: what was really computed.

    Example:
        >>> computed_label(5, 1, "t-SNE")
        '5 t-SNE maps computed; 1 could not be (each says why)'
        >>> computed_label(0, 6, "t-SNE")
        'No t-SNE map could be computed (each says why)'
    """
    if not done:
        return f"No {method_name} map could be computed (each says why)"
    text = f"{done} {method_name} map{'' if done == 1 else 's'} computed"
    return text + (f"; {failed} could not be (each says why)" if failed else "")


def max_overlap_k(n_images: int, limit: int = 30) -> int:
    """Largest neighbour count that can tell two maps apart: below the ``n - 1`` other images.

    With k = n - 1 every image's neighbours are all the others, so any two maps "agree" 100 %.

    Example:
        >>> max_overlap_k(70), max_overlap_k(5), max_overlap_k(2)
        (30, 3, 0)
    """
    return max(0, min(int(limit), int(n_images) - 2))


def overlap_k_key(most: int, limit: int = 30) -> str:
    """Widget key of the k slider: its own per range, so a remembered k never lies outside it."""
    return "emb_overlap_k" if most >= limit else widget_key("emb_overlap_k", str(most))


def has_batchnorm_layers(backbone) -> bool:
    """Whether the backbone's network has batch normalisation (names the cause of collapsed features)."""
    return bool(has_batchnorm(backbone.model))


@st.cache_data(max_entries=96, show_spinner=False)
def feature_health(rows: str, key: str, _X: np.ndarray, *, random_weights: bool, batchnorm: bool) -> FeatureHealth:
    """:func:`extractor.feature_health.check_features` of one configuration, cached like :func:`embedding`."""
    return check_features(_X, key, random_weights=random_weights, batchnorm=batchnorm)
