"""The demo CNN: a small VGG-like network trained on the ``shapes`` demo set, and training helpers.

What ships (in ``extractor/assets/``, recreated by :func:`train_demo`):

- ``demo_shapes.weights.h5``: the feature extractor only (``include_top=False`` equivalent), as
  written by ``backbone.save_weights``; load it with :func:`load_demo_backbone`.
- ``demo_shapes_head.weights.h5``: the classifier head (one Dense layer on global-average-pooled
  ``block4_pool``), kept in its own tiny file so the backbone file stays a plain backbone;
  :func:`load_demo_classifier` puts the two together (used to check the claimed accuracy).
- ``demo_shapes.json``: classes, input size, seed, accuracy, per-block k-NN scores, train time.
- ``demo_shapes.keras``: the same backbone (input ``(None, None, 3)``) as a whole Keras model file,
  so plain Keras code can load it (``keras.saving.load_model(path, safe_mode=True)``) without
  this package's code; the Feature-maps page's snippet does.

The network takes raw 0..255 RGB (a ``Rescaling(1/255)`` layer named ``rescale`` sits right after
the input, so its preprocessing mode is ``"none"``) and is fully convolutional.

Example:
    >>> backbone = load_demo_backbone()                 # (64, 64, 3) in, (4, 4, 128) out
    >>> [l.name for l in backbone.layers][:4]
    ['image', 'rescale', 'block1_conv1', 'block1_bn1']

:func:`train_classifier` and :func:`train_from_folder` train the same architecture on any labelled
images (the latter on a folder with one sub-folder per class, saving a ``.keras`` model whose conv
layers can then be explored like any other backbone).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from extractor.demo_cnn import (
    DEMO_CHANNELS,
    DEMO_HEAD_WEIGHTS_PATH,
    DEMO_INFO_PATH,
    DEMO_INPUT_SIZE,
    DEMO_MODEL_PATH,
    DEMO_WEIGHTS_PATH,
    build_demo_cnn,
)
from extractor.errors import LayerExplorerError, TrainingDataError, check_int
from extractor.reduce import TooFewImagesError

# Keras/TensorFlow are imported inside the functions: `import extractor` must stay cheap.

__all__ = [
    "DEMO_CHANNELS",
    "DEMO_HEAD_WEIGHTS_PATH",
    "DEMO_INFO_PATH",
    "DEMO_INPUT_SIZE",
    "DEMO_MODEL_PATH",
    "DEMO_WEIGHTS_PATH",
    "DemoWeightsMissingError",
    "TooFewClassesError",
    "TooFewImagesError",
    "TrainResult",
    "TrainingDataError",
    "TrainingFolderError",
    "block_knn_scores",
    "build_classifier",
    "build_demo_cnn",
    "load_demo_backbone",
    "load_demo_classifier",
    "load_demo_info",
    "save_demo_model",
    "train_classifier",
    "train_demo",
    "train_from_folder",
]


# The shipped recipe, chosen by measurement on 2 shared CPU cores: 2 240 training images × 15 epochs
# take ~90 s. Held-out accuracy only settles late in the cosine schedule (0.2-0.8 up to epoch 8,
# 1.0 from epoch 11), so shortening the run costs accuracy. DEMO_INFO_PATH records the run's numbers.
_DEMO_PER_CLASS = 400
_DEMO_EPOCHS = 15
_DEMO_BATCH = 32
_LEARNING_RATE = 3e-3
# Fresh shapes used to report accuracy and per-block k-NN: a seed the training run never uses.
_EVAL_SEED_OFFSET = 10_007

Progress = Callable[[int, int, dict], None]


class TooFewClassesError(TrainingDataError):
    """Training needs at least two classes."""


class TrainingFolderError(TrainingDataError):
    """The training folder is missing or has no class sub-folders."""


class DemoWeightsMissingError(LayerExplorerError):
    """The shipped demo weights are not where they should be."""


@dataclass
class TrainResult:
    """What a training run produced.

    ``model`` is the full classifier (backbone + GAP + Dense softmax), ``backbone`` its feature
    part (the same layer objects), ``classes[i]`` the label of output unit ``i``.
    ``heldout_accuracy`` is measured on the stratified held-out split (``None`` when
    ``validation_fraction=0``); ``seconds`` is the wall time of ``fit``; ``history`` holds
    per-epoch ``loss``/``accuracy`` (and ``val_*``) as floats; ``skipped`` lists
    ``(file name, reason)`` for inputs that could not be decoded.
    """

    model: Any
    backbone: Any
    classes: tuple[str, ...]
    heldout_accuracy: float | None
    seconds: float
    history: dict[str, list[float]]
    n_train: int = 0
    n_heldout: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# architecture


def build_classifier(backbone, num_classes: int, *, dropout: float = 0.2):
    """Backbone + ``avg_pool`` (GlobalAveragePooling2D) + ``head_dropout`` + ``predictions`` (softmax).

    The classifier shares the backbone's layers (training one trains the other) and keeps them at
    the top level, so its conv layers are found by name like any backbone's.

    Example:
        >>> clf = build_classifier(build_demo_cnn(), 7)
        >>> clf.output_shape, clf.layers[-1].name
        ((None, 7), 'predictions')
    """
    import keras
    from keras import layers

    if int(num_classes) < 2:
        raise TooFewClassesError(f"num_classes={num_classes!r}: a classifier needs at least 2 classes.")
    x = layers.GlobalAveragePooling2D(name="avg_pool", dtype="float32")(backbone.output)
    x = layers.Dropout(dropout, name="head_dropout", dtype="float32")(x)
    out = layers.Dense(int(num_classes), activation="softmax", name="predictions", dtype="float32")(x)
    return keras.Model(backbone.input, out, name=f"{backbone.name}_classifier")


def _head_model(classifier):
    """A model over the classifier's Dense head alone (shared layer), to save/load just its weights."""
    import keras

    dense = classifier.get_layer("predictions")
    inputs = keras.Input(shape=(dense.kernel.shape[0],), name="pooled", dtype="float32")
    return keras.Model(inputs, dense(inputs), name="head")


