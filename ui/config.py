"""The one configuration that decides what a network computes, as a frozen, hashable value.

The sidebar's choices become one :class:`BackboneConfig` (``ui.state.current_config()``), and
that one value travels, unchanged and as the first argument, through every cache and builder
(``ui.cache.get_extractor(config, ...)``, ``ui.cache.raw_maps(config, ...)``, the export
builders, the reproduce script). Streamlit hashes it field by field, so every field is a cache
key: two configurations that differ in anything never share an entry.

Example:
    >>> cfg = BackboneConfig("demo-shapes", "pretrained", (64, 64))
    >>> cfg.runtime, cfg.replace(weights="none").weights
    ('tensorflow', 'none')
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from extractor import Backbone, FeatureExtractor

__all__ = ["BackboneConfig", "build_extractor", "weights_text", "describe_config", "config_differences",
           "is_random", "weights_caveat"]


@dataclass(frozen=True)
class BackboneConfig:
    """Everything that decides what a network computes, as plain hashable values."""

    name: str  # a registry name, or "custom:<digest>" for a session's uploaded model
    weights: str  # "pretrained", "none" (random), a local file path, or "upload"
    input_size: tuple[int, int]
    resize: str = "stretch"
    precision: str = "float32"
    runtime: str = "tensorflow"  # the engine that runs the network (a cache key already)

    def __post_init__(self):
        # Lists from callers would make the value unhashable and two equal configs unequal.
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))

    def replace(self, **changes) -> BackboneConfig:
        """A copy with some fields changed (the value itself never changes)."""
        return dataclasses.replace(self, **changes)


def weights_text(weights: str) -> str:
    """The sidebar's words for a ``weights`` value.

    Example:
        >>> weights_text("none"), weights_text("pretrained"), weights_text("/srv/w/my.weights.h5")
        ('random weights (untrained)', 'pretrained weights', 'weights from my.weights.h5')
    """
    if weights == "none":
        return "random weights (untrained)"
    if weights == "pretrained":
        return "pretrained weights"
    if weights == "upload":
        return "your model's weights"
    return f"weights from {str(weights).replace(chr(92), '/').rsplit('/', 1)[-1]}"  # the file name only


def is_random(config: BackboneConfig) -> bool:
    """True for untrained weights (plain random, or random with calibrated batch-norm statistics)."""
    return config.weights == "none" or config.weights.startswith("none+")


def weights_caveat(config: BackboneConfig) -> str | None:
    """What to say beside a result meant for use (a recommendation, an export, a map) when the weights are random.

    ``None`` for trained weights. Pages show it with ``st.warning``; captions can append it.

    Example:
        >>> weights_caveat(BackboneConfig("vgg16", "pretrained", (32, 32))) is None
        True
        >>> weights_caveat(BackboneConfig("vgg16", "none", (32, 32))).startswith("Random weights")
        True
    """
    if not is_random(config):
        return None
    return ("Random weights (untrained): these results come from an untrained network. They show its "
            "architecture (shapes, strides), not learned features; pick Pretrained weights for features to use.")


def describe_config(config: BackboneConfig) -> str:
    """One line for a person: backbone, weights, input size, resize, precision.

    Example:
        >>> describe_config(BackboneConfig("vgg16", "none", (32, 32)))
        'vgg16, random weights (untrained), 32×32 px, stretch, float32'
    """
    h, w = config.input_size
    name = "your model" if config.name.startswith("custom:") else config.name
    return f"{name}, {weights_text(config.weights)}, {h}×{w} px, {config.resize}, {config.precision}"


def config_differences(was: BackboneConfig, now: BackboneConfig) -> list[str]:
    """What changed between two configurations, one phrase each ("weights: random … → pretrained …").

    Example:
        >>> config_differences(BackboneConfig("vgg16", "none", (32, 32)), BackboneConfig("vgg16", "none", (64, 64)))
        ['input size: 32×32 → 64×64 px']
    """
    out = []
    if was.name != now.name:
        out.append(f"backbone: {was.name} → {now.name}")
    if was.weights != now.weights:
        out.append(f"weights: {weights_text(was.weights)} → {weights_text(now.weights)}")
    if was.input_size != now.input_size:
        out.append(f"input size: {was.input_size[0]}×{was.input_size[1]} → {now.input_size[0]}×{now.input_size[1]} px")
    for name in ("resize", "precision", "runtime"):
        if getattr(was, name) != getattr(now, name):
            out.append(f"{name}: {getattr(was, name)} → {getattr(now, name)}")
    return out


def build_extractor(
    backbone: Backbone, config: BackboneConfig, layers: Sequence[str], poolings: Sequence[str]
) -> FeatureExtractor:
    """The one place a :class:`FeatureExtractor` is made from a configuration (not cached).

    ``background=True``: under ``runtime="auto"`` a configuration whose OpenVINO conversion is not
    cached yet is served by TensorFlow at once while the conversion runs on a background thread,
    then switches (``fx.runtime``/``fx.precision`` say what runs now), so a first render never
    waits for a conversion.
    """
    return FeatureExtractor(backbone, list(layers), list(poolings), precision=config.precision, resize=config.resize,
                            runtime=config.runtime, background=True)
