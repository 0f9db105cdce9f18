"""Cached computation behind the explanation views: class evidence, Grad-CAM, receptive fields, filters.

Caching policy (see :mod:`ui.cache`): the classifier, its compiled Grad-CAM functions and the
receptive-field table live in the shared model pool (:data:`ui.inference_slot.MODELS`), keyed by
the model's part of the :class:`~ui.config.BackboneConfig` (name, weights, input size) and in the
*group* of that backbone: they count against the server's "maximum models kept", go with the
backbone when it is evicted (a classifier holds its backbone's network, so keeping it elsewhere
would keep an evicted network alive), and are rebuilt on demand. Heat maps and probabilities are
data keyed by those plus the image digest, layer, class and method (an upload's in that session's
own cache, :mod:`ui.private_cache`). Display options (opacity,
the cell picked) are not in any key: they never recompute Grad-CAM. A user's uploaded model is
never put in a cache shared between sessions.

Example:
    >>> tiles = filter_tiles(np.random.default_rng(0).normal(size=(3, 3, 3, 8)))
    >>> tiles.shape, tiles.dtype
    ((8, 3, 3, 3), dtype('uint8'))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from extractor.explain import ClassEvidence, Classifier, NoClassifier, class_evidence, find_classifier, grad_cam
from extractor.layers import SEPARATOR
from extractor.receptive_field import ReceptiveField, cell_region, receptive_fields

from . import cache, calibrated, custom_model, private_cache
from .config import BackboneConfig
from .inference_slot import inference_slot, shared_model

__all__ = [
    "CamView",
    "classifier_for",
    "evidence_for",
    "first_conv",
    "filter_tiles",
    "gradcam_for",
    "outline",
    "receptive_fields_for",
    "region_for",
    "top_channels_at",
]


@dataclass(frozen=True)
class CamView:
    """One image's Grad-CAM, plain arrays only (what the cache stores)."""

    heatmap: np.ndarray  # (H, W) float32 in [0, 1], at the network's input size
    cam: np.ndarray  # (h, w) at the layer's resolution
    class_index: int
    flat: bool


def _model_key(config: BackboneConfig) -> BackboneConfig:
    """The part of a configuration that decides the Keras model (precision and resize do not)."""
    return BackboneConfig(config.name, config.weights, config.input_size)


def _session_held(config: BackboneConfig) -> bool:
    """An uploaded model, or random weights calibrated on this session's images: never in the shared pool."""
    return custom_model.is_custom(config.name) or calibrated.is_calibrated(config)


def classifier_for(config: BackboneConfig) -> Classifier | NoClassifier:
    """The backbone's classifier head (or why there is none), built once per (name, weights, size)."""
    if _session_held(config):
        backbone, _ = cache.load_backbone_cached(config)
        return find_classifier(backbone)  # cheap: the uploaded model is its own head
    return _shared_classifier(_model_key(config))


def _group(config: BackboneConfig) -> tuple:
    """The pool group of the backbone of ``config`` (the key ``ui.cache`` files the network under)."""
    return ("backbone", config.name, config.weights, tuple(config.input_size))


def _shared_classifier(config: BackboneConfig) -> Classifier | NoClassifier:
    def build():
        backbone, _ = cache.load_backbone_cached(config)  # outside the slot: it may be another session's build
        with st.spinner("Loading the classifier head…"), inference_slot():
            return find_classifier(backbone)

    return shared_model(("classifier", config), build, group=_group(config))


def _compiled(config: BackboneConfig) -> dict:
    """Compiled Grad-CAM functions of one classifier, by (layer, method); filled by grad_cam.

    In the classifier's group, so an evicted classifier never leaves its compiled functions (and
    the network they hold) behind.
    """
    return shared_model(("gradcam-functions", config), dict, group=_group(config))


@private_cache.data(max_entries=64, max_size="64MB")
def evidence_for(config: BackboneConfig, digest: str, _item) -> ClassEvidence | None:
    """Class probabilities for one image (None when the backbone has no classifier).

    Keyed by the configuration and the image's content ``digest``; ``_item`` is not hashed.
    """
    clf = classifier_for(config)
    if isinstance(clf, NoClassifier):
        return None
    view = cache.network_view(_item, config.input_size, config.resize)
    with inference_slot():
        return class_evidence(clf, view[None])


