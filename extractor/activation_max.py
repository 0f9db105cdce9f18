"""Activation maximisation: the input picture that a channel responds to most (Erhan et al., 2009).

Gradient ascent on the input pixels: start from a grey picture with a little noise, and at each
step move the pixels along the gradient of the channel's mean activation. Two standard tricks
keep it from producing pure high-frequency noise (Mordvintsev et al., "Inceptionism", 2015;
Olah et al., "Feature Visualization", Distill 2017): each step is L2-normalised (a fixed step
length, whatever the gradient's scale), and the picture is jittered (rolled by a few random
pixels) before each step, so the pattern must work at neighbouring positions too. The result
is an *optimised picture*, not a real image: it says what the channel prefers, in the
network's own terms.

The loop is plain Python around one compiled gradient step, so it can report progress after
every step and stop as soon as ``should_stop()`` says so (a Cancel button).

Example:
    >>> bb = load_backbone("demo-shapes")
    >>> res = activation_maximisation(bb, "block2_conv1", channel=3, steps=5, seed=0)
    >>> res.image.shape, res.image.dtype, len(res.trace)
    ((64, 64, 3), dtype('uint8'), 5)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .backbones import Backbone, preprocess_tensor
from .errors import LayerExplorerError
from .features import _layer_outputs
from .layers import feature_layers, find_layer

__all__ = ["ActivationMaxError", "MaximisedInput", "activation_maximisation"]


class ActivationMaxError(LayerExplorerError):
    """A layer, channel or setting activation maximisation cannot use."""


@dataclass(frozen=True)
class MaximisedInput:
    """The optimised picture and how the channel's activation rose on the way."""

    image: np.ndarray  # (H, W, 3) uint8
    layer: str
    channel: int
    trace: tuple[float, ...]  # the channel's mean activation before each step
    best_value: float  # the activation of the returned picture (the best one seen)
    steps_done: int
    cancelled: bool
    seconds: float

    @property
    def start_value(self) -> float:
        return self.trace[0] if self.trace else float("nan")



def activation_maximisation(
    backbone: Backbone,
    layer: str,
    channel: int,
    *,
    steps: int = 50,
    step_size: float = 2.0,
    jitter: int = 4,
    input_size: tuple[int, int] | None = None,
    seed: int = 0,
    progress: Callable[[int, int, float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> MaximisedInput:
    """Gradient ascent on the input to maximise the mean activation of ``layer``'s ``channel``.

    Args:
        backbone: from :func:`extractor.load_backbone`; its preprocessing is applied in the graph,
            so the optimisation happens in ordinary 0–255 RGB pixels.
        steps: gradient steps (about 50 give a clear pattern on small networks).
        step_size: length of each L2-normalised step, in 0–255 pixel units per pixel (RMS).
        jitter: the picture is rolled by up to this many pixels (each axis) before each step.
        input_size: the picture's size; defaults to the backbone's input size.
        progress: called as ``progress(step, steps, activation)`` after every step.
        should_stop: polled before every step; when it returns True the loop stops and the
            picture so far is returned with ``cancelled=True``.

    The picture returned is the one with the highest activation seen; a step that makes the
    activation collapse (a ReLU switching the channel off) is undone and the step length halved.
    """
    import time

    import keras
    import tensorflow as tf

    table = feature_layers(backbone.model)
    info = find_layer(table, layer, backbone.name)
    channels = info.shape[2]
    if not isinstance(channel, (int, np.integer)) or not 0 <= int(channel) < channels:
        raise ActivationMaxError(f"channel {channel!r} is out of range: {layer} has {channels} channels (0 … {channels - 1}).")
    if not isinstance(steps, int) or steps < 1:
        raise ActivationMaxError(f"steps must be a positive integer; got {steps!r}.")
    size = tuple(input_size or backbone.input_size or backbone.spec.input_size)
    if backbone.input_size is None and input_size is None:
        size = tuple(backbone.spec.input_size)
    h, w = int(size[0]), int(size[1])
    channel = int(channel)

    model = backbone.model
    probe = keras.Model(model.inputs, _layer_outputs(model, [info.name]), name="actmax_probe")
    mode = backbone.spec.preprocessing
    scale = float(step_size) * np.sqrt(h * w * 3)  # an RMS step of step_size per pixel

    @tf.function(input_signature=[tf.TensorSpec([1, h, w, 3], tf.float32), tf.TensorSpec([2], tf.int32),
                                  tf.TensorSpec([], tf.float32)], reduce_retracing=True)
    def step(x, shift, scale):
        rolled = tf.roll(x, shift=shift, axis=[1, 2])
        with tf.GradientTape() as tape:
            tape.watch(rolled)
            out = probe(preprocess_tensor(rolled, mode), training=False)
            out = out[0] if isinstance(out, (list, tuple)) else out
            value = tf.reduce_mean(tf.cast(out[..., channel], tf.float32))
        grad = tape.gradient(value, rolled)
        grad = grad / (tf.norm(grad) + 1e-8)
        moved = tf.roll(rolled + scale * grad, shift=-shift, axis=[1, 2])
        return tf.clip_by_value(moved, 0.0, 255.0), value

    rng = np.random.default_rng(seed)
    x = tf.constant((128.0 + rng.normal(0.0, 8.0, size=(1, h, w, 3))).astype(np.float32))
    start = time.perf_counter()
    trace: list[float] = []
    cancelled = False
    best_x, best_value, stale = x, -np.inf, 0
    for i in range(steps):
        if should_stop is not None and should_stop():
            cancelled = True
            break
        shift = rng.integers(-jitter, jitter + 1, size=2).astype(np.int32) if jitter > 0 else np.zeros(2, np.int32)
        moved, value = step(x, tf.constant(shift), tf.constant(scale, tf.float32))
        value = float(value)  # the activation of x, before this step's move
        if value >= best_value:
            best_x, best_value, stale = x, value, 0
        else:
            stale += 1
        if stale >= 4:  # no progress for a while: oscillating around a peak, so shorten the steps
            scale, stale = scale / 2, 0
        if best_value > 0 and value < 0.5 * best_value:
            # The last step overshot (a ReLU switched the channel off): go back and take smaller steps.
            x, scale = best_x, scale / 2
        else:
            x = moved
        trace.append(value)
        if progress is not None:
            progress(i + 1, steps, value)
    image = np.clip(np.rint(best_x.numpy()[0]), 0, 255).astype(np.uint8)
    return MaximisedInput(image, info.name, channel, tuple(trace), float(best_value), len(trace), cancelled,
                          time.perf_counter() - start)
