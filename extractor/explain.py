"""Why the network decides: class evidence and Grad-CAM / Grad-CAM++.

:func:`find_classifier` finds a backbone's classifier head, or says plainly why there is none
(a frozen :class:`NoClassifier`, data, not an exception): ``demo-shapes`` ships its head, Keras
applications get their ImageNet ``include_top`` model when both ImageNet weight files are in
the Keras cache, and a model file whose output is a vector of class scores is its own head.
:func:`class_evidence` gives the top classes and probabilities; :func:`grad_cam` says where in
the image the network looks for a class (Selvaraju et al. 2017; Grad-CAM++: Chattopadhay et
al. 2018), at any feature-map layer, with ``tf.GradientTape`` on the network's own graph.

Nested transfer-learning models (a base model inside a classifier) are handled by rebuilding
the graph through the nested model's layers, so the explained layer's output and the class
score lie on one differentiable path: cutting the base model at a layer and calling the head
on its output separately gives no gradient (keras-team/keras#16123). Sequential models that
were never called are built first.

Example:
    >>> clf = find_classifier(load_backbone("demo-shapes"))
    >>> images = np.stack(load_demo_set("shapes", per_class=1, size=64).images)
    >>> ev = class_evidence(clf, images)
    >>> ev.top(0, 1)[0][0]
    'circle'
    >>> cam = grad_cam(clf, images[:2])
    >>> cam.layer, cam.heatmaps.shape, float(cam.heatmaps.max())
    ('block4_relu2', (2, 64, 64), 1.0)
"""

from __future__ import annotations

import difflib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .backbones import Backbone, keras_cache_dir, preprocess_images
from .errors import LayerExplorerError
from .layers import SEPARATOR, LayerInfo, feature_layers, find_layer

__all__ = [
    "METHODS",
    "ClassEvidence",
    "Classifier",
    "GradCam",
    "GradientUnavailableError",
    "NoClassifier",
    "NoClassifierError",
    "UnknownClassError",
    "class_evidence",
    "default_cam_layer",
    "find_classifier",
    "grad_cam",
    "run_explain",
]

METHODS = ("gradcam", "gradcam++")

# Keras application constructors by registry name (the registry keeps only no-top builders).
_KERAS_APPS = {
    "vgg16": "VGG16", "vgg19": "VGG19", "resnet50": "ResNet50", "resnet50v2": "ResNet50V2",
    "mobilenetv2": "MobileNetV2", "mobilenetv3small": "MobileNetV3Small", "mobilenetv3large": "MobileNetV3Large",
    "efficientnetb0": "EfficientNetB0", "densenet121": "DenseNet121", "inceptionv3": "InceptionV3",
    "xception": "Xception", "convnexttiny": "ConvNeXtTiny",
}
_CLASS_INDEX_FILE = "imagenet_class_index.json"
# Layers a Grad-CAM default never lands on: they come after the last computing layer or do nothing.
_NOT_CAM_KINDS = ("pool", "dropout", "padding", "preprocess", "input", "model")


class NoClassifierError(LayerExplorerError):
    """Grad-CAM or class evidence was asked of a backbone without a classifier head."""


class GradientUnavailableError(LayerExplorerError):
    """No gradient flows from the class score back to the chosen layer."""


class UnknownClassError(LayerExplorerError):
    """The requested class is not one of the classifier's classes."""


@dataclass(frozen=True, eq=False)
class Classifier:
    """A network from preprocessed images to class probabilities, with what the UI must say about it.

    ``layer_names`` maps each feature-map layer name of the backbone to its name in ``model``
    (identical except for a rebuilt ImageNet model, whose unnamed layers are numbered anew).
    """

    model: object = field(repr=False)
    class_names: tuple[str, ...]
    preprocessing: str
    input_size: tuple[int, int] | None
    source: str
    layer_names: dict = field(repr=False, default_factory=dict)


@dataclass(frozen=True)
class NoClassifier:
    """Why a backbone has no classifier to ask; ``name`` is the backbone."""

    name: str
    reason: str


