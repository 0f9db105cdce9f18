"""The computations and chart/data builders behind the Embeddings, Layer-selection and Export pages.

No widgets here: pages draw the widgets and call these. What is cached, and by what:

* :func:`embedding`, :func:`feature_silhouette`, :func:`overlap_table` — ``st.cache_data``
  keyed by a **rows id** (:func:`rows_id`: the backbone configuration and the content digests
  of the images that went through, in order), the feature key and plain parameters. The
  (N, C) features travel in an underscore argument that Streamlit does not hash: the id
  determines them, and hashing megabytes of floats on every rerun would cost more than a PCA.
  Labels are user data, so scores that use them are keyed by a labels id as well.
* :func:`thumbnail_urls` — small data-URL thumbnails for chart tooltips, keyed by image digests.
* :func:`layer_costs_cached` — milliseconds per image per layer, keyed by the backbone configuration.
* The export builders (:func:`npz_bytes`, ...) — keyed by an export id that covers the rows,
  the feature keys, and the names and labels that go into the file. A cached file holds the
  names it was asked to write; only a caller that passes exactly those names (and the same
  image contents and settings) can get it back, so it tells nobody anything new.

Features for a page come from :func:`fetch_features`, which asks :func:`ui.cache.pooled_features`
for *every* block-level layer and global pooling at once when that fits
:data:`FEATURE_BUDGET_BYTES`: one forward pass serves every later choice of layer or pooling on
all three pages (and the default sweep), so switching one never runs the network again.

Example (inside a page)::

    fetch = fetch_features(table, block_layers, ["block4_pool"], ["avg", "max"])
    rid = rows_id(config, fetch.features.digests)
    emb = embedding(rid, "block4_pool/avg", "pca", (), fetch.features.features["block4_pool/avg"])
    st.altair_chart(scatter_chart(map_frame(emb.coords, names, labels, urls), ...))
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from extractor import BACKBONES, LayerInfo, RawMapsTooLargeError, feature_key
from extractor.errors import LayerExplorerError
from extractor.export import (
    ExportError,
    coords_to_csv,
    features_to_csv,
    features_to_npz,
    features_to_parquet,
    projector_bundle,
    reproduce_config,
    reproduce_script,
)
from extractor.pooling import GLOBAL_POOLINGS, pooled_dim
from extractor.reduce import Embedding, embed
from extractor.scoring import Recommendation, nearest_neighbours, overlap_matrix, silhouette
from extractor.sweep import layer_costs, score_sweep  # score_sweep: the Layer-selection page scores through it

from . import cache, state
from .cache import PooledFeatures
from .config import BackboneConfig
from .image_set import ImageSet
from .inference_slot import inference_slot

__all__ = [
    "PANEL_LIMIT",
    "THUMB_PX",
    "TOOLTIP_BUDGET_BYTES",
    "FEATURE_BUDGET_BYTES",
    "FLATTEN_BUDGET_BYTES",
    "POOLING_CHOICES",
    "POOLING_LABELS",
    "DEFAULT_MAP_POOLINGS",
    "DEFAULT_SWEEP_POOLINGS",
    "METRICS",
    "PRIMARY",
    "EXPORT_CHOICE_KEY",
    "SWEEP_RESULT_KEY",
    "COMPUTED_MAPS_KEY",
    "FILE_NAMES",
    "digest_of",
    "rows_id",
    "labels_id",
    "remember",
    "widget_key",
    "default_map_layers",
    "panel_keys",
    "grid_columns",
    "estimate_bytes",
    "feature_requests",
    "FeatureFetch",
    "fetch_features",
    "thumbnail_data_url",
    "thumbnail_urls",
    "tooltip_thumbnails",
    "tooltip_images_fit",
    "embedding",
    "method_params",
    "feature_silhouette",
    "overlap_table",
    "variance_text",
    "map_frame",
    "scatter_chart",
    "legend_chart",
    "selected_indices",
    "overlap_long",
    "overlap_chart",
    "short_name",
    "neighbour_table",
    "layer_costs_cached",
    "SweepResult",
    "score_sweep",
    "sweep_signature",
    "metric_options",
    "metric_heatmap",
    "depth_curve",
    "display_table",
    "size_text",
    "recommendation_markdown",
    "export_defaults",
    "export_id",
    "npz_bytes",
    "parquet_bytes",
    "csv_bytes_or_message",
    "coords_csv_bytes",
    "projector_bytes",
    "reproduce_files",
]

# --------------------------------------------------------------------------------------------
# constants

#: Most maps the Embeddings page draws at once (layers × poolings).
PANEL_LIMIT = 12
#: Tooltip thumbnails: longest side in pixels (small: every point carries one in the chart data).
THUMB_PX = 48
#: Above this many bytes of tooltip thumbnails per page, tooltips show names only.
TOOLTIP_BUDGET_BYTES = 8_000_000
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
DEFAULT_SWEEP_POOLINGS = GLOBAL_POOLINGS
#: The theme's primary colour (points without labels).
PRIMARY = "#2f6fdf"
#: Session keys shared between pages.
EXPORT_CHOICE_KEY = "export_choice"  # {"layers": [...], "poolings": [...]} set by Layer selection
SWEEP_RESULT_KEY = "ls_result"  # the last SweepResult of this session
COMPUTED_MAPS_KEY = "emb_computed"  # {(rows_id, key, method, params)} of t-SNE/UMAP maps computed here
#: Download names: fixed strings, never built from user input.
FILE_NAMES = {
    "npz": "layer_explorer_features.npz",
    "parquet": "layer_explorer_features.parquet",
    "csv": "layer_explorer_features.csv",
    "coords": "layer_explorer_maps.csv",
    "projector": "layer_explorer_projector.zip",
    "config": "layer_explorer_config.json",
    "script": "extract_features.py",
}

#: Scores the Layer-selection page can show: column -> (label, Vega format, domain or None).
METRICS = {
    "linear_acc": ("Linear-probe accuracy", ".0%", (0.0, 1.0)),
    "knn_acc": ("k-NN accuracy", ".0%", (0.0, 1.0)),
    "silhouette": ("Silhouette (cosine)", ".2f", (-1.0, 1.0)),
    "effective_rank": ("Effective rank", ".1f", None),
    "dim": ("Dimensions", ",d", None),
    "ms_per_image": ("ms per image", ".2f", None),
}


# --------------------------------------------------------------------------------------------
# identities and remembered choices


# Charts fill their column's width; ``height`` is the plot's own height, and the element grows for
# axes and legends (Streamlit's default, "fit", squeezes the plot into ``height`` instead).
_FIT_X = alt.AutoSizeParams(type="fit-x", contains="padding")


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


def remember(key: str, value: Sequence) -> None:
    """Set a widget's remembered choice (the memo ``ui.state.persistent`` reads), e.g. from a recommendation."""
    st.session_state[f"_choice__{key}"] = list(value)