# --------------------------------------------------------------------------------------------
# training


def _check_images(images, labels) -> tuple[np.ndarray, list[str]]:
    x = np.asarray(images)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise TrainingDataError(f"images has shape {x.shape}; expected (N, H, W, 3) RGB.")
    if x.dtype != np.uint8:
        raise TrainingDataError(f"images has dtype {x.dtype}; expected uint8 pixels in 0..255.")
    if min(x.shape[1:3]) < 16:
        raise TrainingDataError(f"images are {x.shape[1]}×{x.shape[2]} px; the demo CNN needs at least 16×16.")
    y = [str(label) for label in labels]
    if len(y) != len(x):
        raise TrainingDataError(f"{len(x)} images but {len(y)} labels; pass one label per image.")
    return x, y


def _check_counts(labels: Sequence[str], min_per_class: int = 2) -> tuple[str, ...]:
    classes, counts = np.unique(np.asarray(labels, dtype=str), return_counts=True)
    if len(classes) < 2:
        found = f"only {str(classes[0])!r}" if len(classes) else "none"
        raise TooFewClassesError(f"Training needs at least 2 classes; found {found}. "
                                 "Add a second class (one sub-folder per class).")
    few = [f"{str(c)!r} ({int(n)})" for c, n in zip(classes, counts, strict=False) if n < min_per_class]
    if few:
        raise TooFewImagesError(f"Each class needs at least {min_per_class} usable images (one to train on, one to "
                                f"hold out); too few in: {', '.join(few)}. Add images to these classes.")
    return tuple(str(c) for c in classes)