@dataclass(frozen=True)
class ClassEvidence:
    """Probabilities (N, K) over ``class_names``; ``predicted[i]`` is image i's most probable class index."""

    class_names: tuple[str, ...]
    probabilities: np.ndarray
    predicted: tuple[int, ...]

    def top(self, index: int, k: int = 5) -> list[tuple[str, float]]:
        """Image ``index``'s ``k`` most probable classes as (name, probability), best first."""
        p = self.probabilities[index]
        order = np.argsort(-p, kind="stable")[: max(1, int(k))]
        return [(self.class_names[i], float(p[i])) for i in order]


@dataclass(frozen=True)
class GradCam:
    """Grad-CAM heat maps for N images.

    ``heatmaps``: (N, H, W) float32 in [0, 1] at the network's input size; ``cams``: the same
    before upsampling, at the layer's resolution (h, w), normalised the same way. ``classes[i]``
    is the class index explained for image i; ``flat`` lists the images whose map is all zero
    (no positive evidence for that class at this layer).
    """

    layer: str
    method: str
    heatmaps: np.ndarray
    cams: np.ndarray
    classes: tuple[int, ...]
    evidence: ClassEvidence
    flat: tuple[int, ...] = ()


# --------------------------------------------------------------------------------------------
# finding the head


def _imagenet_class_names() -> tuple[str, ...]:
    """ImageNet's 1000 names from Keras's cached class index; numbered names when it is not cached."""
    path = keras_cache_dir() / _CLASS_INDEX_FILE
    try:
        index = json.loads(path.read_text())
        return tuple(index[str(i)][1] for i in range(1000))
    except (OSError, ValueError, KeyError, IndexError):
        return tuple(f"imagenet class {i}" for i in range(1000))


def _top_file(notop: str) -> str:
    for suffix in ("_no_top_v2.h5", "_no_top.h5", "_notop.h5"):
        if notop.endswith(suffix):
            return notop[: -len(suffix)] + ".h5"
    return notop


def _map_layers(backbone_model, classifier_model) -> dict:
    """Backbone layer name -> classifier layer name, matched by depth (same architecture)."""
    ours = feature_layers(backbone_model)
    theirs = feature_layers(classifier_model)
    return {a.name: b.name for a, b in zip(ours, theirs, strict=False)}


def _output_rank(model) -> int | None:
    try:
        return len(model.outputs[0].shape) if len(model.outputs) == 1 else None
    except (AttributeError, ValueError):
        return None


def find_classifier(backbone: Backbone) -> Classifier | NoClassifier:
    """The backbone's classifier head, or a :class:`NoClassifier` saying why there is none.

    Example:
        >>> find_classifier(load_backbone("vgg16", weights="none", input_size=64)).reason[:40]
        'vgg16 has random weights: an ImageNet cl'
    """
    import keras

    from . import training

    spec = backbone.spec
    if spec.name == "demo-shapes":
        if backbone.weights.kind != "shipped":
            return NoClassifier(spec.name, "demo-shapes has random weights here; its shipped classifier head belongs "
                                "to the trained weights. Choose the trained (shipped) weights to see class evidence.")
        try:
            classes = tuple(training.load_demo_info()["classes"])
            model = training.build_classifier(backbone.model, len(classes))
            training._head_model(model).load_weights(training.DEMO_HEAD_WEIGHTS_PATH)
        except (OSError, ValueError, training.DemoWeightsMissingError) as exc:
            return NoClassifier(spec.name, f"the shipped demo head could not be loaded ({exc}).")
        names = {info.name: info.name for info in feature_layers(backbone.model)}
        return Classifier(model, classes, spec.preprocessing, backbone.input_size,
                          "the shipped classifier head (trained on the shapes demo set)", names)
    if spec.from_model:  # the user's own model: its head (if any) is its last layer
        rank = _output_rank(backbone.model)
        if rank != 2:
            return NoClassifier(spec.name, f"{spec.name} ends in feature maps, not class scores: it has no "
                                "classifier head. Upload a model whose last layer gives one score per class.")
        k = int(backbone.model.outputs[0].shape[-1])
        names = {info.name: info.name for info in feature_layers(backbone.model)}
        return Classifier(backbone.model, tuple(f"class {i}" for i in range(k)), spec.preprocessing,
                          backbone.input_size, "the model's own output layer (class names not stored in the file)",
                          names)
    attr = _KERAS_APPS.get(spec.name)
    if attr is None or spec.imagenet_file is None:
        return NoClassifier(spec.name, f"{spec.name} has no classifier head.")
    if backbone.weights.kind != "imagenet":
        return NoClassifier(spec.name, f"{spec.name} has {backbone.weights.kind} weights: an ImageNet classifier head "
                            "only means something with ImageNet weights, so there are no class probabilities.")
    if backbone.input_size != tuple(spec.input_size):
        h, w = spec.input_size
        return NoClassifier(spec.name, f"the ImageNet classifier head of {spec.name} needs the {h}×{w} input; "
                            "set the input size back to the default to see class evidence.")
    path = keras_cache_dir() / _top_file(spec.imagenet_file(tuple(spec.input_size)))
    if not path.is_file():
        return NoClassifier(spec.name, f"the ImageNet classifier weights of {spec.name} ({path.name}) are not in the "
                            "Keras cache, only the feature part: copy that file there (or run once online) to "
                            "see class evidence.")
    try:
        model = getattr(keras.applications, attr)(include_top=True, weights=str(path))
    except Exception as exc:  # h5/shape errors: a damaged or foreign file
        return NoClassifier(spec.name, f"the ImageNet classifier file {path.name} could not be loaded "
                            f"({type(exc).__name__}).")
    return Classifier(model, _imagenet_class_names(), spec.preprocessing, backbone.input_size,
                      f"the ImageNet classifier (Keras cache file {path.name})", _map_layers(backbone.model, model))