def widget_key(*parts: str) -> str:
    """A widget key from parts that may hold any character (layer names can contain "/")."""
    return "__".join("".join(c if c.isalnum() or c in "-_" else "_" for c in str(p)) for p in parts)


# --------------------------------------------------------------------------------------------
# which layers, which panels, which features


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
    )
    return FeatureFetch(out, [key for key in wanted if key in merged], skipped)


# --------------------------------------------------------------------------------------------
# thumbnails for tooltips


def thumbnail_data_url(pixels: np.ndarray, size: int = THUMB_PX) -> str:
    """A ``data:image/...;base64,`` URL of the image shrunk to ``size`` px on its longest side.

    PNG when that is small (flat drawings), JPEG otherwise (photos): a few kB at most.

    Example:
        >>> thumbnail_data_url(np.zeros((64, 64, 3), np.uint8)).startswith("data:image/png;base64,")
        True
    """
    im = Image.fromarray(np.ascontiguousarray(np.asarray(pixels, dtype=np.uint8)))
    if im.mode != "RGB":
        im = im.convert("RGB")
    im.thumbnail((size, size), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    mime, data = "image/png", buf.getvalue()
    if len(data) > 2500:
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=80)
        if len(buf.getvalue()) < len(data):
            mime, data = "image/jpeg", buf.getvalue()
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