@private_cache.data(max_entries=64, max_size="128MB")
def gradcam_for(config: BackboneConfig, digest: str, layer: str, class_index: int, method: str, _item) -> CamView:
    """Grad-CAM of one image for one layer, class (-1: predicted) and method."""
    clf = classifier_for(config)
    view = cache.network_view(_item, config.input_size, config.resize)
    compiled = None if _session_held(config) else _compiled(_model_key(config))
    with inference_slot():
        result = grad_cam(clf, view[None], layer=layer, class_=None if class_index < 0 else int(class_index),
                          method=method, _cache=compiled)
    return CamView(result.heatmaps[0], result.cams[0], int(result.classes[0]), bool(result.flat))


# --------------------------------------------------------------------------------------------
# receptive fields


def region_for(rf: ReceptiveField, row: int, col: int, input_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of the input region one cell sees, clipped at the image borders."""
    return cell_region(rf, int(row), int(col), tuple(input_size))


def outline(image: np.ndarray, box: tuple[int, int, int, int], scale: float = 1.0, width: int = 3,
            color: tuple[int, int, int] = (255, 64, 32)) -> np.ndarray:
    """A copy of ``image`` with ``box`` (in network-input pixels, scaled by ``scale``) outlined.

    Example:
        >>> out = outline(np.zeros((10, 10, 3), np.uint8), (2, 2, 6, 6), width=1)
        >>> int(out[2, 3, 0]), int(out[4, 4, 0])
        (255, 0)
    """
    out = np.array(image, copy=True)
    h, w = out.shape[:2]
    top, left, bottom, right = (int(round(v * scale)) for v in box)
    top, left = max(0, min(top, h - 1)), max(0, min(left, w - 1))
    bottom, right = max(top + 1, min(bottom, h)), max(left + 1, min(right, w))
    t = max(1, int(width))
    out[top:min(top + t, bottom), left:right] = color
    out[max(bottom - t, top):bottom, left:right] = color
    out[top:bottom, left:min(left + t, right)] = color
    out[top:bottom, max(right - t, left):right] = color
    return out


def top_channels_at(fmap: np.ndarray, row: int, col: int, k: int = 8) -> list[tuple[int, float]]:
    """The ``k`` channels most active at one cell, as (channel, value), highest first."""
    values = np.asarray(fmap[int(row), int(col)], np.float32)
    order = np.argsort(-values, kind="stable")[:k]
    return [(int(c), float(values[c])) for c in order]


# --------------------------------------------------------------------------------------------
# first-layer filters


def _layer(model, qualified: str):
    for part in qualified.split(SEPARATOR):
        model = model.get_layer(part)
    return model


def first_conv(model, layers) -> tuple[str, np.ndarray] | None:
    """The first convolution applied to the RGB image, and its kernel (k, k, 3, C); None if there is none."""
    for info in layers:
        if info.class_name not in ("Conv2D",):
            continue
        kernel = np.asarray(_layer(model, info.name).kernel)
        if kernel.ndim == 4 and kernel.shape[2] == 3:
            return info.name, kernel.astype(np.float32)
        return None  # the first conv does not see RGB directly
    return None


def filter_tiles(kernel: np.ndarray) -> np.ndarray:
    """(C, k, k, 3) uint8 RGB tiles, each filter normalised on its own (mid-grey is zero weight)."""
    k = np.moveaxis(np.asarray(kernel, np.float32), 3, 0)  # (C, k, k, 3)
    peak = np.abs(k).max(axis=(1, 2, 3), keepdims=True)
    unit = np.divide(k, peak, out=np.zeros_like(k), where=peak > 0)
    return np.clip(np.rint(127.5 + 127.5 * unit), 0, 255).astype(np.uint8)


def receptive_fields_for(config: BackboneConfig) -> dict:
    """Every layer's receptive field (by qualified name) of the backbone, computed once per configuration."""
    if _session_held(config):
        backbone, _ = cache.load_backbone_cached(config)
        return receptive_fields(backbone.model)
    return _shared_fields(_model_key(config))


def _shared_fields(config: BackboneConfig) -> dict:
    def build():
        backbone, _ = cache.load_backbone_cached(config)
        return receptive_fields(backbone.model)

    return shared_model(("receptive-fields", config), build, group=_group(config))