def _require(classifier) -> Classifier:
    if isinstance(classifier, NoClassifier):
        raise NoClassifierError(f"No classifier for {classifier.name}: {classifier.reason}")
    return classifier


def _prepare(classifier: Classifier, images) -> np.ndarray:
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3 or x.shape[0] < 1:
        raise LayerExplorerError(f"expected (N, H, W, 3) RGB images; got shape {x.shape}.")
    size = classifier.input_size
    if size is not None and tuple(x.shape[1:3]) != tuple(size):
        raise LayerExplorerError(f"images are {x.shape[1]}×{x.shape[2]}, the network takes {size[0]}×{size[1]}; "
                                 "resize them first (extractor.resize_image).")
    return preprocess_images(x, classifier.preprocessing)


def class_evidence(classifier: Classifier | NoClassifier, images) -> ClassEvidence:
    """Class probabilities for (N, H, W, 3) uint8 images at the network's input size.

    Raises :class:`NoClassifierError` for a :class:`NoClassifier`.
    """
    clf = _require(classifier)
    x = _prepare(clf, images)
    probs = np.asarray(clf.model(x, training=False), dtype=np.float32)
    probs = _as_probabilities(probs)
    return ClassEvidence(clf.class_names, probs, tuple(int(i) for i in probs.argmax(axis=1)))


def _as_probabilities(out: np.ndarray) -> np.ndarray:
    """Outputs that are not already probabilities (logits) go through a softmax."""
    if out.ndim != 2:
        out = out.reshape(out.shape[0], -1)
    if out.shape[1] > 1 and (out.min() < 0 or not np.allclose(out.sum(axis=1), 1.0, atol=1e-3)):
        z = out - out.max(axis=1, keepdims=True)
        e = np.exp(z)
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
    return out.astype(np.float32)


# --------------------------------------------------------------------------------------------
# Grad-CAM


def default_cam_layer(layers: Sequence[LayerInfo]) -> LayerInfo:
    """The last feature-map layer before global pooling, after its activation (not a pooling or padding).

    Example:
        >>> default_cam_layer(feature_layers(load_backbone("vgg16", weights="none", input_size=64).model)).name
        'block5_conv3'
    """
    for info in reversed(list(layers)):
        if info.kind not in _NOT_CAM_KINDS:
            return info
    if not layers:
        raise GradientUnavailableError("the model has no feature-map layer to explain.")
    return list(layers)[-1]


