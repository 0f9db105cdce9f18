"""What each channel of a layer responds to, and how healthy the layer is, from pooled features.

Everything here works on the pooled (N, C) vectors the app already has for the whole image set,
so no forward pass is needed to rank images or to judge a layer:

* :func:`channel_stats` — per channel: how often it fires, whether it is dead (zero on every
  image), always on (fires on every image), and with labels its class selectivity
  (Morcos et al., 2018): the class with the highest mean activation and the index
  ``(μ_max − μ_rest) / (μ_max + μ_rest)`` on non-negative activations.
* :func:`top_images` — the k images with the highest (and lowest) max-pooled activation of a
  channel, and, given the raw maps of just those images, where in the map the channel peaks.
* :func:`crop_window` — the input region around that peak to show: the cell's receptive field.

A channel "fires" on an image when its max-pooled value is above zero. Layers whose outputs are
not rectified (a convolution before its BatchNorm/ReLU) can be negative everywhere without
being broken; their silent channels are reported as ``"never positive"``, not ``"dead"``.

Example:
    >>> mx = np.array([[0.0, 2.0, 1.0], [0.0, 3.0, 0.0], [0.0, 1.0, 0.5]])
    >>> stats = channel_stats(mx)
    >>> [s.status for s in stats.channels]
    ['dead', 'always on', 'active']
    >>> [round(s.sparsity, 2) for s in stats.channels]
    [1.0, 0.0, 0.33]
    >>> top_images(mx, channel=1, k=2).highest_indices
    (1, 0)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import LayerExplorerError
from .receptive_field import ReceptiveField, cell_region

__all__ = [
    "ChannelError",
    "ChannelStat",
    "ChannelStats",
    "RankedImage",
    "TopImages",
    "channel_stats",
    "crop_window",
    "stats_frame",
    "strongest_positions",
    "top_images",
]

_EPS = 1e-7  # float32 noise: a value this close to 0 has not fired


class ChannelError(LayerExplorerError):
    """Pooled features or a channel index that cannot be used as asked."""


@dataclass(frozen=True)
class ChannelStat:
    """One channel of one layer over the image set.

    ``status`` is ``"dead"`` (zero on every image of a rectified layer), ``"never positive"``
    (a layer that is not rectified, negative or zero everywhere), ``"always on"`` (fires on
    every image) or ``"active"``. ``selectivity`` is NaN when it is not defined (no labels,
    fewer than two classes, or a silent channel); ``top_class`` is then None.
    """

    channel: int
    status: str
    fires_on: float  # share of images on which the channel's max is > 0
    sparsity: float  # share of images on which it stays at zero or below: 1 − fires_on
    max_value: float  # its highest max-pooled value over the set
    mean_value: float  # mean of the activation used for selectivity (avg-pooled if given)
    top_class: str | None = None
    selectivity: float = float("nan")


@dataclass(frozen=True)
class ChannelStats:
    """Every channel of one layer, plus the layer-level summary the depth chart plots."""

    channels: tuple[ChannelStat, ...]
    n_images: int
    rectified: bool
    has_selectivity: bool

    @property
    def dead_share(self) -> float:
        """Share of channels that never fire on this set (dead or never positive)."""
        return sum(s.status in ("dead", "never positive") for s in self.channels) / max(1, len(self.channels))

    @property
    def always_on_share(self) -> float:
        return sum(s.status == "always on" for s in self.channels) / max(1, len(self.channels))

    @property
    def mean_selectivity(self) -> float:
        """Mean selectivity index over the channels where it is defined (NaN when none)."""
        vals = [s.selectivity for s in self.channels if not math.isnan(s.selectivity)]
        return float(np.mean(vals)) if vals else float("nan")

    def order(self, by: str = "max_value") -> list[int]:
        """Channel indices, most interesting first: by ``max_value``, ``selectivity`` or ``fires_on``."""
        if by not in ("max_value", "selectivity", "fires_on", "channel"):
            raise ChannelError(f"cannot order channels by {by!r}; use max_value, selectivity, fires_on or channel.")
        if by == "channel":
            return [s.channel for s in self.channels]

        def key(s: ChannelStat):
            v = getattr(s, by)
            return (math.isnan(v), -v if not math.isnan(v) else 0.0, s.channel)

        return [s.channel for s in sorted(self.channels, key=key)]


def _check_features(x, what: str) -> np.ndarray:
    arr = np.asarray(x, np.float64)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ChannelError(f"{what} must be (images, channels) pooled features with at least one of each; "
                           f"got shape {arr.shape}.")
    if not np.isfinite(arr).all():
        raise ChannelError(f"{what} holds NaN or infinite values.")
    return arr


def channel_stats(
    max_pooled,
    labels: Sequence[str | None] | None = None,
    *,
    mean_pooled=None,
    rectified: bool | None = None,
) -> ChannelStats:
    """Health and class selectivity of every channel, from max-pooled (and avg-pooled) features.

    Args:
        max_pooled: (N, C) max-pooled features; a channel fires on an image when this is > 0.
        labels: one class per row (None for unlabelled rows, which selectivity ignores).
        mean_pooled: (N, C) avg-pooled features; the activation selectivity is computed on
            (clipped at 0), as in Morcos et al. 2018. Defaults to ``max_pooled``.
        rectified: whether the layer's outputs are ≥ 0 by construction (after a ReLU). Default:
            inferred from the data (no negative value seen).

    >>> mx = np.array([[2.0, 0.0], [0.0, 0.0], [2.0, 0.0], [0.0, 0.0]])
    >>> s = channel_stats(mx, ["a", "b", "a", "b"]).channels[0]
    >>> s.top_class, s.selectivity
    ('a', 1.0)
    """
    mx = _check_features(max_pooled, "max_pooled")
    mean = mx if mean_pooled is None else _check_features(mean_pooled, "mean_pooled")
    if mean.shape != mx.shape:
        raise ChannelError(f"mean_pooled has shape {mean.shape} but max_pooled has {mx.shape}; "
                           "pass both poolings of the same layer and images.")
    n, c = mx.shape
    if rectified is None:
        rectified = bool(mx.min() >= -_EPS and mean.min() >= -_EPS)
    fires = mx > _EPS
    fires_on = fires.mean(axis=0)

    sel = np.full(c, np.nan)
    top: list[str | None] = [None] * c
    has_sel = False
    if labels is not None:
        if len(labels) != n:
            raise ChannelError(f"{len(labels)} labels for {n} rows of features; pass one label per image (None if unknown).")
        classes = sorted({lab for lab in labels if lab is not None})
        if len(classes) >= 2:
            has_sel = True
            act = np.clip(mean, 0.0, None)  # selectivity is defined on non-negative activations
            lab = np.array([classes.index(y) if y is not None else -1 for y in labels])
            means = np.stack([act[lab == k].mean(axis=0) for k in range(len(classes))])  # (K, C)
            best = means.argmax(axis=0)
            mu_max = means[best, np.arange(c)]
            mu_rest = (means.sum(axis=0) - mu_max) / (len(classes) - 1)
            denom = mu_max + mu_rest
            ok = (denom > _EPS) & fires.any(axis=0)
            sel[ok] = (mu_max[ok] - mu_rest[ok]) / denom[ok]
            top = [classes[best[j]] if ok[j] else None for j in range(c)]

    channels = []
    for j in range(c):
        if not fires[:, j].any():
            status = "dead" if rectified else "never positive"
        elif fires[:, j].all():
            status = "always on"
        else:
            status = "active"
        channels.append(ChannelStat(j, status, float(fires_on[j]), float(1.0 - fires_on[j]), float(mx[:, j].max()),
                                    float(mean[:, j].mean()), top[j], float(sel[j])))
    return ChannelStats(tuple(channels), n, rectified, has_sel)


def stats_frame(stats: ChannelStats):
    """The per-channel table as a DataFrame (one row per channel), for sorting and CSV.

    >>> stats_frame(channel_stats(np.ones((3, 2)))).columns.tolist()
    ['channel', 'status', 'fires on', 'sparsity', 'max', 'mean', 'top class', 'selectivity']
    """
    import pandas as pd

    return pd.DataFrame(
        {
            "channel": [s.channel for s in stats.channels],
            "status": [s.status for s in stats.channels],
            "fires on": [s.fires_on for s in stats.channels],
            "sparsity": [s.sparsity for s in stats.channels],
            "max": [s.max_value for s in stats.channels],
            "mean": [s.mean_value for s in stats.channels],
            "top class": [s.top_class for s in stats.channels],
            "selectivity": [s.selectivity for s in stats.channels],
        }
    )


@dataclass(frozen=True)
class RankedImage:
    """One image ranked for a channel: its row in the features, its value, where the map peaks."""

    index: int
    value: float
    position: tuple[int, int] | None = None  # (row, col) in the feature map; None until maps are given


@dataclass(frozen=True)
class TopImages:
    """The k highest and k lowest images of one channel (highest first; lowest lowest first)."""

    channel: int
    highest: tuple[RankedImage, ...]
    lowest: tuple[RankedImage, ...]

    @property
    def highest_indices(self) -> tuple[int, ...]:
        return tuple(r.index for r in self.highest)

    @property
    def lowest_indices(self) -> tuple[int, ...]:
        return tuple(r.index for r in self.lowest)

    @property
    def indices(self) -> tuple[int, ...]:
        """Every ranked row once (highest then lowest): the images whose maps are needed."""
        return tuple(dict.fromkeys(self.highest_indices + self.lowest_indices))


def strongest_positions(maps) -> np.ndarray:
    """For (m, H, W, C) maps, the (row, col) of each channel's maximum: an (m, C, 2) int array.

    >>> m = np.zeros((1, 3, 4, 2)); m[0, 2, 1, 0] = 5; m[0, 0, 3, 1] = 1
    >>> strongest_positions(m)[0].tolist()
    [[2, 1], [0, 3]]
    """
    arr = np.asarray(maps)
    if arr.ndim != 4:
        raise ChannelError(f"maps must be (images, H, W, C); got shape {arr.shape}.")
    m, h, w, c = arr.shape
    flat = arr.reshape(m, h * w, c).argmax(axis=1)  # (m, C)
    return np.stack([flat // w, flat % w], axis=-1).astype(int)


def top_images(
    max_pooled,
    channel: int,
    k: int = 9,
    *,
    maps: Callable[[Sequence[int]], np.ndarray] | None = None,
) -> TopImages:
    """The k images with the highest max-pooled activation of ``channel``, and the k lowest.

    Ranking uses only ``max_pooled`` (N, C): no forward pass. Ties keep the image order. When
    ``maps`` is given, ``maps(indices)`` must return those images' raw (m, H, W, C) maps of the
    same layer (one small forward pass of the 2k images); each ranked image then carries the
    position of the channel's peak, for cropping.

    >>> mx = np.array([[1.0], [5.0], [3.0], [0.0]])
    >>> t = top_images(mx, 0, k=2)
    >>> t.highest_indices, t.lowest_indices, t.highest[0].value
    ((1, 2), (3, 0), 5.0)
    """
    mx = _check_features(max_pooled, "max_pooled")
    n, c = mx.shape
    if not isinstance(channel, (int, np.integer)) or not 0 <= int(channel) < c:
        raise ChannelError(f"channel {channel!r} is out of range: this layer has {c} channels (0 … {c - 1}).")
    if k < 1:
        raise ChannelError(f"k must be at least 1; got {k}.")
    channel, k = int(channel), min(int(k), n)
    col = mx[:, channel]
    order = np.argsort(-col, kind="stable")
    hi = order[:k].tolist()
    lo = np.argsort(col, kind="stable")[:k].tolist()
    pos: dict[int, tuple[int, int]] = {}
    if maps is not None:
        wanted = list(dict.fromkeys(hi + lo))
        raw = np.asarray(maps(wanted))
        if raw.ndim != 4 or raw.shape[0] != len(wanted) or raw.shape[-1] != c:
            raise ChannelError(f"maps({len(wanted)} images) returned shape {raw.shape}; expected "
                               f"({len(wanted)}, H, W, {c}) raw maps of the same layer.")
        found = strongest_positions(raw[..., channel : channel + 1])[:, 0]
        pos = {i: (int(r), int(q)) for i, (r, q) in zip(wanted, found, strict=True)}
    return TopImages(
        channel,
        tuple(RankedImage(i, float(col[i]), pos.get(i)) for i in hi),
        tuple(RankedImage(i, float(col[i]), pos.get(i)) for i in lo),
    )


def crop_window(
    position: tuple[int, int] | None,
    map_size: tuple[int, int],
    image_size: tuple[int, int],
    field: ReceptiveField | None = None,
    *,
    min_side: int = 16,
) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) in image pixels: the input region behind a map position.

    The one place crops are decided. With the layer's ``field`` (from
    :func:`extractor.receptive_field.receptive_fields`) it is the cell's theoretical receptive
    field, centred on that cell and clipped to the image (:func:`~extractor.receptive_field.cell_region`),
    widened to at least ``min_side`` pixels around its centre so a shallow layer's tiny field can
    still be seen. Without one (a layer the graph walk does not model) it falls back to three
    effective strides (image size / map size) around the cell. ``position=None`` gives the
    whole image. ``bottom``/``right`` are exclusive, ready for slicing.

    >>> rf = ReceptiveField((44, 44), (8, 8), (3.5, 3.5))
    >>> crop_window((3, 3), (8, 8), (64, 64), rf)
    (6, 6, 50, 50)
    >>> crop_window((0, 0), (8, 8), (64, 64), rf)
    (0, 0, 26, 26)
    >>> crop_window((1, 2), (8, 8), (64, 64))
    (0, 8, 24, 32)
    """
    ih, iw = int(image_size[0]), int(image_size[1])
    if position is None:
        return 0, 0, ih, iw
    if field is not None:
        top, left, bottom, right = cell_region(field, int(position[0]), int(position[1]), (ih, iw))
        if bottom - top >= min(ih, min_side) and right - left >= min(iw, min_side):
            return top, left, bottom, right
        centre = ((top + bottom) / 2, (left + right) / 2)
        sides = (max(bottom - top, min(ih, min_side)), max(right - left, min(iw, min_side)))
    else:
        sy, sx = ih / max(1, int(map_size[0])), iw / max(1, int(map_size[1]))  # effective stride
        centre = ((position[0] + 0.5) * sy, (position[1] + 0.5) * sx)
        side = max(min_side, round(3 * max(sy, sx)))
        sides = (int(min(ih, side)), int(min(iw, side)))
    (side_y, side_x), (cy, cx) = sides, centre
    top = int(min(max(0, round(cy - side_y / 2)), ih - side_y))
    left = int(min(max(0, round(cx - side_x / 2)), iw - side_x))
    return top, left, top + side_y, left + side_x
