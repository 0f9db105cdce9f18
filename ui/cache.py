"""Every cache of the app, and how inference gets the CPU.

Two kinds of cache, as STYLE.md §7 says:

* :data:`ui.inference_slot.MODELS` (a bounded LRU :class:`~ui.model_pool.ModelPool`, shared by
  every session) for networks and compiled extractors, keyed by plain values (backbone name,
  weights request, input size; the whole config, layer tuple, pooling tuple). At most
  ``LAYER_EXPLORER_MAX_MODELS`` backbones are kept, each with its extractors; an evicted one is
  rebuilt on demand. Nothing is keyed by a model object, and what they return is never mutated.
* ``st.cache_data`` (bounded by ``max_entries`` and ``max_size``) for decoded thumbnails, raw
  maps of one image, and pooled features. These are keyed by **content digests** (SHA-256 of
  the bytes, or of the pixels for demo arrays); the items themselves travel in an underscore
  argument that Streamlit does not hash, which is sound because the digests determine them.
  Cached values never hold a file *name* or label: those stay in the session (ui.state), so a
  user with the same bytes learns nothing about another user's files.
  An upload's entries are kept in its session's own cache (ui.private_cache), gone when it ends.

Every function takes the one :class:`~ui.config.BackboneConfig` as its first argument and the
images it works on as arguments: nothing here reads the session's choices. Inference (building,
warming, running a network) goes through :mod:`ui.inference_slot`: one-image work in the
interactive lane (:func:`~ui.inference_slot.inference_slot`), whole sets as a batch job of the
session, one chunk of :data:`_CHUNK` images per slot (:func:`~ui.inference_slot.chunk_slot`).
A cached value is always fetched *before* a slot is taken, never while holding one.

Example (inside a Streamlit script)::

    config = BackboneConfig("demo-shapes", "pretrained", (64, 64))
    fx = get_extractor(config, ("block2_pool",), ("avg",))
    feats = pooled_features(["block2_pool"], ["avg"], images=images, config=config)
    feats.features["block2_pool/avg"].shape     # (70, 32)
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import streamlit as st
from PIL import Image

from extractor import (
    Backbone,
    FeatureExtractor,
    LayerInfo,
    NoImagesError,
    decode_image,
    feature_key,
    feature_layers,
    load_backbone,
    load_image,
    resize_image,
)
from extractor.demo import load_demo_set, load_photos
from extractor.errors import Failure, LayerExplorerError
from extractor.images import InvalidImageError

from . import calibrated, custom_model, private_cache
from .config import BackboneConfig, build_extractor
from .image_set import ImageSet
from .inference_slot import JobStatus, batch_job, chunk_slot, inference_slot, shared_model, shared_models

__all__ = [
    "THUMBNAIL_SIZE",
    "DemoImages",
    "Decoded",
    "RawMaps",
    "PooledFeatures",
    "array_digest",
    "load_backbone_cached",
    "get_extractor",
    "EngineInfo",
    "engine_info",
    "demo_images",
    "decode_thumbnails",
    "network_view",
    "raw_maps",
    "pooled_features",
]

logger = logging.getLogger("layer_explorer.ui")

THUMBNAIL_SIZE = 96
_CHUNK = 32  # images per cached pooled-features entry: a batch-lane chunk (clicks slip in between), progress steps


def array_digest(pixels: np.ndarray) -> str:
    """Content digest of an image array (shape, dtype and pixels): the cache key of demo images."""
    arr = np.ascontiguousarray(pixels)
    h = hashlib.sha256(f"{arr.shape}|{arr.dtype}|".encode())
    h.update(arr.tobytes())
    return "px-" + h.hexdigest()


# --------------------------------------------------------------------------------------------
# networks


def load_backbone_cached(config: BackboneConfig) -> tuple[Backbone, tuple[LayerInfo, ...]]:
    """The backbone and its feature-map layer table, built once per configuration.

    Keyed by (name, weights, input size): precision, resize and runtime do not change the
    Keras model. A user's uploaded model (``custom:<digest>``) and a backbone whose batch-norm
    statistics were calibrated on the user's images (``weights="none+bn:…"``, :mod:`ui.calibrated`)
    come from that user's session, never from a cache shared between sessions.
    """
    if custom_model.is_custom(config.name):
        held = custom_model.held_for(config.name)
        return held.backbone, held.layers
    if calibrated.is_calibrated(config):  # derived from the session's images: held by the session
        held = calibrated.held_for(config)
        return held.backbone, held.layers
    return _shared_backbone(config.name, config.weights, config.input_size)


def _shared_backbone(name: str, weights: str, input_size: tuple[int, int]) -> tuple[Backbone, tuple[LayerInfo, ...]]:
    key = ("backbone", name, weights, tuple(input_size))

    def build():
        with st.spinner("Loading the network…"), inference_slot():
            backbone = load_backbone(name, weights=weights, input_size=tuple(input_size))
            table = tuple(feature_layers(backbone.model))
        return backbone, table

    return shared_model(key, build, group=key)


def get_extractor(
    config: BackboneConfig, layers: Sequence[str], poolings: Sequence[str] = ("avg",)
) -> FeatureExtractor:
    """A compiled, warmed :class:`FeatureExtractor`; one per (config, layers, poolings).

    Shared by every session: call ``extract``/``run_batch`` on it, never change its attributes.
    Extractors of a user's uploaded model are kept in that user's session instead.
    """
    if custom_model.is_custom(config.name):
        return custom_model.session_extractor(config, tuple(layers), tuple(poolings))
    if calibrated.is_calibrated(config):
        return calibrated.session_extractor(config, tuple(layers), tuple(poolings))
    return _shared_extractor(config, tuple(layers), tuple(poolings))


def _shared_extractor(config: BackboneConfig, layers: tuple[str, ...], poolings: tuple[str, ...]) -> FeatureExtractor:
    group = ("backbone", config.name, config.weights, tuple(config.input_size))

    def build():
        # The backbone first, outside any slot (it may be another session's build in progress);
        # an extractor keeps its backbone alive, so both belong to the backbone's group in the pool.
        backbone, _ = _shared_backbone(config.name, config.weights, config.input_size)
        # Under "auto" a missing OpenVINO conversion runs in the background (TensorFlow serves at
        # once); only an explicit "openvino" choice waits for it, and the spinner says so.
        text = ("Preparing the feature extractor (converting it for OpenVINO the first time: once per "
                "configuration, then cached on disk)…" if config.runtime == "openvino"
                else "Preparing the feature extractor…")
        with st.spinner(text), inference_slot():
            fx = build_extractor(backbone, config, layers, poolings)
            fx.warm()
        return fx

    return shared_model(("extractor", config, tuple(layers), tuple(poolings)), build, group=group)


@dataclass(frozen=True)
class EngineInfo:
    """What runs a configuration's extractors now (for the sidebar's runtime line)."""

    runtime: str  # "tensorflow" or "openvino": the engine serving calls now
    precision: str  # "float32" or "bfloat16": what actually runs
    converting: bool  # an OpenVINO conversion is under way in the background (TensorFlow serves meanwhile)
    note: str | None = None  # e.g. why OpenVINO could not serve this model


def engine_info(config: BackboneConfig) -> EngineInfo | None:
    """The runtime and precision that actually ran ``config`` (its most recent extractor); None before any ran.

    Looks only at extractors already built (never builds one, never counts as a use).
    """
    if custom_model.is_custom(config.name):
        held = custom_model.current()
        built = [fx for key, fx in (held.extractors.items() if held else ()) if key[0] == config]
    elif calibrated.is_calibrated(config):
        held = calibrated.current()
        built = [fx for key, fx in (held.extractors.items() if held else ()) if key[0] == config]
    else:
        built = [fx for key, fx in shared_models("extractor") if key[1] == config and fx is not None]
    if not built:
        return None
    latest = built[-1]
    note = next((fx.runtime_note for fx in built if fx.runtime_note), None)
    return EngineInfo(latest.runtime, latest.precision, any(not fx.is_ready() for fx in built), note)


# --------------------------------------------------------------------------------------------
# images


@dataclass(frozen=True)
class DemoImages:
    images: list[np.ndarray]
    labels: list[str | None]
    names: list[str]
    digests: list[str]


@st.cache_data(max_entries=8, max_size="128MB", show_spinner="Drawing the demo images…")
def demo_images(name: str, per_class: int) -> DemoImages:
    """A built-in demo set with the digest of every image. Photos keep their native size."""
    ds = load_photos(size=None) if name == "photos" else load_demo_set(name, per_class=per_class, size=64)
    labels = list(ds.labels) if ds.labels else [None] * len(ds.images)
    return DemoImages(list(ds.images), labels, list(ds.names), [array_digest(im) for im in ds.images])


@dataclass(frozen=True)
class Decoded:
    """A thumbnail, or why the image cannot be used (the message carries no file name)."""

    thumbnail: np.ndarray | None
    error: str | None = None
    notes: tuple[str, ...] = ()


def _thumbnail(item, size: int) -> Decoded:
    if isinstance(item, np.ndarray):
        pixels, notes = item, ()
    else:
        try:
            # "image" stands in for the name: the cached value must not carry one (only the reason).
            decoded = decode_image(item.data, "image", draft_size=(size, size))
        except InvalidImageError as exc:
            return Decoded(None, exc.reason)
        except LayerExplorerError as exc:
            return Decoded(None, str(exc))
        pixels, notes = decoded.pixels, decoded.notes
    im = Image.fromarray(np.ascontiguousarray(pixels))
    im.thumbnail((size, size), Image.Resampling.BILINEAR)
    return Decoded(np.asarray(im).copy(), None, tuple(notes))


@private_cache.data(max_entries=16, max_size="256MB")
def decode_thumbnails(digests: tuple[str, ...], _items: Sequence, size: int = THUMBNAIL_SIZE) -> list[Decoded]:
    """Decode every image once (this is where broken files are found) and keep a thumbnail.

    Keyed by the digests; ``_items`` are the matching ``ImageSource`` objects or arrays.
    """
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="thumbs") as pool:  # Pillow releases the GIL
        return list(pool.map(lambda item: _thumbnail(item, size), _items))


def network_view(item, input_size: tuple[int, int], resize: str) -> np.ndarray:
    """The exact (H, W, 3) uint8 pixels the network gets for one item (decode + resize policy)."""
    if isinstance(item, np.ndarray):
        return resize_image(item, tuple(input_size), resize)
    return load_image(item.data, "image", tuple(input_size), resize).pixels


# --------------------------------------------------------------------------------------------
# activations


@dataclass(frozen=True)
class RawMaps:
    """Full (H, W, C) maps of several layers for ONE image, and the pixels that produced them."""

    view: np.ndarray  # (h, w, 3) uint8, after the resize policy
    maps: dict[str, np.ndarray]  # layer name -> (H, W, C) float32


@private_cache.data(max_entries=12, max_size="384MB")
def raw_maps(config: BackboneConfig, layers: tuple[str, ...], digest: str, _item) -> RawMaps:
    """One forward pass of one image through an extractor with pooling ``none`` for ``layers``.

    Keyed by the configuration, the layers and the image's content ``digest``; ``_item`` (the
    ``ImageSource`` or array with that digest) is not hashed.
    """
    fx = get_extractor(config, tuple(layers), ("none",))
    view = network_view(_item, config.input_size, config.resize)
    with inference_slot():
        out = fx.run_batch(view[None])
    maps = {layer: np.asarray(out[feature_key(layer, "none")][0], np.float32) for layer in fx.layers}
    return RawMaps(np.asarray(view), maps)


@dataclass(frozen=True)
class _Chunk:
    features: dict[str, np.ndarray]  # key -> (n_ok, C)
    ok: list[int]  # positions (within the chunk) of the rows
    failures: list[tuple[int, str]]  # (position within the chunk, reason): the cached value holds no names
    notes: list[tuple[int, str]]


class _EngineChanged(Exception):
    """A background OpenVINO conversion landed while a set's chunks were being computed."""


