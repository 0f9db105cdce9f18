"""Pooling a (N, H, W, C) feature map into one vector per image, inside the graph.

==========  ================================================  =========
name        what it computes                                  length
==========  ================================================  =========
avg         mean over H and W (global average pooling)        C
max         max over H and W (global max pooling)             C
gem         generalised mean, p = 3, on activations ≥ 0       C
avgmax      avg and max concatenated                          2C
flatten     every value, in H, W, C order                     H·W·C
none        the raw map, (N, H, W, C); only for a few images  —
==========  ================================================  =========

Pooling is over the spatial axes (1, 2) only, never the channels: the seed article's
``np.mean(x, axis=(1, 2, 3))`` left one number per image.

Example:
    >>> import numpy as np
    >>> pool_numpy(np.ones((2, 7, 7, 512), np.float32), "avgmax").shape
    (2, 1024)
"""

from __future__ import annotations

import numpy as np

from .errors import LayerExplorerError

__all__ = ["POOLINGS", "GLOBAL_POOLINGS", "GEM_P", "UnknownPoolingError", "check_poolings", "pool", "pool_numpy", "pooled_dim"]

POOLINGS = ("avg", "max", "gem", "avgmax", "flatten", "none")
GLOBAL_POOLINGS = ("avg", "max", "gem", "avgmax")
GEM_P = 3.0
_GEM_EPS = 1e-6  # GeM's usual clamp: keeps the p-th root differentiable and defined at zero

class UnknownPoolingError(LayerExplorerError):
    """A pooling name that is not one of :data:`POOLINGS`."""


def check_poolings(poolings) -> tuple[str, ...]:
    """Normalise and validate pooling names (a string "avg,max" or a sequence)."""
    if isinstance(poolings, str):
        poolings = [p for p in poolings.split(",")]
    names = tuple(dict.fromkeys(str(p).strip().lower() for p in poolings if str(p).strip()))
    if not names:
        raise UnknownPoolingError(f"no pooling given; choose from {', '.join(POOLINGS)}.")
    for name in names:
        if name not in POOLINGS:
            raise UnknownPoolingError(f"unknown pooling {name!r}; choose from {', '.join(POOLINGS)}.")
    return names


def pooled_dim(shape: tuple, pooling: str) -> int | None:
    """Length of the vector ``pooling`` makes from a (H, W, C) map; None if H/W unknown."""
    h, w, c = shape
    if pooling == "avgmax":
        return 2 * c
    if pooling in ("flatten", "none"):
        return None if h is None or w is None else h * w * c
    return c


def pool(x, pooling: str):
    """Pool a rank-4 float32 tensor inside a TensorFlow graph."""
    import tensorflow as tf

    if pooling == "avg":
        return tf.reduce_mean(x, axis=[1, 2])
    if pooling == "max":
        return tf.reduce_max(x, axis=[1, 2])
    if pooling == "gem":
        clamped = tf.maximum(x, _GEM_EPS)
        return tf.pow(tf.reduce_mean(tf.pow(clamped, GEM_P), axis=[1, 2]), 1.0 / GEM_P)
    if pooling == "avgmax":
        return tf.concat([tf.reduce_mean(x, axis=[1, 2]), tf.reduce_max(x, axis=[1, 2])], axis=-1)
    if pooling == "flatten":
        return tf.reshape(x, [tf.shape(x)[0], -1])
    if pooling == "none":
        return x
    raise UnknownPoolingError(f"unknown pooling {pooling!r}; choose from {', '.join(POOLINGS)}.")


def pool_numpy(x: np.ndarray, pooling: str) -> np.ndarray:
    """The NumPy twin of :func:`pool`, for maps already in memory (and for tests)."""
    x = np.asarray(x, np.float32)
    if x.ndim != 4:
        raise ValueError(f"pooling needs a (N, H, W, C) feature map; got shape {x.shape}")
    if pooling == "avg":
        return x.mean(axis=(1, 2))
    if pooling == "max":
        return x.max(axis=(1, 2))
    if pooling == "gem":
        return np.power(np.power(np.maximum(x, _GEM_EPS), GEM_P).mean(axis=(1, 2)), 1.0 / GEM_P)
    if pooling == "avgmax":
        return np.concatenate([x.mean(axis=(1, 2)), x.max(axis=(1, 2))], axis=-1)
    if pooling == "flatten":
        return x.reshape(len(x), -1)
    if pooling == "none":
        return x
    raise UnknownPoolingError(f"unknown pooling {pooling!r}; choose from {', '.join(POOLINGS)}.")