def _stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Hold out round(fraction × n) of each class (at least one, never all); deterministic."""
    rng = np.random.default_rng(seed)
    train, held = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = 0 if fraction <= 0 else min(max(1, int(round(fraction * len(idx)))), len(idx) - 1)
        held.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(held))


def _progress_callback(progress: Progress | None, epochs: int):
    import keras

    class _Report(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if progress is not None:
                progress(epoch + 1, epochs, {k: float(v) for k, v in (logs or {}).items()})

    return _Report()


def _predict_classes(model, x: np.ndarray, batch_size: int = 128) -> np.ndarray:
    out = [np.asarray(model(x[i : i + batch_size], training=False)) for i in range(0, len(x), batch_size)]
    return np.concatenate(out).argmax(axis=1)


def train_classifier(
    images,
    labels: Sequence[str],
    *,
    epochs: int = 12,
    batch_size: int = 32,
    seed: int = 0,
    validation_fraction: float = 0.2,
    learning_rate: float = _LEARNING_RATE,
    name: str = "demo_shapes",
    progress: Progress | None = None,
) -> TrainResult:
    """Train :func:`build_demo_cnn` + :func:`build_classifier` on ``(N, H, W, 3)`` uint8 images.

    Deterministic for a given seed on a given machine: ``keras.utils.set_random_seed(seed)`` seeds
    weights, dropout and shuffling, and the held-out split comes from ``seed`` too; two runs give
    bit-identical weights, also across processes. (A different CPU thread count changes float
    summation order and so the last bits; TensorFlow's global op-determinism switch does not fix
    that on CPU and would slow every other user of the process, so it is not turned on.) Adam with a
    cosine-decaying learning rate; ``validation_fraction`` of every class (at least one image) is
    held out and scored after each epoch. ``progress(epoch_done, epochs_total, logs)`` is called
    after each epoch.

    Example:
        >>> ds = make_shapes(per_class=8, size=32)
        >>> r = train_classifier(np.stack(ds.images), ds.labels, epochs=1)
        >>> r.classes[:2], r.model.output_shape
        (('checkerboard', 'circle'), (None, 7))
    """
    import keras

    x, y_names = _check_images(images, labels)
    epochs = check_int(epochs, "epochs", 1, error=TrainingDataError)
    batch_size = check_int(batch_size, "batch_size", 1, error=TrainingDataError)
    if not 0.0 <= float(validation_fraction) < 1.0:
        raise TrainingDataError(f"validation_fraction={validation_fraction!r}: expected a number in [0, 1).")
    classes = _check_counts(y_names, min_per_class=2 if validation_fraction > 0 else 1)
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[c] for c in y_names], dtype=np.int32)
    tr, ho = _stratified_split(y, float(validation_fraction), seed)

    keras.utils.set_random_seed(int(seed))
    backbone = build_demo_cnn(x.shape[1:], name=name)
    model = build_classifier(backbone, len(classes))
    steps = int(np.ceil(len(tr) / batch_size)) * int(epochs)
    schedule = keras.optimizers.schedules.CosineDecay(float(learning_rate), decay_steps=max(1, steps), alpha=0.02)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    # float32 in 0..255: the model rescales itself, and a float array avoids a uint8 cast per batch.
    x_tr, y_tr = x[tr].astype(np.float32), y[tr]
    x_ho, y_ho = x[ho].astype(np.float32), y[ho]
    start = time.perf_counter()
    hist = model.fit(
        x_tr, y_tr, epochs=int(epochs), batch_size=int(batch_size), shuffle=True, verbose=0,
        validation_data=(x_ho, y_ho) if len(ho) else None,
        callbacks=[_progress_callback(progress, int(epochs))],
    )
    seconds = time.perf_counter() - start
    accuracy = float(np.mean(_predict_classes(model, x_ho) == y_ho)) if len(ho) else None
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    return TrainResult(model=model, backbone=backbone, classes=classes, heldout_accuracy=accuracy,
                       seconds=seconds, history=history, n_train=len(tr), n_heldout=len(ho))


# --------------------------------------------------------------------------------------------
# evaluation helpers


def block_knn_scores(backbone, images, labels: Sequence[str], *, k: int = 5, folds: int = 5, seed: int = 0) -> dict[str, float]:
    """k-NN accuracy (stratified ``folds``-fold CV) on avg-pooled features of every ``block*_pool`` layer.

    The check that the demo's layer hierarchy is real: later blocks should score clearly higher.

    Example:
        >>> ds = make_shapes(per_class=40, seed=123)
        >>> block_knn_scores(load_demo_backbone(), np.stack(ds.images), ds.labels)
        {'block1_pool': 0.2..., 'block2_pool': 0.3..., 'block3_pool': 0.9..., 'block4_pool': 0.99...}
    """
    import keras
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    names = [lyr.name for lyr in backbone.layers if re.fullmatch(r"block\d+_pool", lyr.name)]
    pooled = [keras.layers.GlobalAveragePooling2D()(backbone.get_layer(n).output) for n in names]
    probe = keras.Model(backbone.input, pooled)
    x = np.asarray(images, dtype=np.float32)
    chunks = [probe(x[i : i + 128], training=False) for i in range(0, len(x), 128)]
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores = {}
    for j, n in enumerate(names):
        feats = np.concatenate([np.asarray(c[j]) for c in chunks])
        scores[n] = float(cross_val_score(KNeighborsClassifier(n_neighbors=k), feats, list(labels), cv=cv).mean())
    return scores


def _sibling_paths(weights_path: Path) -> tuple[Path, Path]:
    """(head weights, info JSON) next to a ``<stem>.weights.h5`` backbone file."""
    stem = weights_path.name.removesuffix(".weights.h5")
    return weights_path.with_name(f"{stem}_head.weights.h5"), weights_path.with_name(f"{stem}.json")


def _model_file_path(weights_path: Path) -> Path:
    """The whole-model ``<stem>.keras`` file next to a ``<stem>.weights.h5`` backbone file."""
    return weights_path.with_name(weights_path.name.removesuffix(".weights.h5") + ".keras")


def save_demo_model(weights_path: str | Path = DEMO_WEIGHTS_PATH) -> Path:
    """Write the backbone of ``weights_path`` as a whole ``.keras`` model file beside it; returns its path.

    The model takes ``(None, None, 3)``: it is fully convolutional, so one file serves every input size.

    Example:
        >>> save_demo_model(tmp_path / "demo.weights.h5").name  # doctest: +SKIP
        'demo.keras'
    """
    path = Path(weights_path)
    out = _model_file_path(path)
    load_demo_backbone((None, None, 3), path).save(out)
    return out


# --------------------------------------------------------------------------------------------
# the shipped demo


def train_demo(
    out_weights: str | Path = DEMO_WEIGHTS_PATH,
    *,
    per_class: int = _DEMO_PER_CLASS,
    seed: int = 0,
    epochs: int = _DEMO_EPOCHS,
    batch_size: int = _DEMO_BATCH,
    progress: Progress | None = None,
) -> TrainResult:
    """Generate ``shapes``, train, and write the backbone weights, head weights and info JSON.

    Writes ``out_weights`` (``backbone.save_weights``, must end with ``.weights.h5``), the head
    next to it as ``<stem>_head.weights.h5``, the backbone as a whole model ``<stem>.keras``
    (:func:`save_demo_model`) and ``<stem>.json`` with the measured numbers: held-out accuracy,
    accuracy and per-block k-NN on fresh shapes (another seed), train time.

    Example:
        >>> r = train_demo(tmp_path / "demo.weights.h5", per_class=20, epochs=1)
        >>> sorted(p.name for p in tmp_path.iterdir())
        ['demo.json', 'demo.keras', 'demo.weights.h5', 'demo_head.weights.h5']
    """
    import keras

    from extractor.demo import SHAPE_CLASSES, make_shapes

    out = Path(out_weights)
    if not out.name.endswith(".weights.h5"):
        raise TrainingDataError(f"out_weights {out.name!r} must end with .weights.h5 (Keras weights format).")
    head_path, info_path = _sibling_paths(out)

    t0 = time.perf_counter()
    ds = make_shapes(per_class=per_class, size=DEMO_INPUT_SIZE[0], seed=seed)
    gen_seconds = time.perf_counter() - t0
    result = train_classifier(np.stack(ds.images), ds.labels, epochs=epochs, batch_size=batch_size, seed=seed,
                              name="demo_shapes", progress=progress)

    # Fresh shapes from a seed the training never saw: accuracy and the per-block k-NN scores.
    fresh = make_shapes(per_class=50, size=DEMO_INPUT_SIZE[0], seed=seed + _EVAL_SEED_OFFSET)
    fx = np.stack(fresh.images).astype(np.float32)
    fy = np.array([result.classes.index(c) for c in fresh.labels])
    fresh_acc = float(np.mean(_predict_classes(result.model, fx) == fy))
    knn = block_knn_scores(result.backbone, fx, fresh.labels, seed=seed)

    out.parent.mkdir(parents=True, exist_ok=True)
    result.backbone.save_weights(out)
    _head_model(result.model).save_weights(head_path)
    save_demo_model(out)
    import tensorflow as tf

    info = {
        "name": "demo-shapes",
        "architecture": "VGG-like: rescale, then 4 × [conv3x3-BN-ReLU ×2, maxpool 2], channels "
                        + "/".join(str(c) for c in DEMO_CHANNELS),
        "classes": list(result.classes),
        "class_order_note": "output unit i of the head is classes[i] (sorted names)",
        "shape_classes": list(SHAPE_CLASSES),
        "input_size": list(DEMO_INPUT_SIZE),
        "preprocessing": "none (raw 0..255 RGB; the model rescales)",
        "seed": int(seed),
        "per_class": int(per_class),
        "epochs": int(epochs),
        "batch_size": int(batch_size),
        "n_train": result.n_train,
        "n_heldout": result.n_heldout,
        "heldout_accuracy": round(result.heldout_accuracy, 4),
        "fresh_eval": {"seed": seed + _EVAL_SEED_OFFSET, "per_class": 50, "accuracy": round(fresh_acc, 4),
                       "knn_avg_by_block": {k: round(v, 4) for k, v in knn.items()},
                       "knn_protocol": "5-NN, stratified 5-fold CV, GlobalAveragePooling of each block*_pool"},
        "train_seconds": round(result.seconds, 1),
        "generate_seconds": round(gen_seconds, 2),
        "backbone_params": int(result.backbone.count_params()),
        "head_params": int(result.model.get_layer("predictions").count_params()),
        "weights_file": out.name,
        "head_weights_file": head_path.name,
        "final_epoch": {k: round(v[-1], 4) for k, v in result.history.items()},
        "keras_version": keras.__version__,
        "tensorflow_version": tf.__version__,
    }
    info_path.write_text(json.dumps(info, indent=2) + "\n")
    result.info = info
    return result


def load_demo_info(info_path: str | Path = DEMO_INFO_PATH) -> dict[str, Any]:
    """The shipped demo's metadata (classes, input size, measured accuracy, k-NN per block, ...)."""
    path = Path(info_path)
    if not path.is_file():
        raise DemoWeightsMissingError(f"The demo info file {path.name} is missing; run `python -m extractor demo train`.")
    return json.loads(path.read_text())