@private_cache.data(max_entries=256, max_size="512MB")
def _pooled_chunk(
    config: BackboneConfig,
    layers: tuple[str, ...],
    poolings: tuple[str, ...],
    digests: tuple[str, ...],
    _items: Sequence,
    batch_size: int = 32,
    runtime: str = "",
) -> _Chunk:
    """One chunk's pooled features, computed by the engine ``runtime`` names (a cache key too).

    Under "auto" the extractor switches from TensorFlow to OpenVINO when a background conversion
    lands; the two agree to about 1e-4, which can still reorder a sweep's scores on an untrained
    network's tiny features. A chunk is therefore cached per engine, and one computed by another
    engine than asked raises :class:`_EngineChanged` (never cached) so the caller starts over.
    """
    fx = get_extractor(config, layers, poolings)
    if runtime and fx.runtime != runtime:  # before the work, so none of it is thrown away
        raise _EngineChanged(fx.runtime)
    # Anonymous names: the cached value is shared by everyone with the same bytes.
    inputs, position = [], {}
    for j, item in enumerate(_items):
        if isinstance(item, np.ndarray):
            inputs.append(item)
            position[f"image_{j}"] = j  # the extractor's own name for an array input
        else:
            inputs.append((f"item{j}", item.data))
            position[f"item{j}"] = j
    # A chunk of this session's batch job (the sweep's, or pooled_features' own): clicks go first.
    with chunk_slot():
        try:
            result = fx.extract(inputs, batch_size=batch_size)
        except LayerExplorerError as exc:
            failures = getattr(exc, "failures", None)
            if failures is None:
                raise
            return _Chunk({}, [], [(position.get(f.name, -1), f.reason) for f in failures], [])
    if runtime and result.runtime != runtime:  # it landed during this very chunk
        raise _EngineChanged(result.runtime)
    return _Chunk(
        dict(result.features),
        list(result.indices),
        [(position.get(f.name, -1), f.reason) for f in result.failures],
        [(position.get(n.name, -1), n.reason) for n in result.notes],
    )


