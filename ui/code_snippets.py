"""The plain Keras code that does what the page shows, for the user to copy.

The snippet is what a student should write without this app: the backbone built with
``include_top=False``, its own ``preprocess_input`` applied to a copy, one ``keras.Model`` cut
at the chosen layer, ONE batched ``predict`` for all images, and pooling over the spatial axes
``(1, 2)`` only (the seed article's ``axis=(1, 2, 3)`` left one number per image).

Example:
    >>> code = keras_snippet("vgg16", "block3_pool", (224, 224), weights="pretrained")
    >>> compile(code, "<snippet>", "exec") is not None, ".mean(axis=(1, 2))" in code
    (True, True)
"""

from __future__ import annotations

from extractor import BACKBONES

__all__ = ["KERAS_APPLICATIONS", "gradcam_snippet", "keras_snippet"]

# registry name -> (keras.applications submodule, constructor), read from each spec (no second table)
KERAS_APPLICATIONS: dict[str, tuple[str, str]] = {
    name: (spec.keras_module, spec.keras_constructor) for name, spec in BACKBONES.items() if spec.keras_module
}

_LOAD_IMAGE = {
    "stretch": 'keras.utils.load_img(p, target_size=({h}, {w}), interpolation="bilinear")',
    "center-crop": 'keras.utils.load_img(p, target_size=({h}, {w}), interpolation="bilinear", keep_aspect_ratio=True)',
    # Keras has no letterbox option: stretch here, or pad with PIL.ImageOps.pad(img, ({w}, {h})) first.
    "pad": 'keras.utils.load_img(p, target_size=({h}, {w}), interpolation="bilinear")',
}


def keras_snippet(
    backbone: str,
    layer: str,
    input_size: tuple[int, int],
    *,
    weights: str = "pretrained",
    resize: str = "stretch",
    precision: str = "float32",
    pooling: str = "avg",
) -> str:
    """Runnable Keras code for the current selection: maps of ``layer`` and pooled vectors.

    ``weights`` is the app's request: ``"pretrained"``, ``"none"`` (random) or a file path (only
    its name is written). ``pooling`` is ``"avg"`` or ``"max"``.
    """
    h, w = (int(v) for v in input_size)
    reduce = "max" if pooling == "max" else "mean"
    lines = ["import numpy as np", "import keras"]
    name = backbone.lower()
    if name == "demo-shapes":
        # Plain Keras: the shipped model file, found where the package is installed (no code of ours runs).
        lines += [
            "from importlib.resources import files",
            "",
            "# the demo-shapes network, shipped with Layer Explorer as one .keras file (any input size)",
            'model_file = files("extractor") / "assets" / "demo_shapes.keras"',
            "base = keras.saving.load_model(str(model_file), safe_mode=True, compile=False)",
            f"# base.input_shape is (None, None, None, 3): fully convolutional, so ({h}, {w}, 3) images work as they are",
        ]
        if precision == "bfloat16":
            lines += [
                "",
                "def in_bfloat16(layer):  # computes in bfloat16, keeps float32 weights (as the app does)",
                '    return layer.__class__.from_config({**layer.get_config(), "dtype": "mixed_bfloat16"})',
                "",
                "trained = base",
                "base = keras.models.clone_model(trained, clone_function=in_bfloat16)",
            ]
            if weights != "none":
                lines += ["base.set_weights(trained.get_weights())  # the shipped shapes-trained weights"]
        if weights == "none":
            lines += ["base = keras.models.clone_model(base)  # same architecture, fresh random weights: not trained"
                      if precision != "bfloat16" else
                      "# clone_model starts from fresh random weights: not trained"]
        preprocess = [
            "x = images  # no preprocess_input: this model takes raw 0..255 RGB and rescales inside",
        ]
    elif name.startswith("custom:") or name == "your model":
        lines += [
            "",
            '# your uploaded model; load it the way the app does (no custom code runs with safe_mode)',
            'base = keras.saving.load_model("your_model.keras", safe_mode=True, compile=False)',
        ]
        preprocess = [
            "x = images  # as the app does: raw 0..255 RGB (use your own preprocessing if your model expects it)",
        ]
        if "/" in layer:  # a layer inside a nested model: cut the nested model there
            outer, inner = layer.split("/", 1)
            lines += [
                f"nested = base.get_layer({outer!r})",
                f"# {inner!r} sits inside {outer!r}; the app builds one graph through it, e.g. for a nested",
                "# backbone that is the model's first layer: keras.Model(nested.input, nested.get_layer(...).output)",
            ]
            layer = inner
            lines += ["base = nested"]
    else:
        module, ctor = KERAS_APPLICATIONS.get(name, (None, None))
        if module is None:
            raise ValueError(f"no Keras snippet for backbone {backbone!r}")
        lines += [f"from keras.applications import {module}", ""]
        if precision == "bfloat16":
            lines += ['keras.config.set_dtype_policy("mixed_bfloat16")  # before building the model']
        if weights in ("pretrained", "imagenet"):
            arg, note = '"imagenet"', ""
        elif weights == "none":
            arg, note = "None", "  # random weights: not trained"
        else:
            arg, note = "None", ""
        lines += [f"base = {module}.{ctor}(include_top=False, weights={arg}, input_shape=({h}, {w}, 3)){note}"]
        if weights not in ("pretrained", "imagenet", "none"):
            file_name = str(weights).replace("\\", "/").rsplit("/", 1)[-1] or "my.weights.h5"
            lines += [f"base.load_weights({file_name!r})  # your weights file, same architecture"]
        preprocess = [
            f"x = {module}.preprocess_input(images.copy())  # it writes over its argument: give it a copy",
        ]
    load = _LOAD_IMAGE.get(resize, _LOAD_IMAGE["stretch"]).format(h=h, w=w)
    lines += [
        f"features = keras.Model(base.input, base.get_layer({layer!r}).output)",
        "",
        'paths = ["image1.jpg", "image2.jpg"]  # your images',
        "images = np.stack([",
        f"    keras.utils.img_to_array({load})",
        "    for p in paths",
        f"])  # (N, {h}, {w}, 3) float32, RGB 0..255",
    ]
    if resize == "pad":
        lines += ["# (the app letterboxed with black instead: PIL.ImageOps.pad(img, size, color=0))"]
    lines += preprocess
    lines += [
        "maps = features.predict(x, batch_size=32, verbose=0)  # (N, H, W, C): one batched call for all images",
        f"vectors = maps.{reduce}(axis=(1, 2))  # (N, C): global {'average' if reduce == 'mean' else 'max'} pooling over H and W",
        "print(maps.shape, vectors.shape)",
    ]
    return "\n".join(lines) + "\n"


