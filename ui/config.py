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

__all__ = ["BackboneConfig", "build_extractor", "weights_text", "describe_config", "runtime_text", "config_differences",
           "is_random", "weights_caveat", "CALIBRATED_PREFIX", "calibrated_weights", "calibration_of",
           "image_set_text"]

#: ``weights`` of random weights whose batch-norm statistics were calibrated on a session's images:
#: ``"none+bn:<digest>:<n>:<image set>"``. The digest names the images (and input size, resize), so
#: every cache keyed by the configuration keys on them too.
CALIBRATED_PREFIX = "none+bn:"


@dataclass(frozen=True)
class BackboneConfig:
    """Everything that decides what a network computes, as plain hashable values."""

    name: str  # a registry name, or "custom:<digest>" for a session's uploaded model
    weights: str  # "pretrained", "none" (random), "none+bn:…" (random, BN calibrated), a local file path, or "upload"
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


def calibrated_weights(digest: str, n: int, image_set: str) -> str:
    """The ``weights`` value of random weights with batch-norm statistics calibrated on ``n`` images.

    Example:
        >>> calibrated_weights("ab" * 32, 12, "upload")
        'none+bn:abababababababab:12:upload'
    """
    return f"{CALIBRATED_PREFIX}{digest[:16]}:{int(n)}:{image_set}"


def calibration_of(weights: str) -> tuple[int, str] | None:
    """``(n images, image set)`` of a calibrated ``weights`` value; ``None`` for any other.

    Example:
        >>> calibration_of("none+bn:abababababababab:12:demo:shapes"), calibration_of("none")
        ((12, 'demo:shapes'), None)
    """
    if not str(weights).startswith(CALIBRATED_PREFIX):
        return None
    _, n, image_set = str(weights)[len(CALIBRATED_PREFIX):].split(":", 2)
    return int(n), image_set


def image_set_text(origin: str) -> str:
    """A person's words for an image set's origin ("demo:shapes", "upload").

    Example:
        >>> image_set_text("demo:shapes"), image_set_text("upload")
        ('the shapes demo set', 'the uploaded images')
    """
    if origin.startswith("demo:"):
        return f"the {origin.removeprefix('demo:')} demo set"
    return "the uploaded images" if origin == "upload" else origin or "the image set"


def weights_text(weights: str) -> str:
    """The sidebar's words for a ``weights`` value.

    Example:
        >>> weights_text("none"), weights_text("pretrained"), weights_text("/srv/w/my.weights.h5")
        ('random weights (untrained)', 'pretrained weights', 'weights from my.weights.h5')
        >>> weights_text("none+bn:abababababababab:12:upload")
        'random weights, batch-norm statistics calibrated on 12 images of the uploaded images (not training)'
    """
    calibrated = calibration_of(weights)
    if calibrated is not None:
        n, image_set = calibrated
        return (f"random weights, batch-norm statistics calibrated on {n} images of {image_set_text(image_set)} "
                "(not training)")
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
    calibrated = calibration_of(config.weights)
    if calibrated is not None:
        n, image_set = calibrated
        return (f"Random weights, batch-norm statistics calibrated on {n} images of {image_set_text(image_set)}: "
                "this is not training. The convolutions are untrained, so these results show the architecture "
                "(shapes, strides) with activations at a usable scale, not learned features; pick Pretrained "
                "weights for features to use.")
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


def runtime_text(runtime: str) -> str:
    """The engine(s) that computed a result, for a person: ``"openvino"``, ``"tensorflow"``, or both
    joined by ``+`` (some layers on each, while a conversion was under way); ``""``: not recorded.

    Example:
        >>> runtime_text("openvino"), runtime_text("openvino+tensorflow"), runtime_text("")
        ('OpenVINO', 'OpenVINO for some layers, TensorFlow for others', 'the runtime in use')
    """
    names = {"openvino": "OpenVINO", "tensorflow": "TensorFlow"}
    engines = [names.get(part, part) for part in runtime.split("+") if part]
    if not engines:
        return "the runtime in use"
    return engines[0] if len(engines) == 1 else f"{engines[0]} for some layers, {engines[1]} for others"


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
