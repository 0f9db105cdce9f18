"""The export files (features, maps, projector bundle, reproduce script) and their assembly.

The builders (:func:`npz_bytes`, ...) are keyed by an export id that covers the rows, the
feature keys, and the names and labels that go into the file. A cached file holds the names it
was asked to write; only a caller that passes exactly those names (and the same image contents
and settings) can get it back, so it tells nobody anything new. File names are fixed strings
(:data:`FILE_NAMES`), never built from user input.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st

from extractor import BACKBONES
from extractor.errors import Failure, LayerExplorerError
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
from extractor.sweep import SweepReport

from . import custom_model, state
from .calibrated import chosen_indices
from .config import CALIBRATED_PREFIX, BackboneConfig, calibration_of, config_differences
from .features import COMPUTED_MAPS_KEY, METHOD_NAMES, POOLING_CHOICES, FeatureFetch, digest_of, embedding, rows_id
from .image_set import ImageSet
from .sweeps import EXPORT_CHOICE_KEY, stored_result

__all__ = [
    "ExportStart",
    "export_start",
    "sweep_differences",
    "ExportSet",
    "export_set",
    "MapsExport",
    "maps_export",
    "projector_file",
    "FILE_NAMES",
    "size_text",
    "export_defaults",
    "export_id",
    "npz_bytes",
    "parquet_bytes",
    "csv_bytes_or_message",
    "coords_csv_bytes",
    "projector_bytes",
    "reproduce_files",
]


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


def export_defaults(
    choice: Mapping | None,
    result: SweepReport | None,
    block_layers: Sequence[str],
    all_layers: Sequence[str],
) -> tuple[list[str], list[str], str]:
    """Starting layers and poolings for the Export page, and where they come from.

    An explicit choice from the Layer-selection page wins, then this session's recommendation,
    then the last block with ``avg``.
    """
    if choice:
        layers = [lyr for lyr in choice.get("layers", []) if lyr in all_layers]
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
def csv_bytes_or_message(eid: str, _features, _names, _labels) -> tuple[bytes | None, str | None]:
    """CSV bytes, or ``(None, why)`` when the core refuses (too many values for a spreadsheet)."""
    try:
        return features_to_csv(dict(_features), list(_names), _labels_or_none(_labels)), None
    except ExportError as exc:
        return None, str(exc)


@st.cache_data(max_entries=6, max_size="64MB", show_spinner=False)
def coords_csv_bytes(eid: str, _coords: Mapping[str, np.ndarray], _names: Sequence[str], _labels: Sequence | None) -> bytes:
    """``extractor.export.coords_to_csv`` (``eid`` must cover the maps: keys, methods, parameters)."""
    return coords_to_csv(dict(_coords), list(_names), _labels_or_none(_labels))


@st.cache_data(max_entries=4, max_size="256MB", show_spinner=False)
def projector_bytes(eid: str, _vectors: np.ndarray, _names: Sequence[str], _labels: Sequence | None,
                    _thumbnails: Sequence[np.ndarray] | None) -> bytes:
    """``extractor.export.projector_bundle`` (vectors, metadata, sprite of the thumbnails)."""
    return projector_bundle(_vectors, list(_names), _labels_or_none(_labels), _thumbnails, tensor_name="layer_explorer")


def _model_file_name(file_name: str) -> str:
    """The uploaded file's base name, reduced to safe characters, ending in .keras or .h5."""
    stem = re.sub(r"[^\w.-]+", "_", Path(str(file_name).replace("\\", "/")).name).strip("._") or "model"
    return stem if stem.lower().endswith((".keras", ".h5")) else stem + ".keras"


def reproduce_files(config: BackboneConfig, layers: Sequence[str], poolings: Sequence[str], *,
                    images: Sequence[str] | None = None, weights_info=None,
                    image_set: ImageSet | None = None) -> tuple[bytes, str]:
    """``config.json`` bytes and the runnable script for the chosen extraction.

    ``images`` are the exported rows' ``paths`` in order (the script then writes its rows in that
    order). ``image_set`` is the session's image set: for a BN-calibrated configuration the script
    calibrates on the same images of it (:func:`ui.calibrated.chosen_indices`) before it extracts,
    so it gives the app's features, not those of the uncalibrated network. ``weights_info`` (the
    loaded backbone's :class:`extractor.WeightsInfo`) goes into config.json as
    ``weights_kind``/``weights_description``, so a file of random-weight features says so. A local weights file or model file appears by its file name only (never a server
    path); the script reads such a file from its own folder.
    """
    weights = config.weights
    calibration_images = None
    if calibration_of(weights) is not None:
        if image_set is None:
            raise ValueError("reproduce_files: a BN-calibrated configuration needs the image_set it was calibrated on")
        calibration_images = [image_set.names[i] for i in chosen_indices(len(image_set))]
    if custom_model.is_custom(config.name):
        # The session's uploaded model: the script loads the same file, put beside it, by its
        # file name (the name only: never a path, and the weights are inside the file).
        backbone, weights = _model_file_name(custom_model.held_for(config.name).file_name), None
    else:
        weights = "none" if weights.startswith(CALIBRATED_PREFIX) else weights  # BN-calibrated random: see config.json
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
        images=None if images is None else list(images),
        calibration_images=calibration_images,
    )
    described = dict(cfg)
    if weights_info is not None:  # what was really loaded: "random" says the features are untrained
        described["weights_kind"] = weights_info.kind
        described["weights_description"] = weights_info.description
    blob = (json.dumps(described, indent=2) + "\n").encode("utf-8")
    return blob, reproduce_script(cfg, script_name=FILE_NAMES["script"])


