"""How a network runs: one small engine interface, a TensorFlow engine and an OpenVINO engine.

*What* to compute (backbone, layers, poolings, preprocessing) is decided by
:class:`~extractor.features.FeatureExtractor`, which traces it once into a TensorFlow function
taking a uint8 ``(N, H, W, 3)`` batch and returning ``{"layer/pooling": array}``. *How* it runs is
an :class:`Engine`: a callable mapping that uint8 batch to a dict of float32 NumPy arrays.

* ``tensorflow`` — the reference: the traced function itself.
* ``openvino`` — the same traced function (preprocessing and pooling included) converted with
  ``openvino.convert_model``, saved with ``ov.save_model`` in an on-disk cache, compiled for the CPU.
* ``auto`` — OpenVINO when it is installed and TensorFlow sees no GPU; TensorFlow otherwise.

Conversion is paid once per graph: the IR is kept under :func:`cache_dir` (``$LAYER_EXPLORER_OV_CACHE``,
default ``~/.cache/layer-explorer/openvino``) keyed by :class:`GraphPlan` — backbone, a hash of the
weights and architecture, layers, poolings, input size, preprocessing — and OpenVINO's own compiled-model
cache (``CACHE_DIR``) lives beside it. :func:`conversion_count` counts the conversions this process ran.

Example:
    >>> resolve_runtime("tensorflow")
    'tensorflow'
    >>> plan = GraphPlan("demo-shapes", "0" * 8, ("conv1",), ("avg",), (64, 64), "none")
    >>> len(plan.key)
    24
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from .errors import LayerExplorerError

__all__ = [
    "RUNTIMES",
    "Engine",
    "GraphPlan",
    "RuntimeChoiceError",
    "RuntimeUnavailableError",
    "ConversionError",
    "TensorFlowEngine",
    "OpenVINOEngine",
    "openvino_available",
    "resolve_runtime",
    "cache_dir",
    "conversion_count",
    "is_converted",
    "convert",
    "start_conversion",
    "openvino_engine",
    "openvino_threads",
    "weights_digest",
]

RUNTIMES = ("auto", "tensorflow", "openvino")
CACHE_ENV = "LAYER_EXPLORER_OV_CACHE"
THREADS_ENV = "LAYER_EXPLORER_OV_THREADS"
_FORMAT = 1  # bump when the converted graph changes meaning (invalidates old cache entries)
_OV_PRECISION = {"float32": "f32", "bfloat16": "bf16"}

log = logging.getLogger(__name__)


class RuntimeChoiceError(LayerExplorerError):
    """The runtime name is not one of :data:`RUNTIMES`."""


class RuntimeUnavailableError(LayerExplorerError):
    """``runtime="openvino"`` was asked for but OpenVINO is not installed."""


class ConversionError(LayerExplorerError):
    """OpenVINO could not convert (or faithfully reproduce) the graph; ``reason`` says why."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


class Engine(Protocol):
    """Maps a uint8 ``(N, H, W, 3)`` batch to ``{"layer/pooling": float32 array}``."""

    name: str  # "tensorflow" or "openvino"
    precision: str  # "float32" or "bfloat16": what actually runs

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]: ...


@dataclass(frozen=True)
class GraphPlan:
    """Everything that changes the converted graph; its :attr:`key` names the cache entry.

    Precision is not part of it: both precisions convert the same float32 graph and differ only in
    the ``INFERENCE_PRECISION_HINT`` they are compiled with (OpenVINO's ``CACHE_DIR`` keys the compiled
    blob by that hint itself).
    """

    backbone: str
    weights: str  # weights_digest() of the model
    layers: tuple[str, ...]
    poolings: tuple[str, ...]
    input_size: tuple[int, int] | None  # None: any size (native resize)
    preprocessing: str

    @property
    def key(self) -> str:
        payload = json.dumps([_FORMAT, _ov_version(), self.backbone, self.weights, list(self.layers),
                              list(self.poolings), self.input_size, self.preprocessing])
        return hashlib.sha256(payload.encode()).hexdigest()[:24]


def weights_digest(model) -> str:
    """A short hash of a Keras model's architecture and weights (which layers, which numbers).

    Example:
        >>> import keras
        >>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> weights_digest(m) == weights_digest(m)
        True
    """
    digest = hashlib.blake2b(digest_size=16)
    digest.update(json.dumps([(layer.name, type(layer).__name__) for layer in model._flatten_layers()]).encode())
    for weight in model.weights:
        value = np.ascontiguousarray(weight.numpy())
        digest.update(f"{weight.path}:{value.dtype}:{value.shape}".encode())
        digest.update(value.data)
    return digest.hexdigest()