@dataclass
class PooledFeatures:
    """Pooled vectors for the images of an :class:`~ui.state.ImageSet` that went through.

    ``features[key]`` has one row per entry of ``names``/``labels``/``digests``;
    ``indices[i]`` is that row's position in the image set.
    """

    features: dict[str, np.ndarray]
    names: list[str]
    labels: list[str | None]
    digests: list[str]
    indices: list[int]
    failures: list[Failure] = field(default_factory=list)  # images left out
    notes: list[Failure] = field(default_factory=list)  # kind "note": what was done to an image that was used
    runtime: str = ""  # the one engine that computed every row ("tensorflow" or "openvino")

    @property
    def has_labels(self) -> bool:
        return any(label is not None for label in self.labels)


def _layer_set_label(layers: Sequence[str], poolings: Sequence[str]) -> str:
    """A short name for one layer set in a progress line: "4 layers (block1_pool … block4_pool) × avg, max".

    >>> _layer_set_label(["block1_pool", "block2_pool", "block4_pool"], ["avg", "max"])
    '3 layers (block1_pool … block4_pool) × avg, max'
    >>> _layer_set_label(["block2_pool"], ["avg"])
    'block2_pool × avg'
    """
    names = layers[0] if len(layers) == 1 else f"{len(layers)} layers ({layers[0]} … {layers[-1]})"
    return f"{names} × {', '.join(poolings)}"