def _softmax_pre_activation(op):
    """For a Dense/Conv output layer with a softmax or sigmoid, a layer computing its input to that activation."""
    import keras

    activation = getattr(op, "activation", None)
    name = getattr(activation, "__name__", "")
    if type(op).__name__ == "Activation" and name in ("softmax", "sigmoid"):
        return "identity", activation
    if type(op).__name__ == "Dense" and name in ("softmax", "sigmoid"):
        dense = op

        class _Logits(keras.layers.Layer):
            def call(self, x):
                y = keras.ops.matmul(x, dense.kernel)
                return y + dense.bias if dense.use_bias else y

        return _Logits(name=f"{op.name}_logits", dtype=op.dtype_policy), activation
    return None, None


def _call_last(op, args, kwargs):
    """Call the model's last operation, returning (probabilities-or-output, logits)."""
    pre, activation = _softmax_pre_activation(op)
    if pre is None:
        out = op(*args, **kwargs)
        return out, out
    if pre == "identity":
        logits = args[0]
    else:
        logits = pre(args[0])
    return activation(logits), logits


def _replay(model, inputs: list, target: str | None, want_logits: bool):
    """Rebuild ``model``'s graph on ``inputs``; returns (outputs, target output, logits).

    Nested models are rebuilt layer by layer too, so a target inside them stays on the path
    to the output (the reason naive cut-and-call approaches lose the gradient).
    """
    import keras

    head, _, rest = (target or "").partition(SEPARATOR)
    found = None
    logits = None
    if isinstance(model, keras.Sequential):
        x = inputs[0]
        steps = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
        for i, layer in enumerate(steps):
            last = want_logits and i == len(steps) - 1
            if isinstance(layer, keras.Model):
                outs, inner, lg = _replay(layer, [x], rest if layer.name == head and rest else None, last)
                x = outs[0]
                found = inner if inner is not None else found
                logits = lg if last else logits
            elif last:
                x, logits = _call_last(layer, [x], {})
            else:
                x = layer(x)
            if target and layer.name == head and not rest:
                found = x
        return [x], found, logits
    values = {id(t): v for t, v in zip(model.inputs, inputs, strict=True)}
    output_ids = {id(t) for t in model.outputs}
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            op = node.operation
            if op is None or node.is_input or any(id(t) not in values for t in node.input_tensors):
                continue
            args, kwargs = node.arguments.fill_in(values)
            last = want_logits and len(model.outputs) == 1 and any(id(t) in output_ids for t in node.outputs)
            if isinstance(op, keras.Model):
                outs, inner, lg = _replay(op, keras.tree.flatten(args), rest if op.name == head and rest else None,
                                          last)
                found = inner if inner is not None else found
                logits = lg if last else logits
            elif last:
                out, logits = _call_last(op, args, kwargs)
                outs = [out]
            else:
                outs = keras.tree.flatten(op(*args, **kwargs))
            for t, v in zip(node.outputs, outs, strict=False):
                values[id(t)] = v
            if target and op.name == head and not rest:
                found = outs[0]
    return [values[id(t)] for t in model.outputs], found, logits


def _gradient_model(classifier: Classifier, layer: str):
    """One model: preprocessed image -> (the layer's map, class scores (logits), probabilities)."""
    import keras

    model = classifier.model
    inputs = [keras.Input(batch_shape=tuple(t.shape), dtype=t.dtype, name=f"explain_in_{i}")
              for i, t in enumerate(model.inputs)]
    outs, found, logits = _replay(model, inputs, layer, True)
    if found is None:
        raise GradientUnavailableError(f"layer {layer!r} is not on the path from the input to {model.name}'s output, "
                                       "so no gradient can reach it; pick a layer the classifier uses.")
    return keras.Model(inputs, [found, logits, outs[0]], name=f"{model.name}_gradcam")


