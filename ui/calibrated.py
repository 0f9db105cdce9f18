"""A session's random backbone with batch-norm statistics calibrated on its own images (issue 10, item 5).

The calibrated copy is derived from the user's images, so it lives in ``st.session_state`` (one per
session, like an uploaded model), never in the model pool every session shares. Its configuration's
``weights`` is ``"none+bn:<digest>:<n>:<image set>"`` (:func:`ui.config.calibrated_weights`): the
digest covers the backbone, input size, resize policy and the images' content digests, so every
cache keyed by the configuration keys on the images too. Calibration is not training: only the
batch-norm statistics change (:func:`extractor.calibration.calibrate_batchnorm`).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field, replace

import numpy as np
import streamlit as st

from extractor import Backbone, FeatureExtractor, LayerInfo, feature_layers
from extractor.calibration import DEFAULT_MAX_IMAGES, calibrate_batchnorm
from extractor.errors import LayerExplorerError

from .config import BackboneConfig, calibrated_weights, calibration_of, weights_text
from .custom_model import held_extractor
from .inference_slot import inference_slot

__all__ = ["is_calibrated", "calibration_request", "chosen_indices", "ensure", "held_for", "current",
           "session_extractor", "clear"]

_SESSION_KEY = "_bn_calibrated"


@dataclass
class SessionCalibration:
    """The session's one calibrated backbone and the extractors built on it (LRU, bounded)."""

    key: tuple  # (name, weights, input_size) of its configuration
    backbone: Backbone
    layers: tuple[LayerInfo, ...]
    extractors: OrderedDict = field(default_factory=OrderedDict)


def is_calibrated(config: BackboneConfig) -> bool:
    return calibration_of(config.weights) is not None


def chosen_indices(n: int, max_images: int = DEFAULT_MAX_IMAGES) -> list[int]:
    """The images calibration uses: all of them, or ``max_images`` evenly spaced.

    Example:
        >>> chosen_indices(3), len(chosen_indices(500))
        ([0, 1, 2], 128)
    """
    if n <= max_images:
        return list(range(n))
    return [int(i) for i in np.linspace(0, n - 1, max_images).round().astype(int)]


def calibration_request(config: BackboneConfig, digests: list[str], origin: str) -> BackboneConfig:
    """``config`` (random weights) with ``weights`` naming a calibration on these images.

    Example:
        >>> cfg = calibration_request(BackboneConfig("demo-shapes", "none", (64, 64)), ["a", "b"], "demo:shapes")
        >>> cfg.weights.startswith("none+bn:") and cfg.weights.endswith(":2:demo:shapes")
        True
    """
    used = [digests[i] for i in chosen_indices(len(digests))]
    h = hashlib.sha256(f"{config.name}|{config.input_size}|{config.resize}|".encode())
    h.update("\n".join(used).encode())
    return config.replace(weights=calibrated_weights(h.hexdigest(), len(used), origin))


def current() -> SessionCalibration | None:
    return st.session_state.get(_SESSION_KEY)


def clear() -> None:
    st.session_state.pop(_SESSION_KEY, None)


def _key(config: BackboneConfig) -> tuple:
    return (config.name, config.weights, tuple(config.input_size))


def held_for(config: BackboneConfig) -> SessionCalibration:
    """The session's calibrated backbone for ``config``, or a message saying to calibrate again."""
    held = current()
    if held is None or held.key != _key(config):
        raise LayerExplorerError("The batch-norm calibration of these images is no longer held in this session; "
                                 "switch it off and on again in the sidebar.")
    return held


def ensure(config: BackboneConfig, base: Backbone, views: np.ndarray) -> SessionCalibration:
    """Calibrate ``base`` (random weights) on ``views`` (the chosen images at the input size), once per config.

    Replaces the session's previous calibration (one per session). Raises
    :class:`extractor.calibration.CalibrationError` when there is nothing to calibrate.
    """
    held = current()
    if held is not None and held.key == _key(config):
        return held
    with st.spinner(f"Calibrating batch-norm statistics on {len(views)} images…"), inference_slot():
        calibrated = calibrate_batchnorm(base, views)
        info = replace(calibrated.weights, description=weights_text(config.weights))
        calibrated = replace(calibrated, weights=info)
        layers = tuple(feature_layers(calibrated.model))
    clear()  # the old one goes before the new one is kept
    held = SessionCalibration(_key(config), calibrated, layers)
    st.session_state[_SESSION_KEY] = held
    return held


def session_extractor(config: BackboneConfig, layers: tuple, poolings: tuple) -> FeatureExtractor:
    """An extractor on the session's calibrated backbone (kept in the session, bounded)."""
    held = held_for(config)
    return held_extractor(held.extractors, held.backbone, config, layers, poolings)