@st.cache_data(max_entries=16, max_size="64MB", show_spinner=False)
def thumbnail_urls(digests: tuple[str, ...], _thumbnails: Sequence[np.ndarray], size: int = THUMB_PX) -> list[str]:
    """:func:`thumbnail_data_url` of every thumbnail; keyed by the images' digests (no names)."""
    return [thumbnail_data_url(t, size) for t in _thumbnails]


def tooltip_thumbnails(
    digests: Sequence[str], thumbnails: Sequence[np.ndarray], rows: Sequence[int], n_charts: int,
    budget: int = TOOLTIP_BUDGET_BYTES,
) -> tuple[list[str] | None, int]:
    """Tooltip data URLs for the feature rows (``rows[i]`` = image index), and their size in px.

    48 px when every chart's copy fits ``budget``, else 32 px, else ``(None, 0)``: names only.
    """
    for size in (THUMB_PX, 32):
        urls_all = thumbnail_urls(tuple(digests), thumbnails, size)
        urls = [urls_all[i] for i in rows]
        if tooltip_images_fit(urls, n_charts, budget):
            return urls, size
    return None, 0


def tooltip_images_fit(urls: Sequence[str], n_charts: int, budget: int = TOOLTIP_BUDGET_BYTES) -> bool:
    """Whether every chart can carry its own copy of the thumbnails within ``budget`` bytes."""
    return sum(len(u) for u in urls) * max(1, n_charts) <= budget


# --------------------------------------------------------------------------------------------
# maps and their scores


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


def variance_text(emb: Embedding) -> str:
    """``"PC1 41% · PC2 12% of the variance"`` for PCA; ``""`` for other methods."""
    if not emb.explained_variance:
        return ""
    shares = " · ".join(f"PC{i + 1} {v:.0%}" for i, v in enumerate(emb.explained_variance[:2]))
    total = sum(emb.explained_variance[:2])
    return f"{shares} of the variance ({total:.0%} together)"


