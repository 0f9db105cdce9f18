"""The backbone registry: one spec per network, and loading it with honest weights.

A :class:`BackboneSpec` carries everything that must never drift apart from the network:
its constructor, its default input size and its own preprocessing. :func:`load_backbone`
builds it (``include_top=False``) with ImageNet weights, random weights or a local file, and
returns a :class:`Backbone` that always says which weights are really loaded.

Example:
    >>> bb = load_backbone("vgg16", weights="none", input_size=(64, 64))
    >>> bb.weights.kind, bb.input_size
    ('random', (64, 64))
    >>> x = bb.spec.preprocess(np.zeros((1, 64, 64, 3), np.uint8))   # a float32 copy
"""

from __future__ import annotations

import os
import socket
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .demo_cnn import DEMO_INPUT_SIZE, DEMO_WEIGHTS_PATH, build_demo_cnn
from .errors import LayerExplorerError

__all__ = [
    "BackboneSpec",
    "Backbone",
    "WeightsInfo",
    "BACKBONES",
    "PREPROCESSING_MODES",
    "UnknownBackboneError",
    "WeightsUnavailableError",
    "ImageNetWeightsMissingError",
    "MissingWeights",
    "InvalidInputSizeError",
    "get_spec",
    "load_backbone",
    "imagenet_weights_path",
    "imagenet_cached",
    "keras_cache_dir",
    "preprocess_images",
    "rebuild_backbone",
    "backbone_from_model",
]

PREPROCESSING_MODES = ("caffe", "tf", "torch", "none")

# Per-channel constants of Keras's imagenet_utils.preprocess_input, written out so the same
# arithmetic can run in NumPy (public API) and inside the compiled graph (fast path).
_CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], np.float32)
_TORCH_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_TORCH_STD = np.array([0.229, 0.224, 0.225], np.float32)

# Keras's files are served from here; only used to decide quickly whether a download can work.
_WEIGHTS_HOST = ("storage.googleapis.com", 443)
_PROBE_TTL_S = 300.0
_RANDOM_SEED = 0


class UnknownBackboneError(LayerExplorerError):
    """The backbone name is not in the registry (and is not a model file)."""


class WeightsUnavailableError(LayerExplorerError):
    """The requested weights cannot be loaded; the message lists what was tried and the ways out."""


@dataclass(frozen=True)
class MissingWeights:
    """What a missing-ImageNet-weights refusal is about, as data: the UI phrases it in its own words.

    Which ways out to offer (random weights, a local weights file, the demo backbone) is the
    caller's decision: a deployment may not allow local files.
    """

    backbone: str  # registry name
    requested: str  # what the caller asked for: "pretrained" or "imagenet"
    file_name: str  # the Keras cache file looked for
    cache_dir: str  # the folder it was looked for in: a server path, for the command line only
    cause: str  # "not-cached-offline" (no file, no internet) or "load-failed" (download or file broken)
    detail: str = ""  # the failing exception's type for "load-failed"


class ImageNetWeightsMissingError(WeightsUnavailableError):
    """ImageNet weights are neither in the Keras cache nor downloadable; ``.missing`` says which and where."""

    def __init__(self, message: str, missing: MissingWeights):
        super().__init__(message, missing)  # both in args, so pickling (Streamlit caches) keeps the fields
        self.missing = missing

    def __str__(self) -> str:
        return str(self.args[0])


class InvalidInputSizeError(LayerExplorerError):
    """The input size is too small, malformed, or not allowed for this architecture."""


def preprocess_images(images: np.ndarray, mode: str) -> np.ndarray:
    """Apply a Keras ``preprocess_input`` mode to RGB 0..255 images; returns a new float32 array.

    Same arithmetic as ``keras.applications.imagenet_utils.preprocess_input`` ("caffe": RGB→BGR
    and mean subtraction; "tf": scale to [-1, 1]; "torch": [0, 1] then ImageNet mean/std;
    "none": unchanged, for models that rescale inside). The argument is never modified.

    Example:
        >>> preprocess_images(np.full((1, 2, 2, 3), 255, np.uint8), "tf").max()
        1.0
    """
    x = np.array(images, dtype=np.float32, copy=True)
    if mode == "caffe":
        x = x[..., ::-1] - _CAFFE_MEAN_BGR
    elif mode == "tf":
        x = x / 127.5 - 1.0
    elif mode == "torch":
        x = (x / 255.0 - _TORCH_MEAN) / _TORCH_STD
    elif mode != "none":
        raise ValueError(f"unknown preprocessing mode {mode!r}; expected one of {PREPROCESSING_MODES}")
    return np.ascontiguousarray(x, dtype=np.float32)