def load_demo_backbone(input_shape=(64, 64, 3), weights_path: str | Path = DEMO_WEIGHTS_PATH):
    """Build :func:`build_demo_cnn` and load the shipped (or given) backbone weights.

    Any ``input_shape`` works, ``(None, None, 3)`` included: the weights do not depend on it.

    Example:
        >>> load_demo_backbone((None, None, 3)).output_shape
        (None, None, None, 128)
    """
    path = Path(weights_path)
    if not path.is_file():
        raise DemoWeightsMissingError(f"The demo weights {path.name} are missing; reinstall the project or run "
                                      "`python -m extractor demo train` to recreate them.")
    model = build_demo_cnn(input_shape)
    model.load_weights(path)
    return model


def load_demo_classifier(input_shape=(64, 64, 3), weights_path: str | Path = DEMO_WEIGHTS_PATH):
    """The shipped backbone plus its head: a softmax over ``load_demo_info()["classes"]``.

    Example:
        >>> clf = load_demo_classifier()
        >>> clf.output_shape
        (None, 7)
    """
    path = Path(weights_path)
    head_path, info_path = _sibling_paths(path)
    classes = load_demo_info(info_path)["classes"]
    if not head_path.is_file():
        raise DemoWeightsMissingError(f"The demo head weights {head_path.name} are missing; run "
                                      "`python -m extractor demo train` to recreate them.")
    model = build_classifier(load_demo_backbone(input_shape, path), len(classes))
    _head_model(model).load_weights(head_path)
    return model


