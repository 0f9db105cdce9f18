"""The Layer-selection sweep: run it, keep its result in the session, hand a choice to Export.

:func:`run_sweep` fetches every block layer × pooling in one pass (:func:`ui.features.fetch_features`),
times each layer (:func:`layer_costs_cached`, keyed by the configuration, inside an inference
slot), scores them (:func:`extractor.sweep.score_sweep`) and stores a :class:`SweepResult` under
:data:`SWEEP_RESULT_KEY`. A stored result is shown only while its :func:`sweep_signature` holds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pandas as pd
import streamlit as st

from extractor import LayerInfo
from extractor.errors import Failure, LayerExplorerError
from extractor.scoring import Recommendation, recommend
from extractor.sweep import layer_costs, score_sweep

from .config import BackboneConfig
from .features import digest_of, fetch_features, labels_id, rows_id
from .health import feature_health
from .image_set import ImageSet
from .inference_slot import inference_slot

__all__ = [
    "NothingToScoreError",
    "run_sweep",
    "stored_result",
    "scores_view",
    "use_in_export",
    "export_choice",
    "EXPORT_CHOICE_KEY",
    "SWEEP_RESULT_KEY",
    "layer_costs_cached",
    "SweepResult",
    "sweep_signature",
]


#: Session keys shared between pages.
EXPORT_CHOICE_KEY = "export_choice"  # {"layers": [...], "poolings": [...]} set by Layer selection


SWEEP_RESULT_KEY = "ls_result"  # the last SweepResult of this session


@st.cache_data(max_entries=16, show_spinner=False)
def layer_costs_cached(config: BackboneConfig, layers: tuple[str, ...], _backbone) -> dict[str, float]:
    """Milliseconds per image to extract each layer alone (``extractor.sweep.layer_costs``).

    Keyed by the configuration; measured on an 8-image random probe batch, inside
    an inference slot so it never competes with more than one other forward pass.
    """
    with inference_slot():
        return layer_costs(_backbone, list(layers))


@dataclass
class SweepResult:
    """One sweep of this session: what it was run on (``signature``) and what came out."""

    signature: str
    table: pd.DataFrame
    recommendation: Recommendation | None
    label_problem: str | None
    n_images: int
    seconds: float
    layers: list[str]
    poolings: list[str]
    skipped: dict[str, str] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    rows: str = ""  # rows_id of the images it scored (the Export page checks it before using the result)
    config: BackboneConfig | None = None  # the network it scored (Export says so, and warns when the sidebar differs)
    images_text: str = ""  # ImageSet.summary() of the images it scored
    images_id: str = ""  # digest of those images' contents, in order
    health: list = field(default_factory=list)  # FeatureHealth of every configuration (ui.health)


def sweep_signature(rows: str, labels: str, poolings: Sequence[str], k: int, folds: int) -> str:
    """What a sweep result depends on; a stored result is shown only while this stays the same."""
    return digest_of("sweep", rows, labels, tuple(poolings), int(k), int(folds))


class NothingToScoreError(LayerExplorerError):
    """No configuration of a sweep could be extracted; ``reasons`` says why, one line each."""

    def __init__(self, reasons: Sequence[str]):
        self.reasons = list(reasons)
        super().__init__("No configuration could be extracted: " + "; ".join(self.reasons))


def run_sweep(
    table: Sequence[LayerInfo],
    blocks: Sequence[str],
    poolings: Sequence[str],
    *,
    k: int,
    folds: int,
    images: ImageSet,
    config: BackboneConfig,
    backbone,
    step: Callable[[str], None] = lambda text: None,
    progress: Callable[[int, int, str], None] | None = None,
) -> SweepResult:
    """Score every layer of ``blocks`` × ``poolings`` on ``images`` and keep the result in the session.

    ``step(text)`` hears each stage ("Extracting features…"), ``progress(done, total, key)``
    each scored configuration: the page draws them. Raises :class:`NothingToScoreError` when no
    configuration could be extracted (every one over the memory limit).
    """
    started = time.perf_counter()
    step(f"Extracting features: one pass per batch for all {len(blocks) * len(poolings)} configurations…")
    fetch = fetch_features(table, blocks, blocks, poolings, images=images, config=config)
    feats = fetch.features
    if not fetch.keys:
        raise NothingToScoreError(sorted(set(fetch.skipped.values())))
    step("Timing each layer on a small probe batch…")
    costs = layer_costs_cached(config, tuple(blocks), backbone)
    step("Scoring every configuration (cross-validated)…")
    depths = {info.name: info.depth for info in table}
    scores = score_sweep({key: feats.features[key] for key in fetch.keys}, feats.labels, depths=depths,
                         costs_ms=costs, k=k, folds=folds, progress=progress)
    rows = rows_id(config, images.digests)
    result = SweepResult(
        signature=sweep_signature(rows, labels_id(images.labels), poolings, k, folds), table=scores,
        recommendation=recommend(scores), label_problem=scores.attrs.get("label_problem"),
        n_images=len(feats.names), seconds=time.perf_counter() - started, layers=list(blocks),
        poolings=list(poolings), skipped=dict(fetch.skipped), failures=list(feats.failures), rows=rows,
        config=config, images_text=images.summary(), images_id=digest_of("images", tuple(images.digests)),
        health=feature_health({key: feats.features[key] for key in fetch.keys}, config, backbone))
    st.session_state[SWEEP_RESULT_KEY] = result
    return result


def scores_view(view: pd.DataFrame) -> pd.DataFrame:
    """The sweep table as shown: an empty Problem cell where there is none (never the word "None")."""
    if "problem" in view:
        view = view.assign(problem=view["problem"].where(view["problem"].notna(), "").astype(str))
    return view


def stored_result() -> SweepResult | None:
    """This session's last sweep (whatever it was run on: compare its ``signature``)."""
    return st.session_state.get(SWEEP_RESULT_KEY)


def use_in_export(layer: str, pooling: str) -> None:
    """Hand a (layer, pooling) choice to the Export page (an ``on_click`` callback), with the sweep it came from."""
    result = stored_result()
    st.session_state[EXPORT_CHOICE_KEY] = {"layers": [layer], "poolings": [pooling],
                                           "sweep": result.signature if result is not None else None}


def export_choice() -> dict | None:
    """The choice handed over by :func:`use_in_export`, if any."""
    return st.session_state.get(EXPORT_CHOICE_KEY)