def preprocess_tensor(x, mode: str):
    """The graph twin of :func:`preprocess_images` for a float32 tensor (used inside tf.function)."""
    import tensorflow as tf

    if mode == "caffe":
        return tf.reverse(x, axis=[-1]) - tf.constant(_CAFFE_MEAN_BGR)
    if mode == "tf":
        return x / 127.5 - 1.0
    if mode == "torch":
        return (x / 255.0 - tf.constant(_TORCH_MEAN)) / tf.constant(_TORCH_STD)
    return x


@dataclass(frozen=True)
class BackboneSpec:
    """What the app and the CLI need to know about one backbone before building it.

    ``build(input_shape, weights)`` returns a ``keras.Model`` without its classifier head;
    ``weights`` is ``"imagenet"`` or ``None`` for Keras applications. ``imagenet_file`` is the
    name Keras caches the no-top weights under (``None`` when the spec has no ImageNet weights).
    """

    name: str
    build: Callable[..., object] = field(repr=False)
    input_size: tuple[int, int]
    preprocessing: str
    min_input_size: int = 32
    family: str = ""
    imagenet_file: Callable[[tuple[int, int]], str] | None = field(default=None, repr=False)
    pretrained: str = "imagenet"  # what weights="pretrained" means for this spec
    description: str = ""
    # keras.applications submodule and constructor ("vgg16", "VGG16"): the code-snippet builder's source
    keras_module: str | None = None
    keras_constructor: str | None = None
    # Wraps an in-memory model: rebuilt from that model at another size, not from a constructor.
    from_model: bool = False

    def preprocess(self, images: np.ndarray) -> np.ndarray:
        """This backbone's preprocessing on a copy of ``images`` (RGB, 0..255)."""
        return preprocess_images(images, self.preprocessing)


@dataclass(frozen=True)
class WeightsInfo:
    """Which weights are really in the model: ``kind`` is imagenet, random, file or shipped."""

    kind: str
    description: str
    source: str | None = None  # a file name (never shown as a full server path in the app)
    bn_calibrated_on: int | None = None  # images its BN statistics were re-estimated on (extractor.calibration)

    @property
    def is_pretrained(self) -> bool:
        return self.kind in ("imagenet", "file", "shipped")


@dataclass(frozen=True, eq=False)
class Backbone:
    """A built network plus the facts about it. ``input_size`` is None for native-size models."""

    spec: BackboneSpec
    model: object = field(repr=False)
    weights: WeightsInfo
    input_size: tuple[int, int] | None
    weights_request: str = "pretrained"

    @property
    def name(self) -> str:
        return self.spec.name


# --------------------------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------------------------

def _keras_app(attr: str):
    def build(input_shape, weights):
        import keras

        return getattr(keras.applications, attr)(include_top=False, weights=weights, input_shape=input_shape)

    return build


def _fixed(file_name: str):
    return lambda size: file_name


def _mobilenet_v2_file(size):
    # Keras ships MobileNetV2 weights for these square sizes; others load the 224 file.
    rows = size[0] if size[0] == size[1] and size[0] in (96, 128, 160, 192, 224) else 224
    return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5"


def _spec(name, module, attr, size, mode, family, file_fn, min_size=32, description=""):
    return BackboneSpec(
        name=name,
        build=_keras_app(attr),
        input_size=size,
        preprocessing=mode,
        min_input_size=min_size,
        family=family,
        imagenet_file=file_fn,
        description=description,
        keras_module=module,
        keras_constructor=attr,
    )