# --------------------------------------------------------------------------------------------
# user folders


def _relative(name: str, folder: Path) -> str:
    """``cats/a.png`` for ``<folder>/cats/a.png``: reports name files, never server paths."""
    try:
        return Path(name).relative_to(folder).as_posix()
    except ValueError:
        return Path(name).name


def _read_folder(folder: Path, input_size: tuple[int, int]):
    """Decode every image under ``folder`` (labelled by first-level sub-folder) at ``input_size``.

    Files are found by :func:`extractor.sources.gather_paths` (the same rules as ``extract``:
    recursive, sorted, hidden and non-image files ignored) and decoded by
    :func:`extractor.images.load_image` with the ``"stretch"`` policy.
    """
    from extractor.images import InvalidImageError, load_image
    from extractor.sources import gather_paths

    batch = gather_paths([folder])
    skipped = []
    for p in batch.problems:
        rel = _relative(p.name, folder)
        skipped.append((rel, p.reason if p.kind == "batch" else f"{rel}: {p.reason}"))
    images, labels = [], []
    for src in batch.sources:
        rel = _relative(src.name, folder)
        if src.label is None:
            skipped.append((rel, f"{rel}: not inside a class sub-folder, so it has no label."))
            continue
        try:
            decoded = load_image(src.data, rel, tuple(input_size), "stretch")
        except InvalidImageError as exc:
            skipped.append((rel, str(exc)))
            continue
        images.append(np.asarray(decoded.pixels, dtype=np.uint8))
        labels.append(src.label)
    class_dirs = sorted(p.name for p in folder.iterdir()
                        if p.is_dir() and not p.name.startswith(".") and p.name != "__MACOSX")
    return class_dirs, images, labels, skipped