# ------------------------------------------------------------------ choosing a runtime
def openvino_available() -> bool:
    """True when the ``openvino`` package imports."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def _tf_sees_gpu() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def resolve_runtime(runtime: str) -> str:
    """``"tensorflow"`` or ``"openvino"``: what ``runtime`` means on this machine.

    ``auto`` is OpenVINO when it is installed and TensorFlow sees no GPU (on a GPU, TensorFlow is the
    faster engine; on a CPU, OpenVINO's kernels and graph fusion are). ``openvino`` without the package
    installed raises :class:`RuntimeUnavailableError`.
    """
    if runtime not in RUNTIMES:
        raise RuntimeChoiceError(f"runtime {runtime!r} is not one of {', '.join(RUNTIMES)}.")
    if runtime == "tensorflow":
        return runtime
    if runtime == "openvino":
        if not openvino_available():
            raise RuntimeUnavailableError("runtime 'openvino' was asked for but the openvino package is not "
                                          "installed; `pip install 'openvino>=2026.4,<2027'` or use runtime "
                                          "'tensorflow'.")
        return runtime
    return "openvino" if openvino_available() and not _tf_sees_gpu() else "tensorflow"


def openvino_threads() -> int:
    """The inference thread count given to OpenVINO (``$LAYER_EXPLORER_OV_THREADS`` overrides it).

    Every core this process may use, in one stream (``PERFORMANCE_HINT=LATENCY``): the app runs one
    forward pass at a time behind its inference semaphore and the CLI runs one, so a second stream would
    only oversubscribe the cores; and OpenVINO's default thread count reads the machine's cores, not the
    process's CPU affinity, which oversubscribes a container. Image decoding runs on its own threads ahead
    of the forward pass and takes its share while OpenVINO waits between batches; on a decode-bound
    backbone (MobileNetV2) set ``$LAYER_EXPLORER_OV_THREADS`` to one less than the cores to leave it one.
    """
    value = os.environ.get(THREADS_ENV)
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            log.warning("%s=%r is not an integer; using every available core", THREADS_ENV, value)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


# ------------------------------------------------------------------ engines
class TensorFlowEngine:
    """The reference engine: a traced TensorFlow function called directly (it never retraces)."""

    name = "tensorflow"
    note = None  # TensorFlow runs the precision asked for (bfloat16 by Keras mixed precision on any CPU)

    def __init__(self, function: Callable, precision: str):
        self._function = function
        self.precision = precision

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        import tensorflow as tf

        out = self._function(tf.constant(batch))
        return {key: value.numpy() for key, value in out.items()}


class OpenVINOEngine:
    """A converted graph compiled for the CPU; outputs are keyed by the traced function's dict keys."""

    name = "openvino"

    def __init__(self, xml_path: Path, precision: str, threads: int | None = None, keys=None):
        import openvino as ov

        config = {
            # Explicit: on a CPU with bf16 support OpenVINO's default is bf16, which breaks f32 parity.
            "INFERENCE_PRECISION_HINT": _OV_PRECISION[precision],
            "INFERENCE_NUM_THREADS": int(threads or openvino_threads()),
            "PERFORMANCE_HINT": "LATENCY",
            "CACHE_DIR": str(cache_dir() / "compiled"),
        }
        self._compiled = _core().compile_model(str(xml_path), "CPU", config)
        # Read back what the CPU plugin chose: on a CPU without bf16 support it runs f32 whatever the hint.
        actual = self._compiled.get_property("INFERENCE_PRECISION_HINT")
        self.precision = "bfloat16" if actual == ov.Type.bf16 else "float32"
        # Said once, where the user sees the runtime: asking for bfloat16 on such a CPU changes nothing.
        self.note = None
        if precision == "bfloat16" and self.precision == "float32":
            offered = ", ".join(_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
            self.note = (f"bfloat16 was asked for, but this CPU has no bfloat16 instructions (OpenVINO offers "
                         f"{offered} here), so float32 runs, with float32's numbers.")
        self._request = self._compiled.create_infer_request()
        # An output may carry several names (two keys the converter found to be one tensor, e.g. an
        # identity layer's maps): look each wanted key up among all of them.
        index = {name: i for i, out in enumerate(self._compiled.outputs) for name in out.get_names()}
        wanted = list(keys) if keys is not None else [min(out.get_names()) for out in self._compiled.outputs]
        missing = [key for key in wanted if key not in index]
        if missing:
            raise ConversionError(f"OpenVINO's converted graph has no output {missing[0]!r}.",
                                  f"output {missing[0]} was lost in conversion")
        self._outputs = [(key, index[key]) for key in wanted]
        self._lock = threading.Lock()  # one infer request: one caller at a time

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        with self._lock:
            self._request.infer([np.ascontiguousarray(batch)])
            # The request's output buffers are reused by the next call: copy them out.
            return {key: np.array(self._request.get_output_tensor(i).data, dtype=np.float32)
                    for key, i in self._outputs}


_core_lock = threading.Lock()
_core_instance = None


def _core():
    global _core_instance
    with _core_lock:
        if _core_instance is None:
            import openvino as ov

            _core_instance = ov.Core()
        return _core_instance


def _ov_version() -> str:
    try:
        import openvino as ov
    except ImportError:
        return "none"
    return ov.__version__


# ------------------------------------------------------------------ the conversion cache
def cache_dir() -> Path:
    """Where converted models live: ``$LAYER_EXPLORER_OV_CACHE``, else ``~/.cache/layer-explorer/openvino``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "layer-explorer" / "openvino"


_count_lock = threading.Lock()
_conversions = 0
_inflight: dict[str, Future] = {}
_inflight_lock = threading.Lock()
_converter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ov-convert")  # one conversion at a time


def conversion_count() -> int:
    """How many graphs this process has converted with OpenVINO (cache hits do not count)."""
    return _conversions


def _xml_path(plan: GraphPlan) -> Path:
    return cache_dir() / f"{plan.backbone.replace('/', '_')[:40]}-{plan.key}.xml"


def is_converted(plan: GraphPlan) -> bool:
    """True when the converted model for ``plan`` is in the on-disk cache (no conversion needed)."""
    return _xml_path(plan).is_file() and _xml_path(plan).with_suffix(".bin").is_file()


def _convert_to_ov(function):
    """Seam for tests: ``openvino.convert_model`` on the traced function."""
    import openvino as ov

    return ov.convert_model(function)


def _convert_now(plan: GraphPlan, function, check: Callable | None) -> Path:
    global _conversions
    xml = _xml_path(plan)
    if is_converted(plan):
        return xml
    import openvino as ov

    try:
        model = _convert_to_ov(function)
    except Exception as exc:  # the converter raises many types; all mean "cannot convert this graph"
        reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}"
        raise ConversionError(f"OpenVINO could not convert {plan.backbone!r} ({reason}).", reason) from exc
    with _count_lock:
        _conversions += 1
    xml.parent.mkdir(parents=True, exist_ok=True)
    # Write under a unique name, then rename: a second process or thread never reads half a file, and
    # the .xml (what is_converted looks for) appears after its .bin.
    tmp = xml.with_name(f".{xml.stem}.{uuid.uuid4().hex[:8]}.xml")
    ov.save_model(model, str(tmp), compress_to_fp16=False)  # fp16 weights would break float32 parity
    if check is not None:
        try:
            check(tmp)
        except ConversionError:
            tmp.unlink(missing_ok=True)
            tmp.with_suffix(".bin").unlink(missing_ok=True)
            raise
    os.replace(tmp.with_suffix(".bin"), xml.with_suffix(".bin"))
    os.replace(tmp, xml)
    log.info("converted %s to OpenVINO (%s)", plan.backbone, xml.name)
    return xml


def convert(plan: GraphPlan, function, check: Callable | None = None) -> Path:
    """The cached IR for ``plan``, converting ``function`` now (blocking) if the cache lacks it.

    ``check(xml_path)`` may raise :class:`ConversionError` to refuse a converted graph (the extractor
    compares it with TensorFlow on one batch). A conversion already running for the same plan is
    waited for, not repeated.
    """
    return start_conversion(plan, function, check).result()


def start_conversion(plan: GraphPlan, function, check: Callable | None = None) -> Future:
    """Start converting ``plan`` on a background thread (or return the running one); never blocks.

    The future's result is the IR path, or it raises :class:`ConversionError`.
    """
    with _inflight_lock:
        if plan.key in _inflight:
            return _inflight[plan.key]
        if is_converted(plan):
            done: Future = Future()
            done.set_result(_xml_path(plan))
            return done
        future = _converter.submit(_convert_now, plan, function, check)
        _inflight[plan.key] = future
    future.add_done_callback(lambda _f: _forget(plan.key))
    return future


def _forget(key: str) -> None:
    with _inflight_lock:
        _inflight.pop(key, None)


def openvino_engine(plan: GraphPlan, function, precision: str, check: Callable | None = None) -> OpenVINOEngine:
    """Convert (or reuse) and compile: an :class:`OpenVINOEngine` for ``plan`` at ``precision``."""
    return OpenVINOEngine(convert(plan, function, check), precision)
