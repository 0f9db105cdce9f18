"""Is a feature matrix usable? ``ok``, ``collapsed`` (its scale shrank towards zero) or ``constant``.

An untrained network with batch normalisation is the usual culprit: with random weights every
BatchNormalization layer still holds its initial statistics (mean 0, variance 1) while the real
activations are far smaller, so each block shrinks them again. Random MobileNetV2 ends with pooled
values near 1e-12: distances, silhouettes and top-channel tables all round to zero, and it is easy to
blame the images. :func:`check_features` says what happened in numbers, and a message names the likely
cause; the UI formats it, nobody parses it.

Example:
    >>> check_features(np.full((3, 4), 1e-12) * np.arange(1, 4)[:, None], "out_relu/avg").status
    'collapsed'
    >>> check_features(np.eye(3)).status
    'ok'
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import LayerExplorerError

__all__ = [
    "OK",
    "COLLAPSED",
    "CONSTANT",
    "COLLAPSED_SCALE",
    "CONSTANT_SPREAD",
    "FeatureHealthError",
    "FeatureHealth",
    "check_features",
    "likely_cause",
]

OK, COLLAPSED, CONSTANT = "ok", "collapsed", "constant"
#: Largest |value| below which a feature matrix has collapsed. Trained networks give pooled values of
#: order 0.01–10; float32 arithmetic on values near 1e-12 leaves distances that mean nothing.
COLLAPSED_SCALE = 1e-5
#: Largest per-channel spread across images, relative to the scale, at or below which every image
#: gives the same vector (float32 round-off of one vector, with margin).
CONSTANT_SPREAD = 1e-6


class FeatureHealthError(LayerExplorerError):
    """What was passed is not a feature matrix."""


@dataclass(frozen=True)
class FeatureHealth:
    """The verdict on one (N, C) feature matrix, with the numbers behind it.

    Example:
        >>> h = check_features(np.zeros((2, 3)))
        >>> h.status, h.scale, h.spread
        ('constant', 0.0, 0.0)
    """

    status: str  # OK, COLLAPSED or CONSTANT
    name: str  # what the caller called it, e.g. "out_relu/avg"
    scale: float  # largest |value| (finite values only)
    spread: float  # largest standard deviation of one channel across the images
    n_images: int
    n_channels: int
    cause: str = ""  # "untrained-batchnorm", "untrained", "unknown"; "" when OK
    message: str = ""  # plain sentence for the user; "" when OK

    @property
    def ok(self) -> bool:
        return self.status == OK


def likely_cause(*, random_weights: bool | None, batchnorm: bool | None) -> str:
    """The likely reason features collapse: ``untrained-batchnorm``, ``untrained`` or ``unknown``.

    Example:
        >>> likely_cause(random_weights=True, batchnorm=True)
        'untrained-batchnorm'
    """
    if random_weights:
        return "untrained-batchnorm" if batchnorm else "untrained"
    return "unknown"


_CAUSE_TEXT = {
    "untrained-batchnorm": (
        "This is not about your images: the network is untrained and has batch normalisation, whose "
        "layers still hold their initial statistics, so each block shrinks the activations further. "
        "Calibrate the batch-norm statistics on these images (this is not training), or use trained weights."
    ),
    "untrained": (
        "This is not about your images: the network's weights are random (untrained), so this layer's "
        "activations carry almost no signal. Use trained weights, or an earlier layer."
    ),
    "unknown": "Try an earlier layer or another pooling; check that the weights are the ones you meant to load.",
}


def check_features(features, name: str = "features", *, random_weights: bool | None = None,
                   batchnorm: bool | None = None) -> FeatureHealth:
    """Classify an (N, C) feature matrix as ``ok``, ``collapsed`` (tiny scale) or ``constant``.

    ``collapsed``: every finite value is below :data:`COLLAPSED_SCALE` in size but not all zero.
    ``constant``: with two or more images, no channel varies across them by more than
    :data:`CONSTANT_SPREAD` × the scale (all-zero features are constant). ``random_weights`` and
    ``batchnorm`` (see :func:`extractor.calibration.has_batchnorm`) let the message name the cause.

    Example:
        >>> h = check_features(np.ones((4, 2)) * 3.0, "b4/avg")
        >>> h.status, h.message.split(":")[0]
        ('constant', 'b4/avg gives the same vector for every image')
    """
    x = np.asarray(features)
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.number):
        raise FeatureHealthError(f"{name}: expected a 2-D (images, channels) numeric array; got "
                                 f"{x.dtype} with shape {x.shape}.")
    n, c = x.shape
    x = np.where(np.isfinite(x), x, np.nan).astype(np.float64)
    finite = ~np.isnan(x)
    scale = float(np.abs(x[finite]).max()) if finite.any() else 0.0
    with np.errstate(invalid="ignore"):
        spreads = np.nanstd(x, axis=0) if n > 1 and finite.any() else np.zeros(c)
    spread = float(np.nanmax(spreads)) if spreads.size and not np.isnan(spreads).all() else 0.0

    cause = likely_cause(random_weights=random_weights, batchnorm=batchnorm)
    if n > 1 and spread <= CONSTANT_SPREAD * scale:
        if scale == 0.0:
            what = f"{name} is zero for every image: {n} images × {c} channels, all 0."
        else:
            what = (f"{name} gives the same vector for every image: no channel varies by more than {spread:.1e} "
                    f"across {n} images (values up to {scale:.2e}).")
        if cause == "unknown":
            tail = ("Either the images are copies of one image, or this layer ignores what differs between "
                    "them; " + _CAUSE_TEXT["unknown"][0].lower() + _CAUSE_TEXT["unknown"][1:])
        else:
            tail = _CAUSE_TEXT[cause]
        return FeatureHealth(CONSTANT, name, scale, spread, n, c, cause, f"{what} {tail}")
    if 0.0 < scale < COLLAPSED_SCALE:
        what = (f"{name} has collapsed: its largest value is {scale:.1e} (trained networks give 0.01–10), "
                "so distances, scores and top channels all round to zero.")
        return FeatureHealth(COLLAPSED, name, scale, spread, n, c, cause, f"{what} {_CAUSE_TEXT[cause]}")
    return FeatureHealth(OK, name, scale, spread, n, c)