def train_from_folder(
    folder: str | Path,
    out_path: str | Path,
    *,
    input_size: tuple[int, int] = DEMO_INPUT_SIZE,
    epochs: int = 15,
    batch_size: int = 32,
    seed: int = 0,
    validation_fraction: float = 0.2,
    progress: Progress | None = None,
) -> TrainResult:
    """Train the demo architecture on a folder with one sub-folder of images per class; save a ``.keras``.

    Images are decoded and stretched to ``input_size`` (height, width); unreadable files are
    skipped and listed in ``result.skipped``. The FULL classifier is saved with
    ``model.save(out_path)`` (loads with ``keras.saving.load_model(path, safe_mode=True,
    compile=False)``; its ``block*`` layers are the features to explore), and a
    ``<out stem>.json`` next to it records classes, input size, accuracy and skipped files.

    Example:
        >>> export_demo_set("shapes", tmp_path / "data", per_class=10)
        >>> r = train_from_folder(tmp_path / "data", tmp_path / "mine.keras", epochs=2)
        >>> r.classes[:2], r.skipped
        (('checkerboard', 'circle'), [])
    """
    folder = Path(folder)
    out = Path(out_path)
    if not folder.is_dir():
        raise TrainingFolderError(f"{folder.name!r} is not a folder; pass a folder with one sub-folder per class.")
    if out.suffix != ".keras":
        raise TrainingDataError(f"out_path {out.name!r} must end with .keras (the Keras model format).")
    size = tuple(int(s) for s in input_size)
    if len(size) != 2 or min(size) < 16 or max(size) > 1024:
        raise TrainingDataError(f"input_size={input_size!r}: expected (height, width), each 16 to 1024 px.")
    class_dirs, images, labels, skipped = _read_folder(folder, size)
    found = set(labels)
    # A sub-folder without a single usable image is left out (and said so), not an error by itself.
    skipped += [(f"{d}/", f"{d}/: no usable images, so this folder is not a class.") for d in class_dirs
                if d not in found]
    if len(found) < 2:
        extra = f"; {len(skipped)} file(s)/folder(s) were skipped (see the list)" if skipped else ""
        raise TooFewClassesError(f"{folder.name!r} has usable images in {len(found)} class sub-folder(s); training "
                                 f"needs at least 2 (one sub-folder of images per class){extra}.")
    _check_counts(labels, min_per_class=2 if validation_fraction > 0 else 1)
    name = re.sub(r"[^A-Za-z0-9_]+", "_", out.name.removesuffix(".keras")).strip("_") or "custom_cnn"
    result = train_classifier(np.stack(images), labels, epochs=epochs, batch_size=batch_size, seed=seed,
                              validation_fraction=validation_fraction, name=name, progress=progress)
    result.skipped = skipped
    out.parent.mkdir(parents=True, exist_ok=True)
    result.model.save(out)
    info = {
        "name": name,
        "classes": list(result.classes),
        "input_size": list(size),
        "preprocessing": "none (raw 0..255 RGB; the model rescales)",
        "seed": int(seed),
        "epochs": int(epochs),
        "n_train": result.n_train,
        "n_heldout": result.n_heldout,
        "heldout_accuracy": None if result.heldout_accuracy is None else round(result.heldout_accuracy, 4),
        "train_seconds": round(result.seconds, 1),
        "skipped": [list(s) for s in skipped],
    }
    out.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")
    result.info = info
    return result