def map_frame(
    coords: np.ndarray,
    names: Sequence[str],
    labels: Sequence[str | None] | None = None,
    images: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per image: ``idx`` (row in the features), ``x``, ``y``, ``name``, ``label``, ``image``.

    ``image`` holds the tooltip's data URL ("" when thumbnails are left out); ``label`` is ""
    for unlabelled images. Names stay as typed: the chart's tooltip escapes HTML itself.
    """
    coords = np.asarray(coords, dtype=np.float64)
    n = coords.shape[0]
    if len(names) != n:
        raise ValueError(f"map_frame: {len(names)} names for {n} points")
    labels = list(labels) if labels is not None else [None] * n
    return pd.DataFrame({
        "idx": np.arange(n, dtype=int),
        "x": coords[:, 0],
        "y": coords[:, 1],
        "name": [str(v) for v in names],
        "label": ["" if v is None else str(v) for v in labels],
        "image": list(images) if images is not None else [""] * n,
    })


def scatter_chart(
    frame: pd.DataFrame,
    *,
    method: str = "pca",
    color_by: str = "label",
    classes: Sequence[str] = (),
    point_size: int = 60,
    select: str = "box",
    explained: Sequence[float] | None = None,
    height: int = 260,
) -> alt.Chart:
    """A scatter of :func:`map_frame` with thumbnail tooltips and one selection parameter.

    ``select="box"`` adds an interval selection named ``"box"`` (drag), ``"click"`` a point
    selection named ``"pick"`` on ``idx`` (click; shift-click for more). Selected points stay
    opaque, the rest fade. ``color_by="label"`` colours by class with the same colour per class
    in every chart (``classes`` fixes the order); anything else draws one colour.
    """
    axis = alt.Axis(labels=False, ticks=False, grid=True, domain=False)
    names = {"pca": "PC", "tsne": "t-SNE ", "umap": "UMAP "}
    prefix = names.get(method, "")
    titles = [f"{prefix}{i}" for i in (1, 2)]
    if method == "pca" and explained:
        titles = [f"PC{i + 1} ({v:.0%})" for i, v in enumerate(list(explained)[:2])]
    if select == "click":
        selection = alt.selection_point(name="pick", fields=["idx"], on="click")
    else:
        selection = alt.selection_interval(name="box", encodings=["x", "y"])
    labelled = color_by == "label" and (frame["label"] != "").any()
    if labelled:
        domain = list(classes) or sorted(set(frame["label"]) - {""})
        if (frame["label"] == "").any():
            domain = domain + [""]
        # No legend per chart: one legend_chart above the grid (same domain, so the same colours).
        color = alt.Color("label:N", scale=alt.Scale(domain=domain), legend=None)
    else:
        color = alt.value(PRIMARY)
    tooltip = []
    if (frame["image"] != "").any():
        tooltip.append(alt.Tooltip("image:N", title="image"))  # vega-tooltip shows this key as an <img>
    tooltip.append(alt.Tooltip("name:N", title="file"))
    if (frame["label"] != "").any():
        tooltip.append(alt.Tooltip("label:N", title="class"))
    return (
        alt.Chart(frame)
        .mark_circle(size=int(point_size), stroke="white", strokeWidth=0.6)
        .encode(
            x=alt.X("x:Q", title=titles[0], axis=axis, scale=alt.Scale(zero=False, nice=False, padding=12)),
            y=alt.Y("y:Q", title=titles[1], axis=axis, scale=alt.Scale(zero=False, nice=False, padding=12)),
            color=color,
            opacity=alt.condition(selection, alt.value(0.9), alt.value(0.15)),
            tooltip=tooltip,
        )
        .add_params(selection)
        .properties(height=height, autosize=_FIT_X)
    )


def legend_chart(classes: Sequence[str], *, unlabelled: bool = False) -> alt.Chart:
    """One row of coloured dots named by class: the shared legend of every :func:`scatter_chart`.

    Uses the same colour domain as the scatters (``classes`` in order, then "" for unlabelled
    images), so the theme gives every class the same colour here and in each map.
    """
    domain = list(classes) + ([""] if unlabelled else [])
    shown = pd.DataFrame({"label": domain, "name": [c if c else "(no class)" for c in domain]})
    return (
        alt.Chart(shown)
        .mark_circle(size=110, opacity=0.9)
        .encode(
            x=alt.X("name:N", sort=[c if c else "(no class)" for c in domain], title=None,
                    axis=alt.Axis(orient="top", labelAngle=0, ticks=False, domain=False, labelFontSize=13,
                                  labelPadding=6, labelLimit=160)),
            color=alt.Color("label:N", scale=alt.Scale(domain=domain), legend=None),
            tooltip=[alt.Tooltip("name:N", title="class")],
        )
        .properties(height=8, autosize=_FIT_X)
        .configure_view(stroke=None)
    )


def selected_indices(frame: pd.DataFrame, state: Any) -> list[int]:
    """Rows of ``frame`` picked in a chart's selection state (from ``st.altair_chart(on_select=...)``).

    Reads the point selection ``pick`` (``[{"idx": 3}, ...]``) and the interval ``box``
    (``{"x": [x0, x1], "y": [y0, y1]}``); anything else or nothing selected → ``[]``.

    Example:
        >>> f = map_frame(np.array([[0, 0], [1, 1], [5, 5]]), ["a", "b", "c"])
        >>> selected_indices(f, {"selection": {"box": {"x": [-1, 2], "y": [-1, 2]}}})
        [0, 1]
    """
    selection = None
    if state is not None:
        selection = state.get("selection") if hasattr(state, "get") else getattr(state, "selection", None)
    if not selection:
        return []
    n = len(frame)
    picked: list[int] = []
    points = selection.get("pick") if hasattr(selection, "get") else None
    if points:
        for point in points:
            idx = point.get("idx") if hasattr(point, "get") else None
            if isinstance(idx, (int, float)) and not isinstance(idx, bool) and 0 <= int(idx) < n:
                picked.append(int(idx))
    box = selection.get("box") if hasattr(selection, "get") else None
    if box and "x" in box and "y" in box:
        try:
            x0, x1 = sorted(float(v) for v in box["x"])
            y0, y1 = sorted(float(v) for v in box["y"])
        except (TypeError, ValueError):
            return sorted(set(picked))
        inside = frame[(frame["x"] >= x0) & (frame["x"] <= x1) & (frame["y"] >= y0) & (frame["y"] <= y1)]
        picked.extend(int(i) for i in inside["idx"])
    return sorted(set(picked))


def overlap_long(matrix: pd.DataFrame) -> pd.DataFrame:
    """The overlap matrix as rows ``a``, ``b``, ``overlap`` (for a heatmap), in the matrix's order."""
    rows = [{"a": a, "b": b, "overlap": float(matrix.loc[a, b])} for a in matrix.index for b in matrix.columns]
    return pd.DataFrame(rows, columns=["a", "b", "overlap"])


def overlap_chart(matrix: pd.DataFrame, *, cell: int = 46) -> alt.LayerChart:
    """Heatmap of a neighbour-overlap matrix with the share written in each cell."""
    long = overlap_long(matrix)
    order = list(matrix.index)
    base = alt.Chart(long).encode(
        x=alt.X("b:N", sort=order, title=None, axis=alt.Axis(labelAngle=-45, labelLimit=220, labelOverlap=False)),
        y=alt.Y("a:N", sort=order, title=None, axis=alt.Axis(labelLimit=220)),
    )
    rect = base.mark_rect().encode(
        color=alt.Color("overlap:Q", scale=alt.Scale(domain=[0, 1], scheme="blues"),
                        legend=alt.Legend(title="shared", format=".0%")),
        tooltip=[alt.Tooltip("a:N", title="map"), alt.Tooltip("b:N", title="vs"),
                 alt.Tooltip("overlap:Q", title="shared neighbours", format=".0%")],
    )
    text = base.mark_text(fontSize=11).encode(
        text=alt.Text("overlap:Q", format=".0%"),
        color=alt.condition(alt.datum.overlap > 0.6, alt.value("white"), alt.value("black")),
    )
    side = max(160, cell * len(order))
    # "pad": the plot keeps its size and the element grows for the labels and the legend
    # (Streamlit's default "fit" would squeeze the cells into the spec's width).
    return (rect + text).properties(width=side, height=side, autosize=alt.AutoSizeParams(type="pad", contains="padding"))


def short_name(name: str) -> str:
    """The last part of a display name (``"cats/tabby.jpg"`` → ``"tabby.jpg"``), for narrow captions."""
    text = str(name).replace("\\", "/").rstrip("/")
    return text.rsplit("/", 1)[-1] or text


def neighbour_table(X: np.ndarray, index: int, k: int) -> list[tuple[int, float]]:
    """The ``k`` rows most cosine-similar to row ``index`` (itself excluded): ``[(row, similarity)]``."""

    return nearest_neighbours(X, int(index), k=int(k))


# --------------------------------------------------------------------------------------------
# layer selection


@st.cache_data(max_entries=16, show_spinner=False)
def layer_costs_cached(config: BackboneConfig, layers: tuple[str, ...], _backbone) -> dict[str, float]:
    """Milliseconds per image to extract each layer alone (``extractor.sweep.layer_costs``).

    Keyed by the configuration; measured on an 8-image random probe batch, inside
    an inference slot so it never competes with more than one other forward pass.
    """
    with inference_slot():
        return layer_costs(_backbone, list(layers))


@dataclass
class SweepResult:
    """One sweep of this session: what it was run on (``signature``) and what came out."""

    signature: str
    table: pd.DataFrame
    recommendation: Recommendation | None
    label_problem: str | None
    n_images: int
    seconds: float
    layers: list[str]
    poolings: list[str]
    skipped: dict[str, str] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)
    rows: str = ""  # rows_id of the images it scored (the Export page checks it before using the result)


