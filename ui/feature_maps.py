"""Pictures and numbers from one layer's feature maps: plain NumPy/Matplotlib, no Streamlit.

Everything here takes the raw map of ONE image, an ``(H, W, C)`` float array, and returns
arrays or DataFrames a page can show as they are. Rendering is one image per figure: the
channel grid is tiled in NumPy and coloured in a single colormap call over the whole mosaic
(no Matplotlib subplots), so 512 channels take milliseconds, not seconds.

Example:
    >>> fmap = np.random.default_rng(0).random((8, 8, 32)).astype(np.float32)
    >>> m = compose_mosaic(fmap, channel_order(fmap)[:16], scale="channel")
    >>> m.image.dtype, m.image.shape[2], len(m.channels)
    (dtype('uint8'), 3, 16)
    >>> channel_stats(fmap).columns.tolist()
    ['channel', 'mean', 'max', 'zero_fraction']
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from extractor.feature_health import FeatureHealth, check_features

__all__ = [
    "SCALES",
    "COLORMAPS",
    "Mosaic",
    "Histogram",
    "check_map",
    "channel_order",
    "resample_nearest",
    "display_cell",
    "normalise",
    "compose_mosaic",
    "mean_map",
    "upsample_bilinear",
    "colorize",
    "overlay",
    "enlarge",
    "frame",
    "channel_stats",
    "activation_histogram",
    "hierarchy_tile",
    "CONTENT_PX",
    "colorbar",
    "stage_captions",
    "map_health",
]

#: Width of the page's content column (Streamlit's centred layout): the mosaic is composed to fit
#: it at its natural size, so it never spills out of the column nor gets shrunk and blurred.
CONTENT_PX = 700

SCALES = ("channel", "shared")  # per-channel min–max, or one min–max for the whole layer
COLORMAPS = ("viridis", "magma", "inferno", "gray")
_BACKGROUND = 255  # gaps between cells: white, so they never read as "zero activation"


@dataclass(frozen=True)
class Mosaic:
    """One RGB image holding many channel maps, row by row, and where each channel went."""

    image: np.ndarray  # (H, W, 3) uint8
    channels: list[int]  # channel index of each cell, in reading order
    columns: int
    rows: int
    cell: tuple[int, int]  # (height, width) of one cell in pixels
    gap: int

    def cell_origin(self, position: int) -> tuple[int, int]:
        """Top-left pixel (row, column) of the ``position``-th cell."""
        r, c = divmod(position, self.columns)
        return r * (self.cell[0] + self.gap), c * (self.cell[1] + self.gap)


@dataclass(frozen=True)
class Histogram:
    """Counts of a layer's activations; zeros are counted apart when they would swamp the rest."""

    table: pd.DataFrame  # columns: start, end, count
    zero_fraction: float  # fraction of values exactly 0 (ReLU switched off)
    zeros_left_out: bool  # True when the table holds the non-zero values only


def check_map(fmap) -> np.ndarray:
    """An ``(H, W, C)`` float32 view of ``fmap``; a leading batch axis of 1 is dropped."""
    arr = np.asarray(fmap)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 3 or min(arr.shape) < 1:
        raise ValueError(f"expected one feature map of shape (H, W, C); got shape {arr.shape}")
    return arr.astype(np.float32, copy=False)


def channel_order(fmap) -> np.ndarray:
    """Channel indices sorted by mean activation, highest first (ties keep index order)."""
    means = check_map(fmap).mean(axis=(0, 1))
    return np.argsort(-means, kind="stable")


