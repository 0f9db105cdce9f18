"""Are the features a page shows usable? One check per feature matrix, one message per page.

:func:`feature_health` runs :func:`extractor.feature_health.check_features` on each (N, C) matrix,
naming the likely cause (random weights, batch normalisation); :func:`health_message` turns the
unusable ones into one Markdown message, or ``None`` when all are fine. A page shows it instead of
numbers that round to zero (0.0000, a silhouette of 0.000, "copies of one image").

Example (inside a page)::

    message = health_message(feature_health(fetch.features.features, config, backbone))
    if message:
        st.warning(message, icon=":material/blur_off:")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from extractor.calibration import has_batchnorm
from extractor.feature_health import FeatureHealth, check_features

from .config import BackboneConfig, is_random

__all__ = ["feature_health", "health_message"]


def feature_health(features: Mapping[str, np.ndarray], config: BackboneConfig, backbone) -> list[FeatureHealth]:
    """The verdict on every matrix of ``features`` (keyed "layer/pooling"), in their order."""
    random = is_random(config)
    batchnorm = has_batchnorm(backbone.model) if random and backbone is not None else None
    return [check_features(x, key, random_weights=random, batchnorm=batchnorm) for key, x in features.items()]


def health_message(verdicts: Sequence[FeatureHealth], limit: int = 6) -> str | None:
    """One message for the unusable matrices: the first one's full sentence, then the others by name."""
    bad = [h for h in verdicts if not h.ok]
    if not bad:
        return None
    text = bad[0].message
    if len(bad) > 1:
        names = ", ".join(h.name for h in bad[1:limit]) + (f" and {len(bad) - limit} more" if len(bad) > limit else "")
        text += f"\n\nThe same holds for {names}."
    return text
