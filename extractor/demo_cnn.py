"""The demo network: its architecture and where its shipped files are, and nothing else.

Imported by the registry (:mod:`extractor.backbones`, which makes ``demo-shapes`` a backbone like
the others) and by the training code (:mod:`extractor.training`, which trains it), so neither
needs the other. The files live in ``extractor/assets`` and install with the package:
``demo_shapes.weights.h5`` (the trained backbone's weights, what the registry loads) and
``demo_shapes.keras`` (the same backbone as a whole Keras model file, input ``(None, None, 3)``,
for plain Keras: ``keras.saving.load_model(path, safe_mode=True)``), both written by
:func:`extractor.training.train_demo`; a test checks that the two give the same outputs.

Example:
    >>> DEMO_WEIGHTS_PATH.name, DEMO_WEIGHTS_PATH.is_file()
    ('demo_shapes.weights.h5', True)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

# Keras is imported inside build_demo_cnn: `import extractor` must stay cheap.

__all__ = [
    "DEMO_CHANNELS",
    "DEMO_HEAD_WEIGHTS_PATH",
    "DEMO_INFO_PATH",
    "DEMO_INPUT_SIZE",
    "DEMO_MODEL_PATH",
    "DEMO_WEIGHTS_PATH",
    "build_demo_cnn",
]

DEMO_INPUT_SIZE = (64, 64)
DEMO_CHANNELS = (16, 32, 64, 128)
_ASSETS = Path(__file__).resolve().parent / "assets"
DEMO_WEIGHTS_PATH = _ASSETS / "demo_shapes.weights.h5"
DEMO_HEAD_WEIGHTS_PATH = _ASSETS / "demo_shapes_head.weights.h5"
DEMO_INFO_PATH = _ASSETS / "demo_shapes.json"
#: The trained backbone as one ``.keras`` file (architecture + weights), for code outside the app.
DEMO_MODEL_PATH = _ASSETS / "demo_shapes.keras"


def build_demo_cnn(input_shape=(64, 64, 3), *, name: str = "demo_shapes", channels: Sequence[int] = DEMO_CHANNELS,
                   dtype: str = "float32"):
    """The demo feature extractor: ``rescale`` then VGG-like blocks of conv-BN-ReLU ×2 + max-pool.

    Layer names are ``block{b}_conv{j}``, ``block{b}_bn{j}``, ``block{b}_relu{j}``, ``block{b}_pool``
    for ``b`` in 1..len(channels); input is raw 0..255 RGB. ``input_shape=(None, None, 3)`` gives
    a fully convolutional model that accepts any size ≥ 16 px. About 290 k float32 parameters
    (1.2 MB) with the default channels. ``dtype`` is the layers' dtype policy, float32 unless
    asked otherwise (``"mixed_bfloat16"`` computes in bfloat16 and keeps float32 weights).

    Example:
        >>> m = build_demo_cnn((None, None, 3))
        >>> m.output_shape, m.get_layer("block2_pool").output.shape
        ((None, None, None, 128), (None, None, None, 32))
    """
    import keras
    from keras import layers

    f32 = {"dtype": dtype}  # explicit: a mixed-precision global policy set elsewhere never leaks in
    inputs = keras.Input(shape=tuple(input_shape), name="image", dtype="float32")
    x = layers.Rescaling(1.0 / 255, name="rescale", **f32)(inputs)
    for b, width in enumerate(channels, start=1):
        for j in (1, 2):
            # No conv bias: the BatchNormalization right after has its own shift.
            x = layers.Conv2D(width, 3, padding="same", use_bias=False, kernel_initializer="he_normal",
                              name=f"block{b}_conv{j}", **f32)(x)
            x = layers.BatchNormalization(name=f"block{b}_bn{j}", **f32)(x)
            x = layers.ReLU(name=f"block{b}_relu{j}", **f32)(x)
        x = layers.MaxPooling2D(2, name=f"block{b}_pool", **f32)(x)
    return keras.Model(inputs, x, name=name)