_NOTOP = "_weights_tf_dim_ordering_tf_kernels_notop.h5"
BACKBONES: dict[str, BackboneSpec] = {
    s.name: s
    for s in [
        _spec("vgg16", "vgg16", "VGG16", (224, 224), "caffe", "VGG", _fixed("vgg16" + _NOTOP),
              description="VGG16: plain stacks of 3×3 convolutions, five blocks; the classic baseline for transfer features."),
        _spec("vgg19", "vgg19", "VGG19", (224, 224), "caffe", "VGG", _fixed("vgg19" + _NOTOP),
              description="VGG19: VGG16 with one more conv in blocks 3–5."),
        _spec("resnet50", "resnet50", "ResNet50", (224, 224), "caffe", "ResNet", _fixed("resnet50" + _NOTOP),
              description="ResNet50: residual bottleneck blocks in four stages (conv2–conv5)."),
        _spec("resnet50v2", "resnet_v2", "ResNet50V2", (224, 224), "tf", "ResNet", _fixed("resnet50v2" + _NOTOP),
              description="ResNet50 V2: pre-activation residual blocks."),
        _spec("mobilenetv2", "mobilenet_v2", "MobileNetV2", (224, 224), "tf", "MobileNet", _mobilenet_v2_file,
              description="MobileNetV2: inverted residual blocks with depthwise convolutions; fast on CPU."),
        _spec("mobilenetv3small", "mobilenet_v3", "MobileNetV3Small", (224, 224), "none", "MobileNet",
              _fixed("weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"),
              description="MobileNetV3 Small: tiny and fast; rescales its input inside the model."),
        _spec("mobilenetv3large", "mobilenet_v3", "MobileNetV3Large", (224, 224), "none", "MobileNet",
              _fixed("weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5"),
              description="MobileNetV3 Large; rescales its input inside the model."),
        _spec("efficientnetb0", "efficientnet", "EfficientNetB0", (224, 224), "none", "EfficientNet",
              _fixed("efficientnetb0_notop.h5"),
              description="EfficientNet-B0: MBConv blocks; normalises its input inside the model."),
        _spec("densenet121", "densenet", "DenseNet121", (224, 224), "torch", "DenseNet",
              _fixed("densenet121" + _NOTOP),
              description="DenseNet121: every layer of a dense block sees all earlier ones (concat)."),
        _spec("inceptionv3", "inception_v3", "InceptionV3", (299, 299), "tf", "Inception",
              _fixed("inception_v3" + _NOTOP), min_size=75,
              description="InceptionV3: parallel branches joined in 'mixed' blocks."),
        _spec("xception", "xception", "Xception", (299, 299), "tf", "Xception", _fixed("xception" + _NOTOP),
              min_size=71, description="Xception: depthwise-separable convolutions with residuals."),
        _spec("convnexttiny", "convnext", "ConvNeXtTiny", (224, 224), "none", "ConvNeXt",
              _fixed("convnext_tiny_notop.h5"),
              description="ConvNeXt-Tiny: a modernised ResNet; normalises its input inside the model."),
    ]
}


def _register_demo() -> None:
    """The shipped demo CNN is a backbone like the others (its weights are 'shipped')."""
    def build(input_shape, weights):
        import keras

        # The demo CNN pins its layers' dtype; follow the policy _build set (bfloat16 requests).
        return build_demo_cnn(input_shape=input_shape, dtype=keras.config.dtype_policy().name)

    BACKBONES["demo-shapes"] = BackboneSpec(
        name="demo-shapes",
        build=build,
        input_size=tuple(DEMO_INPUT_SIZE),
        preprocessing="none",
        min_input_size=16,
        family="Demo",
        imagenet_file=None,
        pretrained="shipped",
        description="A small VGG-like CNN trained on the shapes demo set; ships with the project, works offline.",
    )


_register_demo()