def sweep_signature(rows: str, labels: str, poolings: Sequence[str], k: int, folds: int) -> str:
    """What a sweep result depends on; a stored result is shown only while this stays the same."""
    return digest_of("sweep", rows, labels, tuple(poolings), int(k), int(folds))


def metric_options(table: pd.DataFrame) -> list[str]:
    """The score columns worth showing: accuracies and silhouette when computed, then the unsupervised ones."""
    out = [m for m in ("linear_acc", "knn_acc", "silhouette") if m in table and table[m].notna().any()]
    out += [m for m in ("effective_rank", "ms_per_image", "dim") if m in table and table[m].notna().any()]
    return out


def _ordered(table: pd.DataFrame) -> tuple[list[str], list[str]]:
    layers = list(table.sort_values("depth", kind="stable")["layer"].drop_duplicates())
    poolings = [p for p in POOLING_CHOICES if p in set(table["pooling"])]
    poolings += [p for p in table["pooling"].drop_duplicates() if p not in poolings]
    return layers, poolings


def metric_heatmap(table: pd.DataFrame, metric: str, *, best: tuple[str, str] | None = None) -> alt.LayerChart:
    """Layers (rows, input side first) × poolings (columns), coloured by ``metric`` and labelled.

    ``best`` (layer, pooling) gets a dark outline.
    """
    label, fmt, domain = METRICS[metric]
    layers, poolings = _ordered(table)
    data = table[["layer", "pooling", metric]].rename(columns={metric: "value"}).copy()
    data["value"] = pd.to_numeric(data["value"], errors="coerce").astype(float)
    data["text"] = [_fmt_value(v, fmt) for v in data["value"]]
    lo, hi = domain if domain else (float(np.nanmin(data["value"])) if data["value"].notna().any() else 0.0,
                                    float(np.nanmax(data["value"])) if data["value"].notna().any() else 1.0)
    mid = lo + 0.55 * (hi - lo)
    base = alt.Chart(data).encode(
        x=alt.X("pooling:N", sort=poolings, title="pooling", axis=alt.Axis(labelAngle=0, orient="top", labelOverlap=False)),
        y=alt.Y("layer:N", sort=layers, title="layer (input side first)", axis=alt.Axis(labelLimit=240)),
    )
    scale = alt.Scale(domain=[lo, hi], scheme="viridis") if domain else alt.Scale(scheme="viridis")
    rect = base.mark_rect().encode(
        color=alt.Color("value:Q", scale=scale, legend=alt.Legend(title=None, format=fmt.replace(",d", ",.0f"),
                                                                  orient="bottom", direction="horizontal",
                                                                  gradientLength=200)),
        tooltip=[alt.Tooltip("layer:N"), alt.Tooltip("pooling:N"), alt.Tooltip("text:N", title=label)],
    )
    text = base.mark_text(fontSize=12).encode(
        text="text:N",
        color=alt.condition(alt.datum.value > mid, alt.value("black"), alt.value("white")),
    )
    layers_chart = rect + text
    if best is not None:
        mark = pd.DataFrame({"layer": [best[0]], "pooling": [best[1]]})
        outline = alt.Chart(mark).mark_rect(fill=None, stroke="#d62728", strokeWidth=3).encode(
            x=alt.X("pooling:N", sort=poolings), y=alt.Y("layer:N", sort=layers))
        layers_chart = layers_chart + outline
    # Cells wide enough for "avgmax" and "100%", rows for a layer name each; "pad" keeps that
    # size (draw it with st.altair_chart(..., width="content")).
    return layers_chart.properties(width=alt.Step(62), height=max(120, 30 * len(layers)),
                                   autosize=alt.AutoSizeParams(type="pad", contains="padding"))