def _cam_function(grad_model, method: str, layer: str, size):
    import tensorflow as tf

    # autograph off: the checks below are plain Python at trace time, and their errors stay ours.
    @tf.function(reduce_retracing=True, autograph=False)
    def run(x, wanted):
        with tf.GradientTape() as tape:
            tape.watch(x)  # frozen (non-trainable) layers are recorded too
            fmap, logits, probs = grad_model(x, training=False)
            fmap = tf.cast(fmap, tf.float32)
            logits = tf.cast(logits, tf.float32)
            probs = tf.cast(probs, tf.float32)
            predicted = tf.argmax(probs, axis=1, output_type=tf.int32)
            chosen = tf.where(wanted < 0, predicted, wanted)
            score = tf.gather(logits, chosen, axis=1, batch_dims=1)
        grads = tape.gradient(score, fmap)
        if grads is None:
            raise GradientUnavailableError(
                f"no gradient flows from the class score back to {layer!r}: a layer between them is not "
                "differentiable. Pick a later layer.")
        if method == "gradcam":
            weights = tf.reduce_mean(grads, axis=(1, 2))
        else:  # Grad-CAM++; the exp(score) factors of the paper cancel in alpha and only rescale the map
            g2, g3 = grads ** 2, grads ** 3
            total = tf.reduce_sum(fmap, axis=(1, 2), keepdims=True)
            denom = 2.0 * g2 + total * g3
            alpha = g2 / tf.where(denom != 0.0, denom, tf.ones_like(denom))
            weights = tf.reduce_sum(alpha * tf.nn.relu(grads), axis=(1, 2))
        cam = tf.nn.relu(tf.reduce_sum(fmap * weights[:, None, None, :], axis=-1))
        peak = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
        cam = tf.math.divide_no_nan(cam, peak)
        hh, ww = size if size is not None else (tf.shape(x)[1], tf.shape(x)[2])
        heat = tf.image.resize(cam[..., None], (hh, ww), method="bilinear")[..., 0]
        heat = tf.clip_by_value(tf.math.divide_no_nan(heat, tf.reduce_max(heat, axis=(1, 2), keepdims=True)), 0.0, 1.0)
        return heat, cam, probs, chosen

    return run