@dataclass(frozen=True)
class ExportStart:
    """Where the Export page's choice starts: layers, poolings, why, and the sweep that speaks for these images."""

    layers: list[str]
    poolings: list[str]
    source: str
    handed_over: bool  # True when the Layer-selection page just handed a choice over
    sweep: SweepReport | None  # this session's sweep, only when it scored these very images
    origin: SweepReport | None = None  # the sweep the starting choice came from (whatever it scored)
    differences: tuple[str, ...] = ()  # how the sidebar now differs from ``origin`` (empty: it does not)


def export_start(config: BackboneConfig, images: ImageSet, block_layers: Sequence[str],
                 all_layers: Sequence[str]) -> ExportStart:
    """Read (and consume) the choice handed over by the Layer-selection page, and pick the defaults.

    The last choice handed over is remembered (as ``origin``) so that the page can keep saying
    which sweep it came from, and warn while the sidebar differs from what that sweep scored.
    """
    choice = st.session_state.pop(EXPORT_CHOICE_KEY, None)
    if choice:
        st.session_state[_HANDED_KEY] = choice
    handed = st.session_state.get(_HANDED_KEY) or {}
    stored = stored_result()
    origin = stored if stored is not None and handed.get("sweep") == stored.signature else None
    result = stored
    if result is not None and result.rows != rows_id(config, images.digests):
        result = None  # a sweep of other images or another network says nothing about these
    layers, poolings, source = export_defaults(choice, result, block_layers, all_layers)
    return ExportStart(layers, poolings, source, bool(choice), result, origin,
                       tuple(sweep_differences(origin, config, images)) if origin is not None else ())


_HANDED_KEY = "_export_handed_over"  # the last choice handed over by Layer selection (kept for the notice)


def sweep_differences(result: SweepReport, config: BackboneConfig, images: ImageSet) -> list[str]:
    """How the current sidebar (``config``, ``images``) differs from what ``result`` scored."""
    out = config_differences(result.config, config) if result.config is not None else []
    if result.images_id != digest_of("images", tuple(images.digests)):
        out.append(f"images: {result.images_text} → {images.summary()}")
    return out


@dataclass(frozen=True)
class ExportSet:
    """What goes into the export files: the chosen feature matrices, with their rows' names and labels."""

    keys: list[str]
    selected: dict[str, np.ndarray]
    names: list[str]
    labels: list[str | None] | None
    rows: str  # rows_id of the images in the files
    eid: str  # export_id: the cache key of every file built from this set
    thumbnails: list[np.ndarray]

    @property
    def dims(self) -> int:
        return sum(self.selected[key].shape[1] for key in self.keys)

    @property
    def float32_bytes(self) -> int:
        return len(self.names) * self.dims * 4


def export_set(fetch: FeatureFetch, images: ImageSet, config: BackboneConfig) -> ExportSet:
    """The export of a :func:`ui.features.fetch_features` result (only the keys it could serve)."""
    feats = fetch.features
    keys = list(fetch.keys)
    names = list(feats.names)
    labels = list(feats.labels) if feats.has_labels else None
    rows = rows_id(config, feats.digests)
    return ExportSet(keys, {key: feats.features[key] for key in keys}, names, labels, rows,
                     export_id(rows, keys, names, labels), [images.thumbnails[i] for i in feats.indices])


@dataclass(frozen=True)
class MapsExport:
    """The 2-D maps of an :class:`ExportSet` that go into the coordinates file.

    ``coords`` maps a column prefix (``"<key> <method> <param>=<value>"``) to (N, 2) coordinates;
    ``listed`` says what each map is, for people; ``problems`` are the keys that got no map, with why.
    ``eid`` is the coordinates file's cache key (rows, keys, methods, parameters).
    """

    coords: dict[str, np.ndarray]
    listed: list[str]
    problems: list[Failure]
    eid: str


def maps_export(ex: ExportSet) -> MapsExport:
    """PCA of every exported key, plus each t-SNE / UMAP map computed on the Embeddings page for these rows.

    The parameters named are those really used (t-SNE lowers a perplexity too high for the
    images), to 3 significant digits. A key whose map fails gets a problem and no further maps.
    """
    coords: dict[str, np.ndarray] = {}
    listed: list[str] = []
    problems: list[Failure] = []
    computed = st.session_state.get(COMPUTED_MAPS_KEY, set())
    for key in ex.keys:
        runs = [("pca", ())] + sorted({(m, p) for (r, k, m, p) in computed if r == ex.rows and k == key})
        for method, params in runs:
            try:
                emb = embedding(ex.rows, key, method, params, ex.selected[key])
            except LayerExplorerError as exc:
                problems.append(Failure(key, state.user_message(exc), "configuration"))
                break
            tag = "".join(f" {name}={value:.3g}" if isinstance(value, (int, float)) else f" {name}={value}"
                          for name, value in (emb.params or params))
            coords[f"{key} {method}{tag}"] = emb.coords
            listed.append(f"{key}: {METHOD_NAMES.get(method, method)}{tag}")
    eid = digest_of("coords", export_id(ex.rows, ex.keys, ex.names, ex.labels), tuple(sorted(coords)))
    return MapsExport(coords, listed, problems, eid)


def projector_file(ex: ExportSet, key: str) -> bytes:
    """The Embedding Projector bundle of one exported key (:func:`projector_bytes`, cached); may raise ExportError."""
    eid = digest_of("projector", export_id(ex.rows, [key], ex.names, ex.labels))
    return projector_bytes(eid, ex.selected[key], ex.names, ex.labels, ex.thumbnails)
