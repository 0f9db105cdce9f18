"""The Altair charts and the tables drawn from features and scores (no widgets, no network).

* Embedding maps: :func:`map_frame` → :func:`scatter_chart` (+ :func:`legend_chart`), and
  :func:`selected_indices` to read a selection back; tooltip thumbnails (:func:`thumbnail_urls`,
  cached by image digests) within :data:`TOOLTIP_BUDGET_BYTES`.
* Neighbour agreement: :func:`overlap_chart`.
* Sweep results: :func:`metric_heatmap`, :func:`depth_curve`, :func:`display_table`,
  :func:`recommendation_markdown`.

Example (inside a page)::

    st.altair_chart(scatter_chart(map_frame(emb.coords, names, labels, urls), ...))
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Callable, Sequence
from typing import Any

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from extractor.reduce import Embedding
from extractor.scoring import Recommendation

from .features import POOLING_CHOICES

__all__ = [
    "THUMB_PX",
    "TOOLTIP_BUDGET_BYTES",
    "PRIMARY",
    "CLASS_PALETTE",
    "class_colors",
    "METRICS",
    "thumbnail_data_url",
    "thumbnail_urls",
    "thumbnail_files",
    "served_thumbnail_urls",
    "tooltip_thumbnails",
    "tooltip_images_fit",
    "variance_text",
    "map_frame",
    "scatter_chart",
    "scatter_spec",
    "legend_chart",
    "legend_spec",
    "selected_indices",
    "overlap_long",
    "overlap_chart",
    "overlap_spec",
    "short_name",
    "metric_options",
    "metric_heatmap",
    "depth_curve",
    "display_table",
    "recommendation_markdown",
]


#: Tooltip thumbnails: longest side in pixels (small: every point carries one in the chart data).
THUMB_PX = 48


#: Above this many bytes of tooltip thumbnails per page, tooltips show names only.
TOOLTIP_BUDGET_BYTES = 8_000_000


#: The theme's primary colour (points without labels).
PRIMARY = "#2f6fdf"


#: Class colours: Tableau 10 without its grey, so every class gets its own hue (the theme's default
#: category palette puts a dark and a light shade of one hue side by side). Beyond 9 classes the
#: colours repeat.
CLASS_PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f")
_UNLABELLED = "#bab0ac"  # Tableau 10's grey: images without a class


def class_colors(domain: Sequence[str]) -> list[str]:
    """One colour per entry of a class domain, in order; ``""`` (no class) is grey.

    Example:
        >>> class_colors(["circle", "square", ""])
        ['#4e79a7', '#f28e2b', '#bab0ac']
    """
    out, i = [], 0
    for name in domain:
        if name == "":
            out.append(_UNLABELLED)
        else:
            out.append(CLASS_PALETTE[i % len(CLASS_PALETTE)])
            i += 1
    return out


#: Scores the Layer-selection page can show: column -> (label, Vega format, domain or None).
METRICS = {
    "linear_acc": ("Linear-probe accuracy", ".0%", (0.0, 1.0)),
    "knn_acc": ("k-NN accuracy", ".0%", (0.0, 1.0)),
    "silhouette": ("Silhouette (cosine)", ".2f", (-1.0, 1.0)),
    "effective_rank": ("Effective rank", ".1f", None),
    "dim": ("Dimensions", ",d", None),
    "ms_per_image": ("ms per image", ".2f", None),
}


# Charts fill their column's width; ``height`` is the plot's own height, and the element grows for
# axes and legends (Streamlit's default, "fit", squeezes the plot into ``height`` instead).
_FIT_X = alt.AutoSizeParams(type="fit-x", contains="padding")


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


@st.cache_data(max_entries=16, max_size="32MB", show_spinner=False)
def thumbnail_files(digests: tuple[str, ...], _thumbnails: Sequence[np.ndarray], size: int = THUMB_PX) -> list[tuple[str, bytes]]:
    """``(mimetype, bytes)`` of every thumbnail (PNG or JPEG, as :func:`thumbnail_data_url`); keyed by digests."""
    out = []
    for url in thumbnail_urls(digests, _thumbnails, size):
        head, data = url.split(",", 1)
        out.append((head[len("data:"):-len(";base64")], base64.b64decode(data)))
    return out


def served_thumbnail_urls(digests: Sequence[str], thumbnails: Sequence[np.ndarray], size: int = THUMB_PX) -> list[str] | None:
    """URLs of the thumbnails served once by Streamlit's media endpoint (``/media/<hash>.png``), one per image.

    Every chart then carries a short URL per point instead of its own copy of the image, and the
    browser fetches a thumbnail once, when a tooltip first shows it. The files belong to this
    session's current run (registered again on every run, as ``st.image`` does), so they live
    exactly as long as the page that shows them. ``None`` outside a Streamlit runtime.
    """
    from streamlit import runtime

    if not runtime.exists():
        return None
    manager = runtime.get_instance().media_file_mgr
    base = str(st.get_option("server.baseUrlPath") or "").strip("/")
    prefix = f"/{base}" if base else ""
    files = thumbnail_files(tuple(digests), thumbnails, size)
    return [prefix + manager.add(data, mime, f"le_thumb.{size}.{digest}")
            for digest, (mime, data) in zip(digests, files, strict=True)]


def tooltip_thumbnails(
    digests: Sequence[str], thumbnails: Sequence[np.ndarray], rows: Sequence[int], n_charts: int,
    budget: int = TOOLTIP_BUDGET_BYTES, *, serve: bool = False,
) -> tuple[list[str] | None, int]:
    """Tooltip image URLs for the feature rows (``rows[i]`` = image index), and their size in px.

    ``serve``: each thumbnail sent once (:func:`served_thumbnail_urls`); the charts carry URLs only,
    so any number of maps fits. Otherwise (or outside a runtime) data URLs embedded in every chart:
    48 px when every chart's copy fits ``budget``, else 32 px, else ``(None, 0)``: names only.
    """
    if serve:
        served = served_thumbnail_urls(digests, thumbnails, THUMB_PX)
        if served is not None:
            return [served[i] for i in rows], THUMB_PX
    for size in (THUMB_PX, 32):
        urls_all = thumbnail_urls(tuple(digests), thumbnails, size)
        urls = [urls_all[i] for i in rows]
        if tooltip_images_fit(urls, n_charts, budget):
            return urls, size
    return None, 0


def tooltip_images_fit(urls: Sequence[str], n_charts: int, budget: int = TOOLTIP_BUDGET_BYTES) -> bool:
    """Whether every chart can carry its own copy of the thumbnails within ``budget`` bytes."""
    return sum(len(u) for u in urls) * max(1, n_charts) <= budget


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
    labels = frame["label"] != ""
    domain = list(classes) or sorted(set(frame["label"]) - {""})
    return _scatter(alt.Chart(frame), method=method, color_by=color_by, domain=tuple(domain),
                    point_size=point_size, select=select, explained=explained, height=height,
                    images=bool((frame["image"] != "").any()), labelled=bool(labels.any()),
                    unlabelled=bool((~labels).any()))


@st.cache_data(max_entries=64, show_spinner=False)
def scatter_spec(
    *,
    method: str = "pca",
    color_by: str = "label",
    classes: tuple[str, ...] = (),
    point_size: int = 60,
    select: str = "box",
    explained: tuple[float, ...] | None = None,
    height: int = 260,
    images: bool = False,
    labelled: bool = True,
    unlabelled: bool = False,
) -> dict:
    """:func:`scatter_chart` as a Vega-Lite spec without data, cached: draw it with
    ``st.vega_lite_chart(map_frame(...), scatter_spec(...))``.

    Altair builds and validates a spec in tens of milliseconds; six maps on every rerun add up,
    and the spec depends only on these plain values (the frame goes as the chart's data).
    ``images``/``labelled``/``unlabelled``: whether the frame has thumbnails, classes, unclassed rows.

    Example:
        >>> spec = scatter_spec(classes=("a", "b"), select="box")
        >>> "data" in spec, spec["params"][0]["name"]
        (False, 'box')
    """
    spec = _scatter(alt.Chart(), method=method, color_by=color_by, domain=tuple(classes), point_size=point_size,
                    select=select, explained=explained, height=height, images=images, labelled=labelled,
                    unlabelled=unlabelled).to_dict()
    spec.pop("data", None)
    spec.pop("datasets", None)
    return spec


def _scatter(base: alt.Chart, *, method: str, color_by: str, domain: tuple[str, ...], point_size: int, select: str,
             explained: Sequence[float] | None, height: int, images: bool, labelled: bool,
             unlabelled: bool) -> alt.Chart:
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
    if color_by == "label" and labelled:
        domain = list(domain)
        if unlabelled:
            domain = domain + [""]
        # No legend per chart: one legend_chart above the grid (same domain, so the same colours).
        color = alt.Color("label:N", scale=alt.Scale(domain=domain, range=class_colors(domain)), legend=None)
    else:
        color = alt.value(PRIMARY)
    tooltip = []
    if images:
        tooltip.append(alt.Tooltip("image:N", title="image"))  # vega-tooltip shows this key as an <img>
    tooltip.append(alt.Tooltip("name:N", title="file"))
    if labelled:
        tooltip.append(alt.Tooltip("label:N", title="class"))
    return (
        base
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
            color=alt.Color("label:N", scale=alt.Scale(domain=domain, range=class_colors(domain)), legend=None),
            tooltip=[alt.Tooltip("name:N", title="class")],
        )
        .properties(height=8, autosize=_FIT_X)
        .configure_view(stroke=None)
    )


@st.cache_data(max_entries=16, show_spinner=False)
def legend_spec(classes: tuple[str, ...], unlabelled: bool = False) -> dict:
    """:func:`legend_chart` as a Vega-Lite dict (data inline), cached: no Altair work on a rerun."""
    return legend_chart(classes, unlabelled=unlabelled).to_dict()


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


@st.cache_data(max_entries=32, show_spinner=False)
def overlap_spec(matrix: pd.DataFrame) -> dict:
    """:func:`overlap_chart` as a Vega-Lite dict (data inline), cached by the matrix's content."""
    return overlap_chart(matrix).to_dict()


def short_name(name: str) -> str:
    """The last part of a display name (``"cats/tabby.jpg"`` → ``"tabby.jpg"``), for narrow captions."""
    text = str(name).replace("\\", "/").rstrip("/")
    return text.rsplit("/", 1)[-1] or text


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