def _resolve_class(clf: Classifier, wanted, n: int) -> np.ndarray:
    """Class indices per image (-1: the predicted one) from None/'top', an index or a class name."""
    if wanted is None or (isinstance(wanted, str) and wanted.strip().lower() in ("top", "predicted", "")):
        return np.full(n, -1, np.int32)
    if isinstance(wanted, (int, np.integer)):
        if not 0 <= int(wanted) < len(clf.class_names):
            raise UnknownClassError(f"class index {wanted} is out of range; the classifier has "
                                    f"{len(clf.class_names)} classes (0–{len(clf.class_names) - 1}).")
        return np.full(n, int(wanted), np.int32)
    if isinstance(wanted, str):
        names = list(clf.class_names)
        if wanted in names:
            return np.full(n, names.index(wanted), np.int32)
        close = difflib.get_close_matches(wanted, names, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        shown = ", ".join(names[:10]) + (" …" if len(names) > 10 else "")
        raise UnknownClassError(f"no class {wanted!r} in this classifier.{hint} Classes: {shown}; or 'top' for "
                                "the predicted class.")
    arr = np.asarray(wanted, dtype=np.int64).reshape(-1)
    if arr.shape[0] != n or arr.min() < -1 or arr.max() >= len(clf.class_names):
        raise UnknownClassError(f"expected {n} class indices in -1..{len(clf.class_names) - 1}; got {arr.tolist()}.")
    return arr.astype(np.int32)


def grad_cam(classifier: Classifier | NoClassifier, images, layer: str | None = None, class_: object = None,
             method: str = "gradcam", *, _cache: dict | None = None) -> GradCam:
    """Grad-CAM (or Grad-CAM++) heat maps of (N, H, W, 3) uint8 images at the network's input size.

    Args:
        layer: a feature-map layer name of the backbone (default :func:`default_cam_layer`).
        class_: None or ``"top"`` (each image's predicted class), a class name, a class index,
            or one index per image.
        method: ``"gradcam"`` or ``"gradcam++"``.
        _cache: a dict the caller keeps to reuse the compiled function across calls.

    Raises:
        NoClassifierError, UnknownLayerError, UnknownClassError, GradientUnavailableError.
    """
    import tensorflow as tf

    clf = _require(classifier)
    if method not in METHODS:
        raise LayerExplorerError(f"method {method!r} is not one of {', '.join(METHODS)}.")
    table = feature_layers(clf.model)
    by_inner = {v: k for k, v in clf.layer_names.items()}
    if layer is None:
        inner = default_cam_layer(table)
        shown = by_inner.get(inner.name, inner.name)
    else:
        shown = layer
        inner = find_layer(table, clf.layer_names.get(layer, layer), clf.model.name)
    x = _prepare(clf, images)
    wanted = _resolve_class(clf, class_, x.shape[0])
    key = (inner.name, method)
    run = None if _cache is None else _cache.get(key)
    if run is None:
        run = _cam_function(_gradient_model(clf, inner.name), method, inner.name, clf.input_size)
        if _cache is not None:
            _cache[key] = run
    heat, cam, probs, chosen = run(tf.constant(x), tf.constant(wanted))
    heat, cam = heat.numpy().astype(np.float32), cam.numpy().astype(np.float32)
    probs = _as_probabilities(probs.numpy())
    evidence = ClassEvidence(clf.class_names, probs, tuple(int(i) for i in probs.argmax(axis=1)))
    flat = tuple(i for i in range(heat.shape[0]) if not heat[i].max() > 0)
    return GradCam(shown, method, heat, cam, tuple(int(c) for c in chosen.numpy()), evidence, flat)


# --------------------------------------------------------------------------------------------
# the command line's logic


@dataclass(frozen=True)
class ExplainOutput:
    """What ``python -m extractor explain`` wrote, for its summary line."""

    out: Path
    count: int
    layer: str
    method: str
    skipped: tuple[tuple[str, str], ...]
    notes: tuple[str, ...]


def run_explain(backbone: Backbone, paths: Sequence[str], out: Path, *, layer: str | None = None,
                class_: str | None = None, method: str = "gradcam", batch_size: int = 16) -> ExplainOutput:
    """Grad-CAM for image files, written to ``out`` (.npz); bad files are skipped and named.

    The file holds ``heatmaps`` (N, H, W) float32 in [0, 1], ``layer``, ``method``, ``classes``
    (the class explained per image), ``predicted``, ``probabilities`` (N, K), ``class_names``
    and ``paths``.
    """
    from .images import load_image
    from .sources import gather_paths

    clf = _require(find_classifier(backbone))
    if clf.input_size is None:
        raise LayerExplorerError(f"{backbone.name} takes images at their own size; give it an input size "
                                 "(--input-size) so every heat map has the same shape.")
    batch = gather_paths(paths)
    skipped = [("", p.message) for p in batch.problems]
    pixels, names = [], []
    for source in batch.sources:
        try:
            pixels.append(load_image(source.data, source.name, clf.input_size).pixels)
            names.append(source.name)
        except LayerExplorerError as exc:
            skipped.append((source.name, str(exc)))  # the message starts with the file's name
    if not pixels:
        raise LayerExplorerError(f"no image could be read from {', '.join(map(str, paths))}; nothing to explain.")
    cache: dict = {}
    parts = [grad_cam(clf, np.stack(pixels[i:i + batch_size]), layer, class_, method, _cache=cache)
             for i in range(0, len(pixels), batch_size)]
    heat = np.concatenate([p.heatmaps for p in parts])
    probs = np.concatenate([p.evidence.probabilities for p in parts])
    classes = [c for p in parts for c in p.classes]
    predicted = [c for p in parts for c in p.evidence.predicted]
    names_arr = np.array(clf.class_names)
    np.savez(out, heatmaps=heat.astype(np.float32), layer=np.array(parts[0].layer), method=np.array(method),
             classes=names_arr[classes], class_indices=np.array(classes, np.int32),
             predicted=names_arr[predicted], probabilities=probs.astype(np.float32), class_names=names_arr,
             paths=np.array(names))
    flat = [names[i + k * batch_size] for k, p in enumerate(parts) for i in p.flat]
    notes = tuple(f"{n}: the heat map is all zero (no positive evidence for that class at this layer)" for n in flat)
    return ExplainOutput(out, len(names), parts[0].layer, method, tuple(skipped), notes)


def print_skipped(result: ExplainOutput) -> None:
    for _name, message in result.skipped:
        print(f"skipped {message}", file=sys.stderr)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