def depth_curve(table: pd.DataFrame, metric: str) -> alt.Chart:
    """``metric`` over depth: x = block layers in depth order, one line per pooling."""
    label, fmt, domain = METRICS[metric]
    layers, poolings = _ordered(table)
    data = table[["layer", "pooling", "depth", metric]].rename(columns={metric: "value"}).copy()
    data["value"] = pd.to_numeric(data["value"], errors="coerce").astype(float)
    y_scale = alt.Scale(domain=list(domain)) if domain and metric != "silhouette" else alt.Scale(zero=False)
    return (
        alt.Chart(data)
        .mark_line(point=True)
        .encode(
            x=alt.X("layer:N", sort=layers, title="layer (input side → output side)",
                    axis=alt.Axis(labelAngle=-45, labelOverlap=False, labelLimit=160)),
            y=alt.Y("value:Q", title=label, scale=y_scale, axis=alt.Axis(format=fmt.replace(",d", ",.0f"))),
            color=alt.Color("pooling:N", sort=poolings, legend=alt.Legend(orient="bottom", title=None)),
            tooltip=[alt.Tooltip("layer:N"), alt.Tooltip("pooling:N"), alt.Tooltip("value:Q", title=label, format=fmt)],
        )
        .properties(height=260, autosize=_FIT_X)
    )