def resample_nearest(a: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of the first two axes: crisp blocks, no invented values."""
    h, w = a.shape[:2]
    rows = np.minimum((np.arange(height) * h) // height, h - 1)
    cols = np.minimum((np.arange(width) * w) // width, w - 1)
    return a[rows][:, cols]


def display_cell(h: int, w: int, target: int = 64, max_cell: int = 128) -> tuple[int, int]:
    """Pixel size of one cell: small maps grow by a whole factor until about ``target`` px,
    large ones shrink to at most ``max_cell`` px on the long side (aspect ratio kept)."""
    longest = max(h, w)
    if longest < target:
        k = max(1, math.ceil(target / longest))
        while k > 1 and longest * k > max_cell:
            k -= 1
        return h * k, w * k
    if longest > max_cell:
        s = max_cell / longest
        return max(1, round(h * s)), max(1, round(w * s))
    return h, w


def normalise(fmap, channels: Sequence[int] | None = None, scale: str = "channel") -> np.ndarray:
    """Selected channels mapped to [0, 1]: each on its own range (``"channel"``) or all on the
    whole layer's range (``"shared"``, so brightness compares across channels). A flat channel
    becomes 0."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}; got {scale!r}")
    arr = check_map(fmap)
    sel = arr if channels is None else arr[..., np.asarray(channels, dtype=int)]
    if scale == "channel":
        lo = sel.min(axis=(0, 1), keepdims=True)
        hi = sel.max(axis=(0, 1), keepdims=True)
    else:
        lo, hi = np.float32(arr.min()), np.float32(arr.max())
    span = hi - lo
    safe = np.where(span > 0, span, 1.0)
    return np.where(span > 0, (sel - lo) / safe, 0.0).astype(np.float32)


def colorize(values: np.ndarray, cmap: str = "viridis") -> np.ndarray:
    """Values in [0, 1] (any shape) to RGB uint8 with one Matplotlib colormap call; NaN -> white."""
    import matplotlib

    v = np.asarray(values, dtype=np.float32)
    bad = ~np.isfinite(v)
    rgb = matplotlib.colormaps[cmap](np.clip(np.nan_to_num(v), 0.0, 1.0), bytes=True)[..., :3]
    if bad.any():
        rgb[bad] = _BACKGROUND
    return np.ascontiguousarray(rgb)


