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

__all__ = ["BackboneConfig", "build_extractor"]


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
