"""The "Channels & layers" page's caches and orchestration (pages/channels.py only lays out).

Where the numbers come from, and what is cached:

* Pooled features: :func:`block_features` asks :func:`ui.features.fetch_features` for the avg and
  max pooling of the chosen layer, which for block outputs is served by the same cached call
  (every block × every global pooling) as the Embeddings and Layer-selection pages. Switching
  channel or layer never runs the network for the ranking.
* Channel health (:func:`layer_stats`), the depth summary (:func:`depth_summary`) and CKA
  (:func:`cka_within`, :func:`cka_between`) are ``st.cache_data`` keyed by the rows' identity
  (network + image digests, ``ui.features.rows_id``) and the labels' identity.
* Crops: :func:`peak_positions` runs the images through every block output at once with pooling
  ``none`` and keeps only each channel's peak position (the whole set in one pass up to 512
  images, else just the 2k ranked ones through the chosen layer), keyed by content. The maps
  themselves are never kept. Each crop is the peak cell's receptive field
  (:func:`extractor.channels.crop_window`, fields from :func:`ui.explain.receptive_fields_for`).
* Charts are built as Vega-Lite dicts once per content (:func:`chart_spec`): Altair's schema
  validation is the slowest part of a rerun otherwise.
* Full-maps CKA (:func:`cka_full_maps`) accumulates n × n Gram matrices block by block.
* Activation maximisation results live in this session (:func:`actmax_memo`), keyed by
  backbone, weights, size, layer and channel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from extractor import LayerInfo, feature_key, get_spec
from extractor.channels import (
    ChannelStats,
    channel_stats,
    crop_window,
    stats_frame,
    strongest_positions,
    top_images,
)
from extractor.cka import DEBIASED_BELOW, CKAResult, cka_matrix, full_map_grams

from . import cache
from . import explain as ex
from . import features as feat
from .config import BackboneConfig
from .inference_slot import inference_slot

__all__ = [
    "ACTMAX_KEEP",
    "CROP_PX",
    "DEBIASED_BELOW",
    "Crop",
    "actmax_memo",
    "block_features",
    "cka_between",
    "cka_chart",
    "cka_full_maps",
    "cka_spec",
    "cka_within",
    "depth_spec",
    "crops_for",
    "depth_chart",
    "depth_summary",
    "layer_stats",
    "other_config",
    "peak_positions",
    "remember_actmax",
    "stats_table",
]

CROP_PX = 96  # every crop is shown at this size
ACTMAX_KEEP = 16  # activation-maximisation pictures kept per session
FULL_MAPS_BLOCK_BYTES = 128 * 2**20  # one block of full maps at most this big (the Grams are n × n)


def block_features(table: Sequence[LayerInfo], blocks: Sequence[str], layer: str, *, images, config):
    """avg- and max-pooled features of ``layer`` (and of every block output) for the whole set."""
    layers = list(dict.fromkeys([*blocks, layer]))
    return feat.fetch_features(table, blocks, layers, ["avg", "max"], images=images, config=config)


@st.cache_data(max_entries=64, show_spinner=False)
def layer_stats(rid: str, lid: str, layer: str, _max: np.ndarray, _avg: np.ndarray, _labels: tuple) -> ChannelStats:
    """Channel health of one layer; keyed by the rows' and labels' identity and the layer name."""
    labels = list(_labels) if any(lab is not None for lab in _labels) else None
    return channel_stats(_max, labels, mean_pooled=_avg)


@st.cache_data(max_entries=16, show_spinner=False)
def depth_summary(rid: str, lid: str, blocks: tuple[str, ...], _features: dict, _labels: tuple) -> pd.DataFrame:
    """Dead share, always-on share and mean selectivity of every block output, in depth order."""
    rows = []
    for depth, layer in enumerate(blocks):
        s = layer_stats(rid, lid, layer, _features[feature_key(layer, "max")], _features[feature_key(layer, "avg")],
                        _labels)
        rows.append({"depth": depth, "layer": layer, "dead share": s.dead_share, "always-on share": s.always_on_share,
                     "mean selectivity": s.mean_selectivity})
    return pd.DataFrame(rows)


def stats_table(stats: ChannelStats) -> pd.DataFrame:
    """The sortable per-channel table shown on the page (n/a as missing values, not as 0)."""
    df = stats_frame(stats)
    if not stats.has_selectivity:
        df = df.drop(columns=["top class", "selectivity"])
    return df


def depth_chart(summary: pd.DataFrame, has_selectivity: bool) -> alt.Chart:
    """Dead share (and mean selectivity, with labels) over the block outputs."""
    measures = ["dead share"] + (["mean selectivity"] if has_selectivity else [])
    long = summary.melt(id_vars=["depth", "layer"], value_vars=measures, var_name="measure", value_name="value")
    order = list(summary["layer"])
    return (
        alt.Chart(long)
        .mark_line(point=True)
        .encode(
            x=alt.X("layer:N", sort=order, title="block output (input side first)", axis=alt.Axis(labelAngle=-40)),
            y=alt.Y("value:Q", title=None, scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("measure:N", title=None),
            tooltip=["layer:N", "measure:N", alt.Tooltip("value:Q", format=".2f")],
        )
        .properties(height=220)
    )


ALL_POSITIONS_UP_TO = 512  # sets up to this size get every image's peaks in one pass per layer


@st.cache_data(max_entries=32, max_size="128MB", show_spinner="Finding where each channel peaks…")
def peak_positions(config: BackboneConfig, layers: tuple[str, ...], digests: tuple[str, ...],
                   _items: Sequence) -> dict[str, tuple[np.ndarray, tuple[int, int]]]:
    """Every channel's peak (row, col) in these images' maps of each of ``layers``:
    ``{layer: ((m, C, 2) int16, map size)}``.

    One forward pass in batches of 32 through all of ``layers`` at once (raw maps are reduced to
    positions batch by batch, never kept). The page asks for every block output together, so the
    first crop of any block builds the one extractor and runs the one pass, and a switch to another
    block afterwards needs neither (issue 14: < 0.5 s a switch; one extractor per layer cost a model
    build and a trace, about a second, on each first visit). For sets up to
    :data:`ALL_POSITIONS_UP_TO` images it is called with the whole set, so switching channel needs no
    network at all; for larger sets with only the 2k ranked images.
    """
    fx = cache.get_extractor(config, layers, ("none",))
    parts: dict[str, list[np.ndarray]] = {layer: [] for layer in layers}
    sizes: dict[str, tuple[int, int]] = {}
    for s in range(0, len(_items), 32):
        views = np.stack([cache.network_view(item, config.input_size, config.resize) for item in _items[s : s + 32]])
        with inference_slot():
            out = fx.run_batch(views)
        for layer in layers:
            maps = np.asarray(out[feature_key(layer, "none")])
            sizes[layer] = (int(maps.shape[1]), int(maps.shape[2]))
            parts[layer].append(strongest_positions(maps).astype(np.int16))
        del out
    return {layer: (np.concatenate(parts[layer]), sizes[layer]) for layer in layers}


@dataclass(frozen=True)
class Crop:
    pixels: np.ndarray
    value: float
    row: int  # row in the features
    box: tuple[int, int, int, int]


def crops_for(features_max: np.ndarray, channel: int, k: int, *, feats, images, config, info: LayerInfo,
              blocks: Sequence[str] = ()):
    """(highest, lowest) lists of :class:`Crop` for a channel: ranking from pooled features only.

    ``blocks``: the page's block outputs. A block's peaks are found in one pass with the other
    blocks' (:func:`peak_positions`); another layer ("Every layer") gets a pass of its own.
    """
    ranked = top_images(features_max, int(channel), int(k))
    everyone = len(feats.digests) <= ALL_POSITIONS_UP_TO
    rows = list(range(len(feats.digests))) if everyone else list(ranked.indices)
    # The ranked rows differ per channel, so only a whole-set pass can serve the other blocks too.
    together = tuple(blocks) if everyone and info.name in blocks else (info.name,)
    positions, map_size = peak_positions(config, together, tuple(feats.digests[r] for r in rows),
                                         [images.items[feats.indices[r]] for r in rows])[info.name]
    where = {r: j for j, r in enumerate(rows)}
    field = ex.receptive_fields_for(config).get(info.name)  # None: crop_window falls back to strides

    def crop(entry) -> Crop:
        view = cache.network_view(images.items[feats.indices[entry.index]], config.input_size, config.resize)
        pos = tuple(int(v) for v in positions[where[entry.index], int(channel)])
        box = crop_window(pos, map_size, view.shape[:2], field)
        top, left, bottom, right = box
        im = Image.fromarray(np.ascontiguousarray(view[top:bottom, left:right]))
        im = im.resize((CROP_PX, CROP_PX), Image.Resampling.NEAREST if bottom - top < CROP_PX else Image.Resampling.BILINEAR)
        return Crop(np.asarray(im), entry.value, entry.index, box)

    return [crop(e) for e in ranked.highest], [crop(e) for e in ranked.lowest]


@st.cache_data(max_entries=16, show_spinner="Comparing layers (CKA)…")
def cka_within(rid: str, layers: tuple[str, ...], debiased: bool, _features: dict) -> CKAResult:
    """CKA between every pair of ``layers`` from their avg-pooled features."""
    return cka_matrix({layer: _features[feature_key(layer, "avg")] for layer in layers}, debiased=debiased)


@st.cache_data(max_entries=16, show_spinner="Comparing the two networks (CKA)…")
def cka_between(rid_a: str, rid_b: str, rows: tuple[str, ...], columns: tuple[str, ...], debiased: bool,
                _a: dict, _b: dict) -> CKAResult:
    return cka_matrix({r: _a[feature_key(r, "avg")] for r in rows}, {c: _b[feature_key(c, "avg")] for c in columns},
                      debiased=debiased)


def _full_grams(config, layers: tuple[str, ...], digests: tuple[str, ...], items: Sequence) -> dict[str, np.ndarray]:
    fx = cache.get_extractor(config, layers, ("none",))
    per_image = sum(int(np.prod(i.shape)) * 8 for i in fx.layer_infos if None not in i.shape) or 1
    block = max(1, FULL_MAPS_BLOCK_BYTES // per_image)

    def maps_of(idx):
        views = np.stack([cache.network_view(items[i], config.input_size, config.resize) for i in idx])
        parts = {layer: [] for layer in layers}
        for s in range(0, len(views), 32):
            with inference_slot():
                out = fx.run_batch(views[s : s + 32])
            for layer in layers:
                parts[layer].append(out[feature_key(layer, "none")])
        return {layer: np.concatenate(v) for layer, v in parts.items()}

    return full_map_grams(maps_of, len(items), block)


@st.cache_data(max_entries=8, show_spinner="Accumulating Gram matrices of the full maps…")
def cka_full_maps(config, layers: tuple[str, ...], digests: tuple[str, ...], debiased: bool, _items: Sequence,
                  other=None, other_layers: tuple[str, ...] = ()) -> CKAResult:
    """CKA of full (flattened) maps; n × n Gram per layer, built block by block."""
    rows = _full_grams(config, layers, digests, _items)
    cols = _full_grams(other, other_layers, digests, _items) if other is not None else None
    return cka_matrix(row_grams=rows, column_grams=cols, debiased=debiased, features="full")


def other_config(config: BackboneConfig, name: str, weights: str) -> BackboneConfig:
    """The configuration of the second network for a comparison (same images, its own input size)."""
    size = tuple(config.input_size) if name == config.name else tuple(get_spec(name).input_size)
    return config.replace(name=name, weights=weights, input_size=size)


def cka_chart(result: CKAResult, *, row_title: str, column_title: str, cell: int = 46) -> alt.LayerChart:
    """Heat map of a CKA matrix with the value in each cell (n/a where it is undefined)."""
    long = pd.DataFrame(
        [{"row": r, "column": c, "cka": (None if np.isnan(v) else float(v))}
         for r, row in zip(result.rows, result.values, strict=True)
         for c, v in zip(result.columns, row, strict=True)]
    )
    base = alt.Chart(long).encode(
        x=alt.X("column:N", sort=list(result.columns), title=column_title,
                axis=alt.Axis(labelAngle=-45, labelLimit=220, labelOverlap=False)),
        y=alt.Y("row:N", sort=list(result.rows), title=row_title, axis=alt.Axis(labelLimit=220)),
    )
    rect = base.mark_rect().encode(
        color=alt.Color("cka:Q", scale=alt.Scale(domain=[0, 1], scheme="viridis"), legend=alt.Legend(title="CKA")),
        tooltip=[alt.Tooltip("row:N", title="layer"), alt.Tooltip("column:N", title="vs"),
                 alt.Tooltip("cka:Q", title="CKA", format=".3f")],
    )
    text = base.mark_text(fontSize=11).encode(
        text=alt.Text("cka:Q", format=".2f"),
        color=alt.condition(alt.datum.cka > 0.6, alt.value("black"), alt.value("white")),
    )
    w = max(160, cell * len(result.columns))
    h = max(160, cell * len(result.rows))
    return (rect + text).properties(width=w, height=h, autosize=alt.AutoSizeParams(type="pad", contains="padding"))


@st.cache_data(max_entries=64, show_spinner=False)
def depth_spec(rid: str, lid: str, blocks: tuple[str, ...], has_selectivity: bool, _summary: pd.DataFrame) -> dict:
    """The depth chart as a Vega-Lite dict, built (and validated) once per content."""
    return depth_chart(_summary, has_selectivity).to_dict()


@st.cache_data(max_entries=64, show_spinner=False)
def cka_spec(key: tuple, row_title: str, column_title: str, _result: CKAResult) -> dict:
    """The CKA heat map as a Vega-Lite dict, built once per result (``key`` identifies it)."""
    return cka_chart(_result, row_title=row_title, column_title=column_title).to_dict()


def actmax_memo() -> dict:
    """This session's activation-maximisation pictures: {(name, weights, size, layer, channel): result}."""
    return st.session_state.setdefault("_ch_actmax", {})


def remember_actmax(key: tuple, result) -> None:
    memo = actmax_memo()
    memo[key] = result
    while len(memo) > ACTMAX_KEEP:
        memo.pop(next(iter(memo)))
