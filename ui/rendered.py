"""Pictures and chart specs the pages draw, cached, so that a rerun sends what it drew last time
without redoing it (issue 10 item 8: the time a click costs).

* :func:`png` — lossless PNG bytes of a uint8 image, cached by its content. ``st.image`` of bytes
  is not re-encoded (Streamlit encodes arrays on every call), and equal bytes keep the same
  ``/media`` URL, so the browser does not fetch the picture again.
* :func:`mosaic`, :func:`hierarchy_tile`, :func:`histogram` — the Feature-maps page's channel
  grid, strip tiles and activation histogram (as a Vega-Lite dict), keyed by plain values: the
  configuration, the image's digest, the layer and the display options; the map itself is not hashed.
* :func:`overlay`, :func:`cell_picker`, :func:`cell_channels`, :func:`filter_pairs` — the heat-map
  overlays (activation and Grad-CAM), the receptive-field cell picker (a Vega-Lite dict with its
  ``cell`` selection), a cell's strongest channels and the first layer's filters with their maps:
  a block switch redraws the page, and without these it re-built an Altair chart and re-encoded
  about 40 pictures that had not changed.

Keys are built by the caller from values that decide the content (a ``BackboneConfig``, a content
digest, a layer name), never from an object's identity, so a hit can never show another image's maps.

Every cache here is scoped to the session (``scope="session"``): the pictures are drawn from the
session's images, which may be an upload, and an upload's pixels stay in its session (Streamlit
drops a session's caches when it disconnects). The bounds are per session.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence

import altair as alt
import numpy as np
from PIL import Image

from . import feature_maps as fm
from . import private_cache

__all__ = ["png", "pngs", "mosaic", "hierarchy_tile", "histogram", "overlay", "cell_picker", "cell_channels",
           "filter_pairs"]


@private_cache.session_data(max_entries=512, max_size="48MB")
def _png(digest: str, _pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(_pixels).save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def png(pixels: np.ndarray) -> bytes:
    """PNG bytes of ``pixels`` (H×W or H×W×3/4 uint8), cached by a hash of every byte (not a sample).

    Example:
        >>> png(np.zeros((4, 4, 3), np.uint8))[:4]
        b'\\x89PNG'
    """
    a = np.ascontiguousarray(np.asarray(pixels))
    if a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    digest = hashlib.blake2b(a.tobytes(), digest_size=16).hexdigest() + f"{a.shape}"
    return _png(digest, a)


@private_cache.session_data(max_entries=32, max_size="48MB")
def mosaic(key: tuple, _fmap: np.ndarray, shown: tuple[int, ...], scale: str, cmap: str, target_cell: int,
           max_cell: int, max_width: int) -> tuple[bytes, int]:
    """:func:`ui.feature_maps.compose_mosaic` of the channels ``shown`` as PNG bytes, and its width in px.

    ``key`` names the map: (configuration, image digest, layer).
    """
    m = fm.compose_mosaic(_fmap, list(shown), scale=scale, cmap=cmap, target_cell=target_cell, max_cell=max_cell,
                          max_width=max_width)
    return png(m.image), int(m.image.shape[1])


@private_cache.session_data(max_entries=128, max_size="16MB")
def hierarchy_tile(key: tuple, _fmap: np.ndarray, size: int, mode: str) -> bytes:
    """:func:`ui.feature_maps.hierarchy_tile` as PNG bytes; ``key`` names the map (configuration, digest, layer)."""
    return png(fm.hierarchy_tile(_fmap, size, mode))


@private_cache.session_data(max_entries=32, max_size="16MB")
def histogram(key: tuple, _fmap: np.ndarray) -> tuple[dict, float, bool]:
    """The activation histogram of a layer as a Vega-Lite dict (data inline), its share of zeros, and
    whether the zeros were left out of the bins; ``key`` names the map (configuration, digest, layer)."""
    hist = fm.activation_histogram(_fmap)
    chart = (
        alt.Chart(hist.table)
        .mark_bar()
        .encode(
            x=alt.X("start:Q", bin="binned", title="activation"),
            x2="end:Q",
            y=alt.Y("count:Q", title="positions × channels"),
            tooltip=[alt.Tooltip("start:Q", format=".3g"), alt.Tooltip("end:Q", format=".3g"), "count:Q"],
        )
        .properties(height=260)
    )
    return chart.to_dict(), hist.zero_fraction, hist.zeros_left_out


def pngs(images: Sequence[np.ndarray]) -> list[bytes]:
    """:func:`png` of each image."""
    return [png(im) for im in images]


@private_cache.session_data(max_entries=32, max_size="24MB")
def overlay(key: tuple, _image: np.ndarray, _heat: np.ndarray, opacity: float, min_side: int) -> bytes:
    """:func:`ui.feature_maps.overlay` of ``_heat`` over ``_image`` (enlarged to ``min_side``) as PNG bytes.

    ``key`` names both inputs (configuration, digest, layer and what the heat map shows).
    """
    return png(fm.overlay(fm.enlarge(_image, min_side), _heat, opacity))


@private_cache.session_data(max_entries=32, max_size="16MB")
def cell_picker(key: tuple, _mean: np.ndarray, px: int) -> dict:
    """A map's mean over channels as a clickable grid of cells: a Vega-Lite dict whose point selection
    ``cell`` carries the clicked ``row`` and ``col``; ``key`` names the map (configuration, digest, layer)."""
    import pandas as pd

    h, w = _mean.shape
    rows, cols = np.mgrid[0:h, 0:w]
    data = pd.DataFrame({"row": rows.ravel(), "col": cols.ravel(), "mean": _mean.ravel()})
    pick = alt.selection_point(name="cell", fields=["row", "col"], on="click")
    chart = (alt.Chart(data).mark_rect()
             .encode(x=alt.X("col:O", axis=None), y=alt.Y("row:O", axis=None),
                     color=alt.Color("mean:Q", scale=alt.Scale(scheme="viridis"), title="mean"),
                     opacity=alt.condition(pick, alt.value(1.0), alt.value(0.55)),
                     tooltip=["row:O", "col:O", alt.Tooltip("mean:Q", format=".3g")])
             .add_params(pick).properties(width=px, height=px))
    return chart.to_dict()


@private_cache.session_data(max_entries=64, max_size="16MB")
def cell_channels(key: tuple, _fmap: np.ndarray, row: int, col: int, k: int, tile_px: int
                  ) -> tuple[list[bytes], list[str], list[str]]:
    """The ``k`` channels most active at cell (``row``, ``col``): each whole map with the cell outlined
    (PNG bytes), its caption and its alt text; ``key`` names the map (configuration, digest, layer)."""
    from . import explain as ex

    h, w = _fmap.shape[:2]
    scale = max(1, tile_px // max(h, w))
    tiles, captions, alts = [], [], []
    for channel, value in ex.top_channels_at(_fmap, row, col, k):
        m = _fmap[..., channel]
        lo, hi = float(m.min()), float(m.max())
        unit = (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)
        tile = fm.colorize(fm.resample_nearest(unit, h * scale, w * scale), "viridis")
        tiles.append(png(ex.outline(tile, (row, col, row + 1, col + 1), scale=scale, width=max(1, scale // 4))))
        captions.append(f"channel {channel} · {value:.3g}")
        alts.append(f"channel {channel} map")
    return tiles, captions, alts


@private_cache.session_data(max_entries=16, max_size="8MB")
def filter_pairs(key: tuple, _tiles: np.ndarray, _maps: np.ndarray, tile_px: int) -> list[bytes]:
    """Each first-layer filter (an RGB tile) followed by its map on the image, as PNG bytes;
    ``key`` names both (configuration, digest, layer)."""
    pairs = []
    for c, tile in enumerate(_tiles):
        pairs.append(png(fm.resample_nearest(tile, tile_px, tile_px)))
        pairs.append(png(fm.hierarchy_tile(_maps[..., c:c + 1], tile_px, "mean", "gray")))
    return pairs