def size_text(n_bytes: float) -> str:
    """``"340 kB"``, ``"12.5 MB"``: a size as a person reads it (decimal units, like file managers).

    Example:
        >>> size_text(35_840), size_text(12_500_000)
        ('36 kB', '12.5 MB')
    """
    if n_bytes < 1000:
        return f"{int(n_bytes)} bytes"
    if n_bytes < 1e6:
        return f"{n_bytes / 1e3:.0f} kB"
    if n_bytes < 1e9:
        return f"{n_bytes / 1e6:.1f} MB"
    return f"{n_bytes / 1e9:.2f} GB"


def _fmt_value(v: float, fmt: str) -> str:
    if v is None or not math.isfinite(v):
        return "–"
    if fmt.endswith("%"):
        return f"{v:.0%}"
    if fmt == ",d":
        return f"{v:,.0f}"
    digits = int(fmt[1]) if len(fmt) >= 3 and fmt[1].isdigit() else 2
    return f"{v:.{digits}f}"


def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """The sweep table for ``st.dataframe``: the columns a person reads, input side first."""
    cols = ["layer", "pooling", "dim", "linear_acc", "knn_acc", "silhouette", "effective_rank", "ms_per_image",
            "problem"]
    out = table.sort_values(["depth"], kind="stable")[[c for c in cols if c in table.columns]].copy()
    if "problem" in out and out["problem"].isna().all():
        out = out.drop(columns="problem")
    for col in ("linear_acc", "knn_acc", "silhouette", "effective_rank"):
        if col in out and out[col].isna().all():
            out = out.drop(columns=col)
    return out.reset_index(drop=True)


def recommendation_markdown(rec: Recommendation, escape: Callable[[str], str] = str) -> str:
    """The recommendation for an ``st.success`` box: the choice in bold, then the core's reason.

    ``escape`` escapes layer names for Markdown (``ui.state.escape_markdown``).
    """
    what = f"**{escape(rec.layer)}** with **{escape(rec.pooling)}** pooling"
    head = f"Use {what}" + (f" ({rec.dim:,} dimensions)." if rec.dim else ".")
    return f"{head}\n\n{escape(rec.reason)}"


# --------------------------------------------------------------------------------------------
# export


def export_defaults(
    choice: Mapping | None,
    result: SweepResult | None,
    block_layers: Sequence[str],
    all_layers: Sequence[str],
) -> tuple[list[str], list[str], str]:
    """Starting layers and poolings for the Export page, and where they come from.

    An explicit choice from the Layer-selection page wins, then this session's recommendation,
    then the last block with ``avg``.
    """
    if choice:
        layers = [l for l in choice.get("layers", []) if l in all_layers]
        poolings = [p for p in choice.get("poolings", []) if p in POOLING_CHOICES]
        if layers and poolings:
            return layers, poolings, "your choice on the Layer-selection page"
    if result is not None and result.recommendation is not None:
        rec = result.recommendation
        if rec.layer in all_layers and rec.pooling in POOLING_CHOICES:
            return [rec.layer], [rec.pooling], "the Layer-selection recommendation"
    last = list(block_layers)[-1:] or list(all_layers)[-1:]
    return last, ["avg"], "the default: the last block with average pooling"


