"""One multi-output model, one forward pass, pooling in the graph.

:class:`FeatureExtractor` is built once per backbone × layer set × poolings × precision and
reused. Each call streams images through it in batches: decoding and resizing run on worker
threads ahead of the forward pass (Pillow and TensorFlow both release the GIL), the compiled
function has a fixed input signature so a new batch size never retraces, and only pooled
vectors leave the graph, so memory depends on the batch size, not on the number of images.

Example:
    >>> bb = load_backbone("demo-shapes")
    >>> fx = FeatureExtractor(bb, ["block1_conv1", "block4_pool"], poolings=["avg", "gem"])
    >>> result = fx.extract(images)                 # arrays, ImageSource objects, paths or bytes
    >>> result.features["block4_pool/gem"].shape     # one row per image that decoded
    (20, 128)
    >>> result.failures                              # the others, by name, with the reason
    []
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .backbones import Backbone, preprocess_tensor, rebuild_backbone
from .errors import Failure, LayerExplorerError
from .layers import SEPARATOR, LayerInfo, feature_key, feature_layers, find_layer, split_key
from .pooling import check_poolings, pool, pooled_dim
from .runtime import (
    ConversionError,
    GraphPlan,
    OpenVINOEngine,
    TensorFlowEngine,
    convert,
    is_converted,
    resolve_runtime,
    start_conversion,
    weights_digest,
)

__all__ = [
    "FeatureExtractor",
    "ExtractionResult",
    "Failure",
    "PRECISIONS",
    "DEFAULT_MAX_RAW_BYTES",
    "ExtractionRequestError",
    "RawMapsTooLargeError",
    "NoImagesError",
    "feature_key",
    "split_key",
]

PRECISIONS = ("float32", "bfloat16")
DEFAULT_MAX_RAW_BYTES = 512 * 2**20
_NATIVE_WINDOW_BATCHES = 4

log = logging.getLogger(__name__)


class ExtractionRequestError(LayerExplorerError):
    """The combination of layers, poolings, resize policy and precision cannot be served."""


class RawMapsTooLargeError(ExtractionRequestError):
    """Raw maps (``none``) or ``flatten`` vectors would need more memory than the cap allows."""


class NoImagesError(LayerExplorerError):
    """Not a single image could be decoded; ``failures`` says why for each one."""

    def __init__(self, message: str, failures: Sequence[Failure] = ()):
        super().__init__(message)
        self.failures = list(failures)


@dataclass
class ExtractionResult:
    """Pooled features for the images that decoded, aligned row by row with ``names``."""

    features: dict[str, np.ndarray]
    names: list[str]
    labels: list[str | None]
    indices: list[int]  # position of each row's image in the inputs
    failures: list[Failure] = field(default_factory=list)
    notes: list[Failure] = field(default_factory=list)  # kind "note": what was done to an input that was used
    seconds: float = 0.0
    runtime: str = "tensorflow"  # the engine that computed these features
    precision: str = "float32"  # the precision it ran at

    @property
    def has_labels(self) -> bool:
        return any(label is not None for label in self.labels)


def _layer_outputs(model, names: Sequence[str]) -> list:
    """Symbolic outputs for (possibly nested) layer names, one cut per nested model."""
    import keras

    outputs: dict[str, object] = {}
    nested: dict[str, list[str]] = {}
    for name in names:
        head, _, rest = name.partition(SEPARATOR)
        if rest:
            nested.setdefault(head, []).append(rest)
        else:
            outputs[name] = model.get_layer(name).output
    for head, rests in nested.items():
        inner_model = model.get_layer(head)
        inner = _layer_outputs(inner_model, rests)
        cut = keras.Model(inner_model.inputs, inner, name=f"{inner_model.name}_features")
        feeding = inner_model._inbound_nodes[0].input_tensors  # where the nested model sits in the outer graph
        produced = cut(feeding[0] if len(feeding) == 1 else feeding)
        produced = produced if isinstance(produced, (list, tuple)) else [produced]
        for rest, tensor in zip(rests, produced, strict=False):
            outputs[head + SEPARATOR + rest] = tensor
    return [outputs[name] for name in names]


class FeatureExtractor:
    """Pooled features of several layers in one forward pass.

    Args:
        backbone: from :func:`extractor.load_backbone`.
        layers: feature-map layer names (``python -m extractor layers BACKBONE``).
        poolings: any of ``avg``, ``max``, ``gem``, ``avgmax``, ``flatten``, ``none``.
        precision: ``float32`` or ``bfloat16`` (Keras mixed precision; features come back float32).
        resize: ``stretch``, ``center-crop``, ``pad`` or ``native`` (each image at its own size).
        max_raw_bytes: cap on the memory ``none``/``flatten`` outputs may take for one call.
        runtime: ``auto`` (OpenVINO on a CPU when installed, else TensorFlow), ``tensorflow`` or
            ``openvino`` (see :mod:`extractor.runtime`). Under ``auto`` a model OpenVINO cannot convert
            runs on TensorFlow and :attr:`runtime_note` says why; under ``openvino`` it raises
            :class:`~extractor.runtime.ConversionError`.
        background: with ``runtime="auto"``, don't wait for a conversion the cache lacks: serve
            TensorFlow until it lands on a background thread, then switch (:meth:`is_ready`).

    :attr:`runtime` and :attr:`precision` say what actually runs; each :class:`ExtractionResult`
    says what computed it.
    """

    def __init__(
        self,
        backbone: Backbone,
        layers: Sequence[str],
        poolings: Sequence[str] | str = ("avg",),
        *,
        precision: str = "float32",
        resize: str = "stretch",
        max_raw_bytes: int = DEFAULT_MAX_RAW_BYTES,
        runtime: str = "auto",
        background: bool = False,
    ):
        from .images import RESIZE_POLICIES

        if precision not in PRECISIONS:
            raise ExtractionRequestError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}.")
        if resize not in RESIZE_POLICIES:
            raise ExtractionRequestError(f"resize policy {resize!r} is not one of {', '.join(RESIZE_POLICIES)}.")
        if isinstance(layers, str):
            layers = [lyr for lyr in layers.split(",") if lyr.strip()]
        layers = list(dict.fromkeys(lyr.strip() for lyr in layers))
        if not layers:
            raise ExtractionRequestError("no layer given; pick at least one (`python -m extractor layers BACKBONE`).")
        self.poolings = check_poolings(poolings)
        if resize == "native":
            refused = [p for p in self.poolings if p in ("flatten", "none")]
            if refused:
                raise ExtractionRequestError(
                    f"pooling {refused[0]!r} needs every image at the same size, but resize 'native' keeps each "
                    "image at its own size, so the vectors would differ in length. Use a global pooling "
                    "(avg, max, gem, avgmax) or a resize policy (stretch, center-crop, pad)."
                )

        self.backbone = backbone
        self.requested_precision = precision
        self.resize = resize
        self.max_raw_bytes = int(max_raw_bytes)
        table = feature_layers(backbone.model)
        self.layer_infos: list[LayerInfo] = [find_layer(table, name, backbone.name) for name in layers]
        self.layers = [info.name for info in self.layer_infos]
        self.input_size = None if resize == "native" else (backbone.input_size or backbone.spec.input_size)

        self.keys = [feature_key(layer, p) for layer in self.layers for p in self.poolings]
        self.traces = 0  # Python-side trace count of the TensorFlow forward (one per precision built)
        self.forward_calls = 0  # counted so callers (benchmarks, the app) can prove caching works
        self._lock = threading.Lock()
        self._tf_functions: dict[str | None, tuple] = {}
        self.requested_runtime = runtime
        self.runtime_note: str | None = None  # a one-line note when the runtime asked for could not serve
        self.plan: GraphPlan | None = None
        self._conversion: Future | None = None
        resolved = resolve_runtime(runtime)
        if resolved == "tensorflow":
            self._engine = self._tensorflow_engine()
            return
        self.plan = GraphPlan(backbone.name, weights_digest(backbone.model), tuple(self.layers), tuple(self.poolings),
                              self.input_size, backbone.spec.preprocessing)
        # OpenVINO converts the float32 graph for both precisions; bfloat16 is its compile-time hint.
        function = self._tf_function(None)[0]
        if background and runtime == "auto" and not is_converted(self.plan):
            # Serve TensorFlow now; switch to OpenVINO when the background conversion lands.
            self._engine = self._tensorflow_engine()
            self._conversion = start_conversion(self.plan, function, self._check_conversion)
            self._conversion.add_done_callback(self._adopt_conversion)
            return
        try:
            self._engine = self._openvino_engine(convert(self.plan, function, self._check_conversion))
        except ConversionError as exc:
            if runtime == "openvino":
                raise
            self._fall_back(exc)

    # ------------------------------------------------------------------ runtime
    @property
    def runtime(self) -> str:
        """The engine serving calls right now: ``"tensorflow"`` or ``"openvino"``."""
        return self._engine.name

    @property
    def precision(self) -> str:
        """The precision that actually runs (``float32`` or ``bfloat16``)."""
        return self._engine.precision

    def is_ready(self) -> bool:
        """False while a background OpenVINO conversion is still running (TensorFlow serves meanwhile)."""
        return self._conversion is None or self._conversion.done()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until a background conversion has finished (and been adopted); True when ready."""
        if self._conversion is None:
            return True
        try:
            self._conversion.result(timeout)
        except ConversionError:
            pass
        except TimeoutError:
            return False
        with self._lock:  # the done-callback swaps the engine under this lock
            return True

    def _tf_function(self, policy: str | None):
        """(tf.function, its one concrete function, the Keras cut) for a dtype policy, traced once and kept."""
        if policy in self._tf_functions:
            return self._tf_functions[policy]
        import keras
        import tensorflow as tf

        backbone = self.backbone
        # The network at the size this extractor feeds it (None: native) and in its precision;
        # same weights, rebuilt only when something differs from the backbone as loaded.
        model = backbone.model
        if self.input_size != backbone.input_size or policy:
            model = rebuild_backbone(backbone, input_size=self.input_size or "native", dtype_policy=policy).model
        scope = re.sub(r"[^A-Za-z0-9_.-]", "_", backbone.name)  # TensorFlow name scopes refuse spaces etc.
        cut = keras.Model(model.inputs, _layer_outputs(model, self.layers), name=f"{scope}_extractor")
        mode = backbone.spec.preprocessing
        layers, poolings = list(self.layers), list(self.poolings)

        def forward(images):
            self.traces += 1  # runs only while tracing
            x = preprocess_tensor(tf.cast(images, tf.float32), mode)
            maps = cut(x, training=False)
            maps = maps if isinstance(maps, (list, tuple)) else [maps]
            out = {}
            for layer, fmap in zip(layers, maps, strict=True):
                fmap = tf.cast(fmap, tf.float32)
                for pooling in poolings:
                    out[feature_key(layer, pooling)] = pool(fmap, pooling)
            return out

        h, w = self.input_size or (None, None)
        function = tf.function(forward, input_signature=[tf.TensorSpec([None, h, w, 3], tf.uint8, name="images")])
        # Calls go to the concrete function: it cannot retrace, and it bypasses tf.function's
        # frequent-retracing detector, which keys on forward's code object — shared by every
        # FeatureExtractor, so building several (a sweep, the app's configurations) tripped the warning.
        self._tf_functions[policy] = (function, function.get_concrete_function(), cut)
        return self._tf_functions[policy]

    def _tensorflow_engine(self) -> TensorFlowEngine:
        policy = "mixed_bfloat16" if self.requested_precision == "bfloat16" else None
        return TensorFlowEngine(self._tf_function(policy)[1], self.requested_precision)

    def _openvino_engine(self, xml) -> OpenVINOEngine:
        try:
            engine = OpenVINOEngine(xml, self.requested_precision, keys=self.keys)
        except ConversionError:
            raise
        except Exception as exc:  # a compile failure is a conversion failure for the user
            reason = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:200]}"
            raise ConversionError(f"OpenVINO could not compile {self.backbone.name!r} ({reason}).", reason) from exc
        if engine.note:
            self.runtime_note = engine.note
        return engine

    def _check_conversion(self, xml) -> None:
        """Refuse a converted graph whose float32 outputs differ from TensorFlow's on one batch."""
        h, w = self.input_size or self.backbone.spec.input_size
        batch = np.random.default_rng(0).integers(0, 256, (2, h, w, 3), dtype=np.uint8)
        expected = TensorFlowEngine(self._tf_function(None)[1], "float32")(batch)
        got = OpenVINOEngine(xml, "float32", keys=self.keys)(batch)
        for key in self.keys:
            scale = float(np.max(np.abs(expected[key]))) + 1e-6
            error = float(np.max(np.abs(got[key] - expected[key]))) / scale
            if not np.isfinite(error) or error > 1e-3:
                reason = f"its output {key} differs from TensorFlow's by {error:.1e} (relative)"
                raise ConversionError(f"OpenVINO's conversion of {self.backbone.name!r} is not faithful: {reason}.",
                                      reason)

    def _fall_back(self, exc: ConversionError) -> None:
        self.runtime_note = f"OpenVINO could not run this model ({exc.reason}); running on TensorFlow instead."
        log.warning("%s: %s", self.backbone.name, self.runtime_note)
        self._engine = self._tensorflow_engine()

    def _adopt_conversion(self, future: Future) -> None:
        with self._lock:
            try:
                self._engine = self._openvino_engine(future.result())
            except ConversionError as exc:
                self._fall_back(exc)
            except Exception as exc:  # never let a background failure go unsaid
                self._fall_back(ConversionError(str(exc), f"{type(exc).__name__}: {exc}"))

    # ------------------------------------------------------------------ public
    def dims(self) -> dict[str, int | None]:
        """Length of each output vector by key (None where it depends on the image size)."""
        return {feature_key(i.name, p): pooled_dim(self._shape_at_input(i), p) for i in self.layer_infos for p in self.poolings}

    def warm(self) -> FeatureExtractor:
        """Trace and run the graph once on a blank image, so the first real call is fast."""
        h, w = self.input_size or self.backbone.spec.input_size
        self._run(np.zeros((1, h, w, 3), np.uint8))
        self.forward_calls = 0
        return self

    def run_batch(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """The forward pass on a ready (N, H, W, 3) uint8 batch (already resized)."""
        batch = np.asarray(batch)
        if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[-1] != 3:
            raise ExtractionRequestError(f"run_batch needs (N, H, W, 3) uint8 images; got {batch.dtype} {batch.shape}.")
        return self._run(batch)

    def extract(
        self,
        inputs: Iterable,
        *,
        batch_size: int = 32,
        progress: Callable[[int, int | None], None] | None = None,
        workers: int | None = None,
    ) -> ExtractionResult:
        """Pooled features for every input that decodes; the others are named in ``failures``.

        ``inputs`` may mix ``ImageSource`` objects (from :mod:`extractor.sources`), RGB uint8
        arrays, file paths and ``(name, bytes)`` pairs. Raises :class:`NoImagesError` when none
        of them decodes.
        """
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ExtractionRequestError(f"batch size must be a positive integer; got {batch_size!r}.")
        items = inputs if isinstance(inputs, Sequence) else list(inputs)
        total = len(items)
        self.check_memory(total)
        start = time.perf_counter()
        engine = self._engine  # one engine for the whole call, even if a background conversion lands
        workers = workers or min(4, os.cpu_count() or 2)
        chunks: dict[str, list[np.ndarray]] = {key: [] for key in self.keys}
        names, labels, indices, failures, notes = [], [], [], [], []
        done = 0
        window = batch_size * (_NATIVE_WINDOW_BATCHES if self.resize == "native" else 1)

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
            pending: deque = deque()
            feed = iter(enumerate(items))

            def refill():
                # Keep two windows of decoding in flight ahead of the forward pass.
                while len(pending) < 2 * window:
                    try:
                        i, item = next(feed)
                    except StopIteration:
                        return
                    pending.append(pool.submit(self._prepare, i, item))

            refill()
            while pending:
                ready = []
                while pending and len(ready) < window:
                    i, name, label, pixels, why, item_notes = pending.popleft().result()
                    refill()
                    notes.extend(item_notes)
                    if pixels is None:
                        failures.append(Failure(name, why))
                        done += 1
                    else:
                        ready.append((i, name, label, pixels))
                for group in self._groups(ready, batch_size):
                    out = self._run(np.stack([g[3] for g in group]), engine)
                    for key in self.keys:
                        chunks[key].append(out[key])
                    for i, name, label, _ in group:
                        indices.append(i)
                        names.append(name)
                        labels.append(label)
                    done += len(group)
                    self.check_memory(len(names))
                    if progress is not None:
                        progress(done, total)
        if progress is not None:
            progress(done, total)
        if not names:
            reasons = "; ".join(f.message for f in failures[:3]) or "no inputs were given"
            raise NoImagesError(f"No image could be processed ({reasons}).", failures)

        order = np.argsort(indices, kind="stable")  # native mode groups by shape: restore input order
        features = {key: np.concatenate(chunks[key])[order].astype(np.float32, copy=False) for key in self.keys}
        return ExtractionResult(
            features=features,
            names=[names[j] for j in order],
            labels=[labels[j] for j in order],
            indices=[indices[j] for j in order],
            failures=failures,
            notes=notes + ([self.runtime_note] if self.runtime_note else []),
            seconds=time.perf_counter() - start,
            runtime=engine.name,
            precision=engine.precision,
        )

    # ------------------------------------------------------------------ internals
    def _run(self, batch: np.ndarray, engine=None) -> dict[str, np.ndarray]:
        self.forward_calls += 1
        return (engine or self._engine)(batch)

    def _shape_at_input(self, info: LayerInfo):
        if info.shape[0] is not None or self.input_size is None:
            return info.shape
        stride = info.stride or 1
        return (self.input_size[0] // stride, self.input_size[1] // stride, info.shape[2])

    def check_memory(self, n_images: int) -> None:
        """Refuse (RawMapsTooLargeError) when ``none``/``flatten`` outputs for ``n_images`` exceed the cap."""
        per_image = 0
        for info in self.layer_infos:
            h, w, c = self._shape_at_input(info)
            if h is None:
                continue
            for pooling in self.poolings:
                if pooling in ("none", "flatten"):
                    per_image += h * w * c * 4
        need = per_image * n_images
        if need > self.max_raw_bytes:
            raise RawMapsTooLargeError(
                f"raw maps / flatten vectors for {n_images} images would need {need / 2**20:,.0f} MiB, over the "
                f"{self.max_raw_bytes / 2**20:,.0f} MiB cap. Use a global pooling (avg, max, gem, avgmax), "
                "fewer images, or a deeper (smaller) layer."
            )

    def _groups(self, ready: list, batch_size: int):
        if self.resize != "native":
            for start in range(0, len(ready), batch_size):
                yield ready[start:start + batch_size]
            return
        by_shape: dict[tuple, list] = {}
        for entry in ready:
            by_shape.setdefault(entry[3].shape, []).append(entry)
        for group in by_shape.values():
            for start in range(0, len(group), batch_size):
                yield group[start:start + batch_size]

    def _prepare(self, index: int, item):
        """Decode and resize one input on a worker thread; never raises for a bad image."""
        from . import images as img

        name, label, notes = f"image_{index}", None, ()
        try:
            if isinstance(item, np.ndarray):
                pixels = _check_array(item, name)
                if self.input_size is not None:
                    pixels = img.resize_image(pixels, self.input_size, self.resize)
                return index, name, label, pixels, None, ()
            if isinstance(item, tuple) and len(item) == 2:
                name, data = str(item[0]), item[1]
            elif isinstance(item, (str, os.PathLike)):
                name = str(item)
                try:
                    data = Path(item).read_bytes()
                except OSError as exc:
                    return index, name, label, None, f"cannot be read ({exc.strerror or exc})", ()
            else:  # an ImageSource
                name, data, label = item.name, item.data, getattr(item, "label", None)
            decoded = img.load_image(data, name, self.input_size, self.resize)
            notes = tuple(Failure(name, n, "note") for n in decoded.notes)
            return index, name, label, decoded.pixels, None, notes
        except img.InvalidImageError as exc:
            return index, name, label, None, exc.reason, notes
        except LayerExplorerError as exc:
            return index, name, label, None, str(exc), notes


def _check_array(array: np.ndarray, name: str) -> np.ndarray:
    from .images import InvalidImageError

    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise InvalidImageError(name, f"an image array must be (H, W, 3) RGB; got shape {array.shape}.")
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating) and np.nanmax(array) <= 1.0:
            array = array * 255.0
        array = np.clip(np.nan_to_num(array), 0, 255).astype(np.uint8)
    return array