def get_spec(name: str) -> BackboneSpec:
    """The registry entry for ``name`` (case-insensitive), or an error listing the names."""
    key = str(name).strip().lower()
    if key in BACKBONES:
        return BACKBONES[key]
    import difflib

    close = difflib.get_close_matches(key, list(BACKBONES), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UnknownBackboneError(
        f"Unknown backbone {name!r}.{hint} Known backbones: {', '.join(BACKBONES)}. "
        "`python -m extractor backbones` lists them; a path to a .keras model file also works."
    )


# --------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------

def keras_cache_dir() -> Path:
    """Where Keras keeps downloaded weights: ``$KERAS_HOME/models`` (default ``~/.keras/models``)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    if not os.access(home, os.W_OK) and not os.path.isdir(home):
        parent = os.path.dirname(home) or "."
        if not os.access(parent, os.W_OK):  # Keras's own fallback for read-only homes
            home = os.path.join("/tmp", ".keras")
    return Path(home) / "models"


def imagenet_weights_path(spec: BackboneSpec, input_size: tuple[int, int] | None = None) -> Path | None:
    """The file Keras would read ImageNet weights from (whether or not it exists)."""
    if spec.imagenet_file is None:
        return None
    return keras_cache_dir() / spec.imagenet_file(tuple(input_size or spec.input_size))


_probe_lock = threading.Lock()
_probe_result: tuple[float, bool] | None = None


def _weights_host_reachable() -> bool:
    """One short connection attempt, remembered for five minutes, so an offline machine answers at once."""
    global _probe_result
    with _probe_lock:
        now = time.monotonic()
        if _probe_result is not None and now - _probe_result[0] < _PROBE_TTL_S:
            return _probe_result[1]
        try:
            with socket.create_connection(_WEIGHTS_HOST, timeout=2.0):
                ok = True
        except OSError:
            ok = False
        _probe_result = (now, ok)
        return ok


def imagenet_cached(input_size: tuple[int, int] | None = None) -> dict[str, bool | None]:
    """For every registry backbone: are its ImageNet weights in the Keras cache on this machine?

    ``None`` where a backbone has no ImageNet weights at all (``demo-shapes``). ``input_size``
    matters where the file name encodes it (MobileNetV2); ``None`` uses each backbone's default.
    Checks files only: nothing is loaded or downloaded.

    Example:
        >>> imagenet_cached()["demo-shapes"] is None
        True
    """
    out: dict[str, bool | None] = {}
    for name, spec in BACKBONES.items():
        path = imagenet_weights_path(spec, input_size)
        out[name] = None if path is None else path.is_file()
    return out


def _imagenet_unavailable(spec: BackboneSpec, path: Path, why: str, requested: str, cause: str,
                          detail: str = "") -> ImageNetWeightsMissingError:
    message = (
        f"ImageNet weights for {spec.name} are not available: {why} "
        f"Tried the Keras cache file {path.name!r} in {path.parent} and a download. Ways out: "
        "connect to the internet once (Keras caches the file for offline use), copy the file into that "
        "folder (or set KERAS_HOME), explore the architecture with random weights (--weights none), "
        "a local .weights.h5 file, or the offline 'demo-shapes' backbone."
    )
    return ImageNetWeightsMissingError(
        message, MissingWeights(spec.name, requested, path.name, str(path.parent), cause, detail))


# One build at a time: Keras layer naming, the global dtype policy and the random seed are
# process-wide state, so concurrent builds would step on each other.
_build_lock = threading.RLock()


def _resolve_input_size(spec: BackboneSpec, input_size) -> tuple[int, int] | None:
    if input_size == "native":
        return None
    if input_size is None:
        return tuple(spec.input_size)
    try:
        h, w = (int(input_size), int(input_size)) if np.isscalar(input_size) else (int(input_size[0]), int(input_size[1]))
    except (TypeError, ValueError, IndexError):
        raise InvalidInputSizeError(
            f"input size {input_size!r} is not understood; pass (height, width), e.g. (224, 224)."
        ) from None
    if min(h, w) < spec.min_input_size or max(h, w) > 2048:
        raise InvalidInputSizeError(
            f"{spec.name} needs an input size between {spec.min_input_size} and 2048 pixels per side; "
            f"got {h}×{w}. Default is {spec.input_size[0]}×{spec.input_size[1]}."
        )
    return (h, w)


def _build(spec: BackboneSpec, size: tuple[int, int] | None, weights, dtype_policy: str | None = None):
    import keras

    shape = (None, None, 3) if size is None else (size[0], size[1], 3)
    with _build_lock:
        previous = keras.config.dtype_policy().name
        try:
            if dtype_policy:
                keras.config.set_dtype_policy(dtype_policy)
            if weights is None:
                # Random weights are reproducible: the same backbone gives the same features
                # in the app, the CLI and the tests.
                keras.utils.set_random_seed(_RANDOM_SEED)
            return spec.build(shape, weights)
        finally:
            keras.config.set_dtype_policy(previous)


def load_backbone(
    name: str,
    weights: str | os.PathLike | None = "pretrained",
    input_size: tuple[int, int] | int | str | None = None,
) -> Backbone:
    """Build a registry backbone (or load a ``.keras`` model file) and report its weights.

    Args:
        name: a registry name (``python -m extractor backbones``) or a path to a ``.keras`` file.
        weights: ``"pretrained"`` (ImageNet for Keras applications, the shipped file for
            ``demo-shapes``), ``"imagenet"``, ``"none"`` (random, seed 0) or a path to a
            ``.weights.h5`` file saved from the same architecture.
        input_size: ``(height, width)``, one int for a square, ``None`` for the spec's default,
            or ``"native"`` for a fully convolutional model that takes any size.

    Raises:
        UnknownBackboneError, WeightsUnavailableError, InvalidInputSizeError.

    Example:
        >>> load_backbone("demo-shapes").weights.kind
        'shipped'
    """
    if isinstance(name, os.PathLike) or str(name).lower().endswith((".keras", ".h5")):
        return _load_model_file(Path(name), input_size)
    spec = get_spec(name)
    size = _resolve_input_size(spec, input_size)
    request = "none" if weights is None else str(weights)
    kind = request.lower()
    if kind == "pretrained":
        kind = spec.pretrained

    if kind in ("none", "random"):
        model = _build(spec, size, None)
        info = WeightsInfo("random", f"random initialisation (seed {_RANDOM_SEED}) — not trained; for exploring the architecture")
    elif kind == "imagenet":
        if spec.imagenet_file is None:
            raise WeightsUnavailableError(
                f"{spec.name} has no ImageNet weights (it was trained on {spec.pretrained} data); "
                "use weights 'pretrained' or 'none'."
            )
        path = imagenet_weights_path(spec, size)
        if not path.is_file() and not _weights_host_reachable():
            raise _imagenet_unavailable(spec, path, "the file is not in the Keras cache and the internet cannot be reached.",
                                        request, "not-cached-offline")
        try:
            model = _build(spec, size, "imagenet")
        except Exception as exc:  # urllib / hash / h5 errors all mean the same thing to the user
            raise _imagenet_unavailable(spec, path, f"loading failed ({type(exc).__name__}).", request, "load-failed",
                                        type(exc).__name__) from exc
        info = WeightsInfo("imagenet", f"ImageNet (Keras cache file {path.name})", path.name)
    elif kind == "shipped":
        model = _build(spec, size, None)
        try:
            model.load_weights(DEMO_WEIGHTS_PATH)
        except (OSError, ValueError) as exc:
            raise WeightsUnavailableError(
                f"The shipped demo weights could not be loaded ({exc}); reinstall the project or run "
                "`python -m extractor demo train` to recreate them."
            ) from exc
        info = WeightsInfo("shipped", "trained on the shapes demo set (shipped with Layer Explorer)",
                           DEMO_WEIGHTS_PATH.name)
    else:
        path = Path(request).expanduser()
        if not path.is_file():
            raise WeightsUnavailableError(
                f"weights {request!r} are neither 'pretrained', 'imagenet', 'none' nor an existing file. "
                "Pass a .weights.h5 file saved from the same architecture (model.save_weights(...))."
            )
        if not path.name.endswith(".weights.h5"):
            raise WeightsUnavailableError(
                f"weights file {path.name!r} must end with .weights.h5 (saved with model.save_weights); "
                "for a whole model (.keras), pass it as the backbone instead."
            )
        model = _build(spec, size, None)
        try:
            # Keras only *warns* when parts of a file don't match ("… will retain their freshly-
            # initialized weights"): that would be random weights under a trained label, so any
            # such warning is a refusal.
            with warnings.catch_warnings():
                warnings.filterwarnings("error", message=".*(freshly-initialized|Skipping|mismatch).*")
                model.load_weights(path)
        except Exception as exc:
            raise WeightsUnavailableError(
                f"weights file {path.name!r} does not fit {spec.name} ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:200]}). It must be saved from the same architecture, include_top=False."
            ) from exc
        info = WeightsInfo("file", f"local file {path.name}", path.name)
    return Backbone(spec=spec, model=model, weights=info, input_size=size, weights_request=request)


def _load_model_file(path: Path, input_size) -> Backbone:
    """A whole model saved by the user (``.keras``): audited, then loaded with safe_mode."""
    if not path.is_file():
        raise UnknownBackboneError(f"model file {path.name!r} does not exist.")
    from .audit import h5_enabled, load_audited_model_file

    model = load_audited_model_file(path, allow_h5=path.suffix == ".h5" and h5_enabled())
    backbone = backbone_from_model(model, name=path.stem)
    backbone = replace(
        backbone,
        spec=replace(backbone.spec, description=f"Your model {path.name} (expects 0..255 RGB, or rescales inside)."),
        weights=WeightsInfo("file", f"model file {path.name}", path.name),
        weights_request=str(path),
    )
    return backbone if input_size is None else rebuild_backbone(backbone, input_size)


def _rebuild_with_shape(model, input_shape, dtype_policy: str | None = None):
    """Same architecture and weights at another input shape (and optionally another dtype policy)."""
    config = model.get_config()
    _rewrite_config(config, input_shape, dtype_policy)
    with _build_lock:
        clone = model.__class__.from_config(config)
    clone.set_weights(model.get_weights())
    return clone


def _rewrite_config(node, input_shape, dtype_policy):
    if isinstance(node, dict):
        cls = node.get("class_name")
        cfg = node.get("config")
        if isinstance(cfg, dict):
            if cls == "InputLayer" and input_shape is not None and "batch_shape" in cfg:
                cfg["batch_shape"] = [None, *input_shape]
            elif cls != "InputLayer" and dtype_policy and "dtype" in cfg:
                cfg["dtype"] = dtype_policy
        for value in node.values():
            _rewrite_config(value, input_shape, dtype_policy)
    elif isinstance(node, list):
        for value in node:
            _rewrite_config(value, input_shape, dtype_policy)


def rebuild_backbone(backbone: Backbone, input_size="keep", dtype_policy: str | None = None) -> Backbone:
    """The same backbone and weights at another input size (``None`` = native) or dtype policy."""
    size = backbone.input_size if input_size == "keep" else (None if input_size in (None, "native") else _resolve_input_size(backbone.spec, input_size))
    if size == backbone.input_size and dtype_policy is None:
        return backbone
    if backbone.spec.from_model:
        model = _rebuild_with_shape(backbone.model, (None, None, 3) if size is None else (*size, 3), dtype_policy)
    else:
        model = _build(backbone.spec, size, None, dtype_policy)
        model.set_weights(backbone.model.get_weights())
    return replace(backbone, model=model, input_size=size)


def backbone_from_model(model, name: str | None = None, preprocessing: str = "none",
                        input_size: tuple[int, int] | None = None) -> Backbone:
    """Wrap a ``keras.Model`` you already have (trained, nested, or a never-called Sequential).

    Example:
        >>> bb = backbone_from_model(my_model, preprocessing="tf")
        >>> FeatureExtractor(bb, ["conv2"]).extract(images)
    """
    if preprocessing not in PREPROCESSING_MODES:
        raise ValueError(f"preprocessing must be one of {PREPROCESSING_MODES}; got {preprocessing!r}")
    from .layers import _ensure_built

    _ensure_built(model, input_size)
    shape = tuple(model.inputs[0].shape[1:3])
    size = tuple(int(d) for d in shape) if None not in shape else (input_size or None)

    def build(input_shape, weights):
        return _rebuild_with_shape(model, input_shape)

    spec = BackboneSpec(
        name=name or model.name, build=build, input_size=size or (224, 224), preprocessing=preprocessing,
        min_input_size=8, family="Custom", imagenet_file=None, pretrained="file", from_model=True,
        description=f"In-memory model {model.name}.",
    )
    return Backbone(spec=spec, model=model, weights=WeightsInfo("file", f"in-memory model {model.name}"),
                    input_size=size, weights_request="model")
