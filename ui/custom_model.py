"""A user's own model: uploaded, audited, loaded, and kept in that user's session only.

Off unless the deployment sets ``LAYER_EXPLORER_ALLOW_MODEL_UPLOAD=1``: loading a Keras model
can run its author's code even with ``safe_mode`` (see :mod:`extractor.audit`). When on, a file
is audited before it is loaded with ``safe_mode=True``, and the model — with the extractors
built on it — lives in ``st.session_state``, never in ``st.cache_resource`` (which every session
shares). A new upload replaces the previous model; the same bytes again reuse it, so
re-uploading never grows memory.

The backbone name the caches see is ``"custom:<digest>"``; :mod:`ui.cache` routes those names
here instead of to its shared caches.
"""

from __future__ import annotations

import gc
import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field

import streamlit as st

from extractor import Backbone, FeatureExtractor, LayerExplorerError, LayerInfo, backbone_from_model, feature_layers
from extractor.audit import h5_enabled, load_audited_model, model_upload_enabled

from .config import BackboneConfig, build_extractor
from .inference_slot import inference_slot

__all__ = [
    "CUSTOM",
    "MAX_MODEL_BYTES",
    "SessionModel",
    "upload_enabled",
    "upload_types",
    "accept_upload",
    "current",
    "held_for",
    "clear",
    "is_custom",
    "session_extractor",
]

CUSTOM = "custom"  # the sidebar's backbone option
_PREFIX = "custom:"
MAX_MODEL_BYTES = 100 * 2**20
_SESSION_KEY = "_custom_model"
_MAX_EXTRACTORS = 6


@dataclass
class SessionModel:
    """The one uploaded model of a session, and the extractors built on it (LRU, bounded)."""

    digest: str
    file_name: str  # as uploaded; only ever shown (escaped), never used as a path
    backbone: Backbone
    layers: tuple[LayerInfo, ...]
    extractors: OrderedDict = field(default_factory=OrderedDict)

    @property
    def config_name(self) -> str:
        return _PREFIX + self.digest[:16]

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.backbone.input_size or self.backbone.spec.input_size)


def upload_enabled() -> bool:
    return model_upload_enabled()


def upload_types() -> list[str]:
    return ["keras", "h5"] if h5_enabled() else ["keras"]


def is_custom(name: str) -> bool:
    return str(name).startswith(_PREFIX)


def current() -> SessionModel | None:
    return st.session_state.get(_SESSION_KEY)


def held_for(name: str) -> SessionModel:
    """The session's model behind the config name ``custom:<digest>``, or a message to upload it again."""
    held = current()
    if held is None or held.config_name != name:
        raise LayerExplorerError("Your model is no longer loaded in this session; upload it again in the sidebar.")
    return held


def clear() -> None:
    """Drop the session's model (and its extractors) so its memory can be reclaimed."""
    if st.session_state.pop(_SESSION_KEY, None) is not None:
        gc.collect()


def accept_upload(file_name: str, data: bytes) -> SessionModel:
    """Audit and load an uploaded model into this session, replacing any previous one.

    Raises :class:`extractor.audit.ModelRefusedError` (with the reasons) or another
    ``LayerExplorerError``; the previous model stays when the new one is refused.
    """
    digest = hashlib.sha256(data).hexdigest()
    held = current()
    if held is not None and held.digest == digest:
        return held
    with inference_slot():
        model = load_audited_model(data, "model.h5" if file_name.lower().endswith(".h5") else "model.keras",
                                   allow_h5=h5_enabled(), max_bytes=MAX_MODEL_BYTES)
        backbone = backbone_from_model(model, name="your model")
        layers = tuple(feature_layers(backbone.model))
    clear()  # the old model goes before the new one is kept: one model per session
    session_model = SessionModel(digest, file_name, backbone, layers)
    st.session_state[_SESSION_KEY] = session_model
    return session_model


def session_extractor(config: BackboneConfig, layers: tuple, poolings: tuple) -> FeatureExtractor:
    """The extractor for the session's model (``config.name`` is its ``custom:<digest>`` name)."""
    held = held_for(config.name)
    return held_extractor(held.extractors, held.backbone, config, layers, poolings)


def held_extractor(extractors: OrderedDict, backbone: Backbone, config: BackboneConfig, layers: tuple,
                   poolings: tuple) -> FeatureExtractor:
    """The extractor for (config, layers, poolings) from a session's own ``extractors`` (built and warmed
    if missing), least recently used dropped past ``_MAX_EXTRACTORS``: for backbones a session holds
    itself (an uploaded model, a calibrated one), never in the shared pool."""
    key = (config, tuple(layers), tuple(poolings))
    fx = extractors.get(key)
    if fx is None:
        with inference_slot():
            fx = build_extractor(backbone, config, layers, poolings)
            fx.warm()
        extractors[key] = fx
        while len(extractors) > _MAX_EXTRACTORS:
            extractors.popitem(last=False)
    else:
        extractors.move_to_end(key)
    return fx
