"""Calibrate batch-norm statistics of an untrained network on a set of images (this is not training).

A randomly initialised BatchNormalization layer normalises with mean 0 and variance 1, whatever its
input really looks like, so an untrained network's activations shrink block after block (random
MobileNetV2 pools to ~1e-12). Re-estimating each layer's moving mean and variance from the images
restores unit-scale activations, which makes an untrained architecture's maps worth looking at for
its shapes and strides. No weight is learnt: convolutions stay random, only the statistics change.

How: one forward pass over all the (up to ``max_images``) images in training mode, with every BN
layer's momentum set to 0 for the pass, so each layer's moving statistics become exactly the batch
statistics of its input, layer after layer (each layer sees the previous ones already normalised by
the same statistics it will use in inference). Dropout-like layers are neutralised for the pass.

Example:
    >>> bb = load_backbone("demo-shapes", weights="none")  # random, with batch normalisation
    >>> calibrate_batchnorm(bb, images[:8]).weights.description
    'random + BN calibrated on 8 images — not training'
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .backbones import Backbone, WeightsInfo, preprocess_images
from .errors import LayerExplorerError

__all__ = ["CalibrationError", "DEFAULT_MAX_IMAGES", "has_batchnorm", "batchnorm_layers", "calibrate_batchnorm"]

#: Images used at most (evenly spaced over the set): one batch in memory at the network's input size.
DEFAULT_MAX_IMAGES = 128


class CalibrationError(LayerExplorerError):
    """Batch-norm calibration cannot run on what was passed."""


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):  # nested models
            yield from _all_layers(layer)


def batchnorm_layers(model) -> list:
    """Every BatchNormalization layer of ``model``, nested models included, in layer order."""
    import keras

    return [layer for layer in _all_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]


def has_batchnorm(model) -> bool:
    """Whether ``model`` has batch normalisation (the usual cause of collapsed random features).

    Example:
        >>> has_batchnorm(load_backbone("demo-shapes").model)
        True
    """
    return bool(batchnorm_layers(model))


def _quiet_stochastic_layers(model) -> list[tuple[object, str, float]]:
    """Set Dropout/noise layers to do nothing in training mode; returns what to restore."""
    import keras

    saved = []
    kinds = (keras.layers.Dropout, keras.layers.GaussianDropout, keras.layers.AlphaDropout)
    for layer in _all_layers(model):
        if isinstance(layer, kinds):
            saved.append((layer, "rate", layer.rate))
            layer.rate = 0.0
        elif isinstance(layer, keras.layers.GaussianNoise):
            saved.append((layer, "stddev", layer.stddev))
            layer.stddev = 0.0
    return saved


def calibrate_batchnorm(backbone: Backbone, images: np.ndarray, *, max_images: int = DEFAULT_MAX_IMAGES) -> Backbone:
    """A copy of ``backbone`` whose BN layers hold the statistics of ``images``; the original is untouched.

    ``images`` is an (N, H, W, 3) ``uint8`` batch at the backbone's input size (N >= 2). The copy's
    :class:`~extractor.backbones.WeightsInfo` keeps its kind (``random`` stays ``random``: every
    "weights are random" warning still applies), records ``bn_calibrated_on`` = the number of images
    used and says so in its description: "… + BN calibrated on N images — not training".

    Raises :class:`CalibrationError` for a model without batch normalisation or unusable images.
    """
    import keras

    x = np.asarray(images)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise CalibrationError(f"calibration needs an (N, H, W, 3) uint8 batch of images; got {x.dtype} {x.shape}. "
                               "Decode and resize them first (extractor.load_image).")
    if x.shape[0] < 2:
        raise CalibrationError(f"calibration needs at least 2 images to estimate statistics; got {x.shape[0]}.")
    if backbone.input_size is not None and tuple(x.shape[1:3]) != tuple(backbone.input_size):
        raise CalibrationError(f"images are {x.shape[1]}×{x.shape[2]} but {backbone.name} takes "
                               f"{backbone.input_size[0]}×{backbone.input_size[1]}; resize them to its input size.")
    if not has_batchnorm(backbone.model):
        raise CalibrationError(f"{backbone.name} has no BatchNormalization layer, so there is nothing to calibrate.")
    if x.shape[0] > max_images:
        x = x[np.linspace(0, x.shape[0] - 1, max_images).round().astype(int)]

    model = keras.models.clone_model(backbone.model)
    model.set_weights(backbone.model.get_weights())
    bns = batchnorm_layers(model)
    momenta = [bn.momentum for bn in bns]
    saved = _quiet_stochastic_layers(model)
    try:
        for bn in bns:
            bn.momentum = 0.0  # moving = 0 * old + 1 * batch statistics
        model(preprocess_images(x.astype(np.float32), backbone.spec.preprocessing), training=True)
    finally:
        for bn, momentum in zip(bns, momenta, strict=True):
            bn.momentum = momentum
        for layer, attr, value in saved:
            setattr(layer, attr, value)

    n = int(x.shape[0])
    old = backbone.weights
    base = "random" if old.kind == "random" else old.description
    info = WeightsInfo(old.kind, f"{base} + BN calibrated on {n} images — not training", old.source,
                       bn_calibrated_on=n)
    return replace(backbone, model=model, weights=info)
