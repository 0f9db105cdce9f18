"""Which layer, which pooling: score every block-level layer × pooling on a labelled set.

One forward pass per batch returns every layer and every pooling at once
(:class:`~extractor.features.FeatureExtractor`); the scores come from
:mod:`extractor.scoring`. Extraction time per layer is measured separately, on a small probe
batch through the network cut at that layer, because in the shared pass the layers' costs
cannot be told apart.

Example:
    >>> report = run_sweep(load_backbone("demo-shapes"), batch.sources, poolings="avg,max")
    >>> print(report.recommendation_text())
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .backbones import Backbone
from .feature_health import FeatureHealth
from .features import ExtractionResult, Failure, FeatureExtractor
from .layers import feature_layers, representative_layers
from .pooling import check_poolings
from .scoring import Recommendation, recommend, score_sweep

__all__ = ["SweepReport", "run_sweep", "layer_costs", "sweep_layers"]

_PROBE_IMAGES = 8


@dataclass
class SweepReport:
    """One sweep: the scored table (one row per layer × pooling), the recommendation, and what was left out.

    The command line's :func:`run_sweep` and the Layer-selection page (:func:`ui.sweeps.run_sweep`)
    both return one. ``failures`` are images left out, ``skipped`` configurations that could not be
    extracted (key → why), ``health`` the :class:`~extractor.feature_health.FeatureHealth` of each
    configuration where the caller checked it. The last fields say what the sweep ran on, for a
    caller that keeps results and must tell later whether one still applies (plain values;
    ``config`` is the caller's configuration value, None from the command line).

    Build one from a scored table with :meth:`from_table`: the recommendation and the label
    problem then always come from that table.
    """

    table: pd.DataFrame
    recommendation: Recommendation | None
    failures: list[Failure] = field(default_factory=list)
    n_images: int = 0
    seconds: float = 0.0
    label_problem: str | None = None
    layers: list[str] = field(default_factory=list)
    poolings: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    health: list[FeatureHealth] = field(default_factory=list)
    signature: str = ""  # what the result depends on (ui.sweeps.sweep_signature)
    rows: str = ""  # identity of the scored rows (ui.features.rows_id)
    images_text: str = ""  # the scored images, as a person reads it
    images_id: str = ""  # digest of those images' contents, in order
    config: Any = None  # the caller's configuration value (the app's BackboneConfig)
    runtime: str = ""  # the engine that computed the scored features ("tensorflow", "openvino"; "" unknown)

    @classmethod
    def from_table(cls, table: pd.DataFrame, **fields) -> SweepReport:
        """The report of a :func:`~extractor.scoring.score_sweep` table (recommendation and label problem from it)."""
        return cls(table=table, recommendation=recommend(table), label_problem=table.attrs.get("label_problem"),
                   **fields)

    def table_text(self) -> str:
        cols = [c for c in ("layer", "pooling", "dim", "knn_acc", "linear_acc", "silhouette", "ms_per_image")
                if c in self.table.columns]
        return self.table[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}")

    def recommendation_text(self) -> str:
        if self.recommendation is None:
            why = self.label_problem or "the images have no labels"
            return f"No recommendation: {why}"  # label_problem's reason already says how to fix it
        return f"Recommendation: {self.recommendation.reason}"


def sweep_layers(backbone: Backbone) -> list[str]:
    """The block-level layers a sweep scores: one output per block, in depth order."""
    return [info.name for info in representative_layers(feature_layers(backbone.model), "block")]


def layer_costs(backbone: Backbone, layers: Sequence[str], images: np.ndarray | None = None,
                repeats: int = 2, seed: int = 0, runtime: str = "auto") -> dict[str, float]:
    """Milliseconds per image to extract each layer alone (network cut there), on a probe batch.

    Without ``images``, the probe is a batch of random images at the backbone's input size. Timed on
    ``runtime`` (:mod:`extractor.runtime`), the engine the extraction runs on; with OpenVINO the first
    sweep of a backbone converts each cut once (cached on disk after that).
    """
    if images is None:
        size = backbone.input_size or backbone.spec.input_size
        images = np.random.default_rng(seed).integers(0, 256, (_PROBE_IMAGES, *size, 3), dtype=np.uint8)
    costs = {}
    for layer in layers:
        fx = FeatureExtractor(backbone, [layer], ["avg"], runtime=runtime)
        fx.run_batch(images)  # warm
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            fx.run_batch(images)
            best = min(best, time.perf_counter() - start)
        costs[layer] = 1000.0 * best / len(images)
    return costs


def run_sweep(
    backbone: Backbone,
    inputs,
    *,
    layers: Sequence[str] | None = None,
    poolings: Sequence[str] | str = ("avg", "max", "gem", "avgmax"),
    batch_size: int = 32,
    resize: str = "stretch",
    runtime: str = "auto",
    progress: Callable[[int, int | None], None] | None = None,
    extraction: ExtractionResult | None = None,
) -> SweepReport:
    """Extract every layer × pooling in one pass, time each layer, score each configuration, and recommend.

    Labels are the ones the inputs carry (folder names, demo classes). A precomputed
    ``extraction`` (from the same layers and poolings) skips the forward pass.
    """
    start = time.perf_counter()
    layers = list(layers) if layers else sweep_layers(backbone)
    poolings = check_poolings(poolings)
    if extraction is None:
        fx = FeatureExtractor(backbone, layers, poolings, resize=resize, runtime=runtime)
        extraction = fx.extract(inputs, batch_size=batch_size, progress=progress)
    depth = {info.name: info.depth for info in feature_layers(backbone.model)}
    table = score_sweep(
        extraction.features,
        extraction.labels,
        depths={name: depth[name] for name in layers},
        costs_ms=layer_costs(backbone, layers, runtime=runtime),
    )
    return SweepReport.from_table(
        table,
        failures=list(extraction.failures),
        n_images=len(extraction.names),
        seconds=time.perf_counter() - start,
        layers=layers,
        poolings=list(poolings),
    )