def export_id(rows: str, keys: Sequence[str], names: Sequence[str], labels: Sequence | None) -> str:
    """Identity of an export: rows, feature keys, and the names and labels written into the file."""
    return digest_of("export", rows, tuple(keys), tuple(names), None if labels is None else tuple(labels))


def _labels_or_none(labels: Sequence | None) -> list | None:
    if labels is None or not any(lab is not None for lab in labels):
        return None
    return list(labels)


@st.cache_data(max_entries=6, max_size="512MB", show_spinner=False)
def npz_bytes(eid: str, _features: Mapping[str, np.ndarray], _names: Sequence[str], _labels: Sequence | None) -> bytes:
    """``extractor.export.features_to_npz`` of the chosen keys (cached by :func:`export_id`)."""
    return features_to_npz(dict(_features), list(_names), _labels_or_none(_labels))


@st.cache_data(max_entries=6, max_size="512MB", show_spinner=False)
def parquet_bytes(eid: str, _features: Mapping[str, np.ndarray], _names: Sequence[str], _labels: Sequence | None) -> bytes:
    """``extractor.export.features_to_parquet`` of the chosen keys (cached by :func:`export_id`)."""
    return features_to_parquet(dict(_features), list(_names), _labels_or_none(_labels))


@st.cache_data(max_entries=6, max_size="256MB", show_spinner=False)
def _csv_or_message(eid: str, _features, _names, _labels) -> tuple[bytes | None, str | None]:
    try:
        return features_to_csv(dict(_features), list(_names), _labels_or_none(_labels)), None
    except ExportError as exc:
        return None, str(exc)


def csv_bytes_or_message(eid: str, features, names, labels) -> tuple[bytes | None, str | None]:
    """CSV bytes, or ``(None, why)`` when the core refuses (too many values for a spreadsheet)."""
    return _csv_or_message(eid, features, names, labels)


@st.cache_data(max_entries=6, max_size="64MB", show_spinner=False)
def coords_csv_bytes(eid: str, _coords: Mapping[str, np.ndarray], _names: Sequence[str], _labels: Sequence | None) -> bytes:
    """``extractor.export.coords_to_csv`` (``eid`` must cover the maps: keys, methods, parameters)."""
    return coords_to_csv(dict(_coords), list(_names), _labels_or_none(_labels))


@st.cache_data(max_entries=4, max_size="256MB", show_spinner=False)
def projector_bytes(eid: str, _vectors: np.ndarray, _names: Sequence[str], _labels: Sequence | None,
                    _thumbnails: Sequence[np.ndarray] | None) -> bytes:
    """``extractor.export.projector_bundle`` (vectors, metadata, sprite of the thumbnails)."""
    return projector_bundle(_vectors, list(_names), _labels_or_none(_labels), _thumbnails, tensor_name="layer_explorer")


def reproduce_files(config: BackboneConfig, layers: Sequence[str], poolings: Sequence[str]) -> tuple[bytes, str]:
    """``config.json`` bytes and the runnable script for the chosen extraction.

    A local weights file or model file appears by its file name only (never a server path).
    """
    weights = config.weights
    if weights not in ("pretrained", "none", "imagenet"):
        weights = Path(str(weights)).name or "weights.weights.h5"
    backbone = config.name if config.name in BACKBONES else (Path(str(config.name)).name or "model.keras")
    cfg = reproduce_config(
        backbone=backbone,
        weights=weights,
        layers=list(layers),
        poolings=list(poolings),
        resize=config.resize,
        precision=config.precision,
        input_size=tuple(config.input_size),
    )
    blob = (json.dumps(cfg, indent=2) + "\n").encode("utf-8")
    return blob, reproduce_script(cfg, script_name=FILE_NAMES["script"])