def pooled_features(
    layers: Sequence[str],
    poolings: Sequence[str] = ("avg",),
    *,
    images: ImageSet,
    config: BackboneConfig,
    batch_size: int = 32,
    show_progress: bool = True,
) -> PooledFeatures:
    """Pooled features of ``layers`` × ``poolings`` for every image of the current set.

    ``images`` is usually ``ui.state.current_images()`` and ``config`` ``ui.state.current_config()``.
    Computed in cached chunks of 32 images, one batch-lane chunk each (clicks from every session
    go in between; the work stops at the next chunk when the session ends or the job is
    cancelled, raising ``JobCancelled``), with a progress bar while anything is computed and a
    "queued behind N other runs" line while the job waits in line. Raises ``LayerExplorerError``
    subclasses (e.g. ``RawMapsTooLargeError`` for ``none``/``flatten`` on many images).
    """
    layers_t, poolings_t = tuple(layers), tuple(poolings)
    n = len(images)
    # The core checks its raw-map / flatten memory cap per call, and calls here are chunks of
    # _CHUNK images: check the whole set once first, or a large set would slip under the cap.
    extractor = get_extractor(config, layers_t, poolings_t)
    extractor.check_memory(n)
    starts = list(range(0, n, _CHUNK))
    what = _layer_set_label(layers_t, poolings_t)
    bar = st.progress(0.0, text=f"Extracting {what} for {n} images…") if show_progress and len(starts) > 1 else None
    queue_box, shown = (st.empty() if show_progress else None), [False]

    def on_status(status: JobStatus) -> None:
        # Called in this thread when the job's place in line changes (never for a cache hit: no chunk is asked for).
        if queue_box is None:
            return
        if status.state == "queued":
            queue_box.info(f"Waiting for the server: {status.message()} Clicks on other pages are not held up.",
                           icon=":material/hourglass_top:")
            shown[0] = True
        elif shown[0]:  # admitted: the line goes (one delta, not one per chunk)
            queue_box.empty()
            shown[0] = False

    def all_chunks(runtime: str) -> list[_Chunk]:
        chunks = []
        for start in starts:
            stop = min(n, start + _CHUNK)
            chunks.append(_pooled_chunk(config, layers_t, poolings_t, tuple(images.digests[start:stop]),
                                        images.items[start:stop], batch_size, runtime))
            if bar is not None:
                bar.progress(stop / n, text=f"Extracting {what}: {stop} of {n} images")
        return chunks

    runtime = extractor.runtime
    try:
        # One batch job (inside a sweep: the sweep's job): each uncached chunk asks for a slot, so
        # clicks from every session slip in between chunks, and the job stops when the session goes.
        with batch_job(chunks=len(starts), on_status=on_status):
            try:
                chunks = all_chunks(runtime)
            except _EngineChanged as changed:
                # Every row from one engine: OpenVINO took over halfway (its background conversion
                # landed), so start again on it; an extractor changes engine at most once.
                runtime = str(changed)
                chunks = all_chunks(runtime)
    finally:
        if bar is not None:
            bar.empty()
        if queue_box is not None:
            queue_box.empty()

    keys = [feature_key(lyr, p) for lyr in layers_t for p in poolings_t]
    parts: dict[str, list[np.ndarray]] = {key: [] for key in keys}
    out = PooledFeatures({}, [], [], [], [], runtime=runtime)
    for start, chunk in zip(starts, chunks, strict=False):
        for key in keys:
            if chunk.ok:
                parts[key].append(chunk.features[key])
        for j in chunk.ok:
            i = start + j
            out.indices.append(i)
            out.names.append(images.names[i])
            out.labels.append(images.labels[i])
            out.digests.append(images.digests[i])
        for j, reason in chunk.failures:
            out.failures.append(Failure(images.names[start + j] if j >= 0 else "an image", reason))
        for j, note in chunk.notes:
            out.notes.append(Failure(images.names[start + j] if j >= 0 else "an image", note, "note"))
    if not out.indices:
        reasons = "; ".join(f.message for f in out.failures[:3]) or "the image set is empty"
        raise NoImagesError(f"No image could be processed ({reasons}).")
    out.features = {key: np.concatenate(parts[key]) for key in keys}
    return out