def compose_mosaic(
    fmap,
    channels: Sequence[int] | None = None,
    *,
    scale: str = "channel",
    cmap: str = "viridis",
    columns: int | None = None,
    target_cell: int = 64,
    max_cell: int = 128,
    max_width: int = 1400,
    gap: int = 2,
    labels: bool = True,
) -> Mosaic:
    """Tile the chosen channels (default: all, by mean activation) into one coloured image.

    Cells are nearest-neighbour resized (:func:`display_cell`), normalised with ``scale``,
    laid out row by row, and the whole canvas goes through the colormap at once. With
    ``labels``, each cell gets its channel index in the top-left corner when it is big enough.
    """
    arr = check_map(fmap)
    chans = [int(c) for c in (channel_order(arr) if channels is None else channels)]
    if not chans:
        raise ValueError("no channel to show; pass at least one channel index")
    h, w, n_channels = arr.shape
    bad = [c for c in chans if not 0 <= c < n_channels]
    if bad:
        raise ValueError(f"channel {bad[0]} does not exist; this layer has channels 0..{n_channels - 1}")
    ch, cw = display_cell(h, w, target_cell, max_cell)
    k = len(chans)
    if columns is None:
        fit = max(1, (max_width + gap) // (cw + gap))
        columns = min(k, fit, max(1, math.ceil(math.sqrt(2 * k))))
    columns = max(1, min(int(columns), k))
    rows = math.ceil(k / columns)

    norm = normalise(arr, chans, scale)  # (h, w, k)
    cells = resample_nearest(norm, ch, cw)  # (ch, cw, k)
    canvas = np.full((rows * (ch + gap) - gap, columns * (cw + gap) - gap), np.nan, np.float32)
    for i in range(k):
        r, c = divmod(i, columns)
        y, x = r * (ch + gap), c * (cw + gap)
        canvas[y : y + ch, x : x + cw] = cells[..., i]
    image = colorize(canvas, cmap)
    mosaic = Mosaic(image, chans, columns, rows, (ch, cw), gap)
    if labels and min(ch, cw) >= 24:
        mosaic = Mosaic(_label_cells(mosaic), chans, columns, rows, (ch, cw), gap)
    return mosaic


def _label_cells(mosaic: Mosaic) -> np.ndarray:
    """Channel numbers drawn in each cell's corner on a dark tab (readable on any colormap)."""
    from PIL import Image, ImageDraw, ImageFont

    im = Image.fromarray(mosaic.image)
    draw = ImageDraw.Draw(im)
    try:
        font = ImageFont.load_default(size=12)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        font = ImageFont.load_default()
    for pos, channel in enumerate(mosaic.channels):
        y, x = mosaic.cell_origin(pos)
        text = str(channel)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        draw.rectangle([x, y, x + right - left + 3, y + bottom - top + 3], fill=(0, 0, 0))
        draw.text((x + 2 - left, y + 2 - top), text, fill=(255, 255, 255), font=font)
    return np.asarray(im).copy()


def mean_map(fmap) -> np.ndarray:
    """The (H, W) mean over channels: where the layer as a whole responds."""
    return check_map(fmap).mean(axis=2)


def upsample_bilinear(map2d: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a 2-D float map to (height, width) (Pillow's 32-bit float mode)."""
    from PIL import Image

    m = np.ascontiguousarray(np.asarray(map2d, dtype=np.float32))
    if m.shape == (height, width):
        return m.copy()
    im = Image.fromarray(m, mode="F").resize((int(width), int(height)), Image.Resampling.BILINEAR)
    return np.asarray(im, dtype=np.float32).copy()


def _unit(m: np.ndarray) -> np.ndarray:
    lo, hi = float(m.min()), float(m.max())
    return np.zeros_like(m, dtype=np.float32) if hi <= lo else ((m - lo) / (hi - lo)).astype(np.float32)


def overlay(image: np.ndarray, heat: np.ndarray, opacity: float = 0.5, cmap: str = "inferno") -> np.ndarray:
    """Blend a heat map (any size; bilinearly resized, min–max scaled) over an RGB image.

    ``opacity`` 0 gives the image back, 1 the heat map alone.

    Example:
        >>> overlay(np.zeros((64, 64, 3), np.uint8), np.eye(4), 0.5).shape
        (64, 64, 3)
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"overlay needs an (H, W, 3) image; got shape {img.shape}")
    a = float(np.clip(opacity, 0.0, 1.0))
    h, w = img.shape[:2]
    heat_rgb = colorize(_unit(upsample_bilinear(heat, h, w)), cmap).astype(np.float32)
    out = (1.0 - a) * img.astype(np.float32) + a * heat_rgb
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def enlarge(image: np.ndarray, min_side: int = 256) -> np.ndarray:
    """Grow a small image by a whole factor (nearest neighbour) so its short side is at least
    ``min_side``; larger images come back unchanged. Pixels stay visible as pixels."""
    img = np.asarray(image)
    short = min(img.shape[:2])
    k = max(1, math.ceil(min_side / max(short, 1)))
    if k == 1:
        return img
    return np.repeat(np.repeat(img, k, axis=0), k, axis=1)


def frame(image: np.ndarray, width: int = 4, color: tuple[int, int, int] = (47, 111, 223)) -> np.ndarray:
    """A border of ``width`` pixels around an RGB image (the selected thumbnail in a strip)."""
    img = np.asarray(image)
    out = np.empty((img.shape[0] + 2 * width, img.shape[1] + 2 * width, 3), np.uint8)
    out[...] = np.asarray(color, np.uint8)
    out[width : width + img.shape[0], width : width + img.shape[1]] = img
    return out


def channel_stats(fmap) -> pd.DataFrame:
    """One row per channel, highest mean first: ``channel``, ``mean``, ``max``, ``zero_fraction``
    (share of positions exactly 0, e.g. where a ReLU switched the channel off)."""
    arr = check_map(fmap)
    order = channel_order(arr)
    flat = arr.reshape(-1, arr.shape[2])
    table = pd.DataFrame(
        {
            "channel": order.astype(int),
            "mean": flat.mean(axis=0)[order].astype(float),
            "max": flat.max(axis=0)[order].astype(float),
            "zero_fraction": (flat == 0).mean(axis=0)[order].astype(float),
        }
    )
    return table.reset_index(drop=True)


def activation_histogram(fmap, bins: int = 40, zero_threshold: float = 0.2) -> Histogram:
    """Histogram of every activation of the layer.

    When more than ``zero_threshold`` of the values are exactly 0 (typical after a ReLU), the
    zeros are left out of the bins (their share is reported) so the shape of the rest shows.
    """
    values = check_map(fmap).ravel()
    zero_fraction = float((values == 0).mean())
    left_out = zero_fraction > zero_threshold
    data = values[values != 0] if left_out else values
    if data.size == 0:
        data = values
        left_out = False
    counts, edges = np.histogram(data, bins=bins)
    table = pd.DataFrame({"start": edges[:-1].astype(float), "end": edges[1:].astype(float), "count": counts.astype(int)})
    return Histogram(table, zero_fraction, left_out)


def hierarchy_tile(fmap, size: int = 160, mode: str = "mean", cmap: str = "viridis") -> np.ndarray:
    """One picture per layer for the edges-to-abstractions strip: the mean over channels
    (``"mean"``) or the most active channel (``"top"``), min–max scaled and nearest-resized so
    that its long side is ``size`` (coarse maps stay visibly coarse)."""
    arr = check_map(fmap)
    if mode == "mean":
        m = arr.mean(axis=2)
    elif mode == "top":
        m = arr[..., int(channel_order(arr)[0])]
    else:
        raise ValueError(f"mode must be 'mean' or 'top'; got {mode!r}")
    h, w = m.shape
    s = size / max(h, w)
    return colorize(resample_nearest(_unit(m), max(1, round(h * s)), max(1, round(w * s))), cmap)


def colorbar(cmap: str = "viridis", width: int = 240, height: int = 12) -> np.ndarray:
    """A horizontal colour bar, low values left: the key to a mosaic or heat map drawn with ``cmap``.

    Example:
        >>> bar = colorbar("gray", 10, 2)
        >>> bar.shape, int(bar[0, 0, 0]), int(bar[0, -1, 0])
        ((2, 10, 3), 0, 255)
    """
    ramp = np.tile(np.linspace(0.0, 1.0, int(width), dtype=np.float32), (int(height), 1))
    return colorize(ramp, cmap)


def stage_captions(n_layers: int) -> list[str]:
    """One line per tile of the edges-to-abstractions strip: the input, then each stage by depth.

    Example:
        >>> stage_captions(3)
        ['the pixels', 'edges and colours', 'textures and motifs', 'object-level patterns']
    """
    n = int(n_layers)
    if n <= 0:
        return ["the pixels"]
    out = ["the pixels"]
    for i in range(n - 1):
        share = (i + 1) / n  # where the stage sits in depth, 0..1 (the last one is 1)
        out.append("edges and colours" if i == 0 else "textures and motifs" if share < 0.75 else "parts of objects")
    out.append("object-level patterns" if n > 1 else "edges and colours")
    return out


def map_health(fmap, name: str, *, random_weights: bool, batchnorm: bool) -> FeatureHealth:
    """Whether one image's map at a layer has collapsed (every value below 1e-5 in size).

    The whole map is one row for :func:`extractor.feature_health.check_features` (one image: only
    the scale can be judged, not the spread across images).
    """
    arr = check_map(fmap)
    return check_features(arr.reshape(1, -1), name, random_weights=random_weights, batchnorm=batchnorm)
