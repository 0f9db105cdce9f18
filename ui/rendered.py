"""Pictures and chart specs the pages draw, cached, so that a rerun sends what it drew last time
without redoing it (issue 10 item 8: the time a click costs).

* :func:`png` — lossless PNG bytes of a uint8 image, cached by its content. ``st.image`` of bytes
  is not re-encoded (Streamlit encodes arrays on every call), and equal bytes keep the same
  ``/media`` URL, so the browser does not fetch the picture again.
* :func:`mosaic`, :func:`hierarchy_tile`, :func:`histogram` — the Feature-maps page's channel
  grid, strip tiles and activation histogram (as a Vega-Lite dict), keyed by plain values: the
  configuration, the image's digest, the layer and the display options; the map itself is not hashed.

Keys are built by the caller from values that decide the content (a ``BackboneConfig``, a content
digest, a layer name), never from an object's identity, so a hit can never show another image's maps.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence

import altair as alt
import numpy as np
import streamlit as st
from PIL import Image

from . import feature_maps as fm

__all__ = ["png", "mosaic", "hierarchy_tile", "histogram"]


@st.cache_data(max_entries=512, max_size="128MB", show_spinner=False)
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


@st.cache_data(max_entries=32, max_size="96MB", show_spinner=False)
def mosaic(key: tuple, _fmap: np.ndarray, shown: tuple[int, ...], scale: str, cmap: str, target_cell: int,
           max_cell: int, max_width: int) -> tuple[bytes, int]:
    """:func:`ui.feature_maps.compose_mosaic` of the channels ``shown`` as PNG bytes, and its width in px.

    ``key`` names the map: (configuration, image digest, layer).
    """
    m = fm.compose_mosaic(_fmap, list(shown), scale=scale, cmap=cmap, target_cell=target_cell, max_cell=max_cell,
                          max_width=max_width)
    return png(m.image), int(m.image.shape[1])


@st.cache_data(max_entries=128, max_size="32MB", show_spinner=False)
def hierarchy_tile(key: tuple, _fmap: np.ndarray, size: int, mode: str) -> bytes:
    """:func:`ui.feature_maps.hierarchy_tile` as PNG bytes; ``key`` names the map (configuration, digest, layer)."""
    return png(fm.hierarchy_tile(_fmap, size, mode))


@st.cache_data(max_entries=32, show_spinner=False)
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