def gradcam_snippet(backbone: str, layer: str, input_size: tuple[int, int], *, method: str = "gradcam",
                    class_index: int | None = None, weights: str = "pretrained") -> str:
    """Runnable Keras + TensorFlow Grad-CAM (or Grad-CAM++) for the current selection.

    ``class_index=None`` explains each image's predicted class. The classifier is the demo's
    shipped one, a Keras application with its ImageNet head, or the user's model file.

    Example:
        >>> code = gradcam_snippet("vgg16", "block5_conv3", (224, 224), method="gradcam++")
        >>> compile(code, "<snippet>", "exec") is not None, "GradientTape" in code
        (True, True)
    """
    h, w = (int(v) for v in input_size)
    name = backbone.lower()
    lines = ["import numpy as np", "import keras", "import tensorflow as tf"]
    if name == "demo-shapes":
        lines += ["from extractor.training import load_demo_classifier", "",
                  f"model = load_demo_classifier(input_shape=({h}, {w}, 3))  # shipped backbone + head",
                  "preprocess = lambda x: x  # raw 0..255 RGB: the model rescales inside"]
    elif name.startswith("custom:") or name == "your model":
        lines += ["", 'model = keras.saving.load_model("your_model.keras", safe_mode=True, compile=False)',
                  "preprocess = lambda x: x  # as the app does: raw 0..255 RGB"]
        if "/" in layer:
            lines += ["# a layer inside a nested model: cutting it out loses the gradient (keras#16123); rebuild",
                      "# the model flat (base layers and head in one functional graph) or use extractor.explain."]
            layer = layer.rsplit("/", 1)[-1]
    else:
        module, ctor = KERAS_APPLICATIONS.get(name, (None, None))
        if module is None:
            raise ValueError(f"no Grad-CAM snippet for backbone {backbone!r}")
        note = "  # random weights: the explanation means nothing" if weights == "none" else ""
        arg = "None" if weights == "none" else '"imagenet"'
        lines += [f"from keras.applications import {module}", "",
                  f"model = {module}.{ctor}(include_top=True, weights={arg}){note}",
                  f"preprocess = lambda x: {module}.preprocess_input(x.copy())  # it writes over its argument"]
    chosen = "tf.argmax(scores, axis=1)" if class_index is None else f"tf.fill([tf.shape(scores)[0]], {int(class_index)})"
    lines += [
        "model.layers[-1].activation = None  # explain the class score before the softmax (it saturates)",
        f"grad_model = keras.Model(model.inputs, [model.get_layer({layer!r}).output, model.output])",
        "",
        'paths = ["image1.jpg"]  # your images',
        f"images = np.stack([keras.utils.img_to_array(keras.utils.load_img(p, target_size=({h}, {w}))) for p in paths])",
        "x = tf.constant(preprocess(images))",
        "with tf.GradientTape() as tape:",
        "    tape.watch(x)  # frozen layers are recorded too",
        "    fmap, scores = grad_model(x, training=False)",
        f"    classes = {chosen}",
        "    score = tf.gather(scores, classes, axis=1, batch_dims=1)",
        "grads = tape.gradient(score, fmap)  # d score / d feature map, (N, h, w, C)",
    ]
    if method == "gradcam++":
        lines += [
            "g2, g3 = grads ** 2, grads ** 3  # Grad-CAM++ (Chattopadhay et al. 2018)",
            "denom = 2 * g2 + tf.reduce_sum(fmap, axis=(1, 2), keepdims=True) * g3",
            "alpha = g2 / tf.where(denom != 0, denom, tf.ones_like(denom))",
            "weights = tf.reduce_sum(alpha * tf.nn.relu(grads), axis=(1, 2))",
        ]
    else:
        lines += ["weights = tf.reduce_mean(grads, axis=(1, 2))  # one weight per channel (Selvaraju et al. 2017)"]
    lines += [
        "cam = tf.nn.relu(tf.reduce_sum(fmap * weights[:, None, None, :], axis=-1))",
        "cam = tf.math.divide_no_nan(cam, tf.reduce_max(cam, axis=(1, 2), keepdims=True))",
        f"heatmaps = tf.image.resize(cam[..., None], ({h}, {w}))[..., 0].numpy()  # (N, {h}, {w}) in [0, 1]",
        "print(heatmaps.shape, classes.numpy())",
    ]
    return "\n".join(lines) + "\n"
