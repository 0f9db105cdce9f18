"""The Layer-selection sweep: run it, keep its result in the session, hand a choice to Export.

:func:`run_sweep` fetches every block layer × pooling in one pass (:func:`ui.features.fetch_features`),
times each layer (:func:`layer_costs_cached`, keyed by the configuration, inside an inference
slot), scores them (:func:`extractor.scoring.score_sweep`) and stores the core's
:class:`extractor.sweep.SweepReport` under :data:`SWEEP_RESULT_KEY`. A stored result is shown only
while its :func:`sweep_signature` holds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import pandas as pd
import streamlit as st

from extractor import LayerInfo
from extractor.errors import LayerExplorerError
from extractor.scoring import score_sweep
from extractor.sweep import SweepReport, layer_costs

from .config import BackboneConfig
from .features import digest_of, fetch_features, labels_id, rows_id
from .health import feature_health
from .image_set import ImageSet
from .inference_slot import JobCancelled, JobStatus, batch_job, chunk_slot

__all__ = [
    "NothingToScoreError",
    "SweepCancelled",
    "run_sweep",
    "cancel_sweep",
    "was_cancelled",
    "stored_result",
    "matching_result",
    "flatten_sizes",
    "scores_view",
    "use_in_export",
    "export_choice",
    "EXPORT_CHOICE_KEY",
    "SWEEP_RESULT_KEY",
    "layer_costs_cached",
    "sweep_signature",
]


#: Session keys shared between pages.
EXPORT_CHOICE_KEY = "export_choice"  # {"layers": [...], "poolings": [...]} set by Layer selection


SWEEP_RESULT_KEY = "ls_result"  # the last SweepReport of this session
SWEEP_JOB_KEY = "_ls_job"  # the running sweep's BatchJob (for Cancel)
SWEEP_CANCELLED_KEY = "_ls_cancelled"  # set by cancel_sweep, read once by was_cancelled


@st.cache_data(max_entries=16, show_spinner=False)
def layer_costs_cached(config: BackboneConfig, layers: tuple[str, ...], _backbone) -> dict[str, float]:
    """Milliseconds per image to extract each layer alone (``extractor.sweep.layer_costs``).

    Keyed by the configuration; measured on an 8-image random probe batch, one layer per slot
    (a chunk of the sweep's batch job, so clicks go in between and a cancelled sweep stops here).
    """
    # Each probe is a one-layer extractor of its own: under "auto" it is timed on TensorFlow, because
    # converting every layer cut to OpenVINO first would make the user wait seconds per layer for a
    # timing (nothing the user sees waits on a conversion). An explicit runtime is timed on itself.
    runtime = "tensorflow" if config.runtime == "auto" else config.runtime
    costs: dict[str, float] = {}
    for layer in layers:
        with chunk_slot():
            costs.update(layer_costs(_backbone, [layer], runtime=runtime))
    return costs


def sweep_signature(rows: str, labels: str, poolings: Sequence[str], k: int, folds: int) -> str:
    """What a sweep result depends on; a stored result is shown only while this stays the same."""
    return digest_of("sweep", rows, labels, tuple(poolings), int(k), int(folds))


class NothingToScoreError(LayerExplorerError):
    """No configuration of a sweep could be extracted; ``reasons`` says why, one line each."""

    def __init__(self, reasons: Sequence[str]):
        self.reasons = list(reasons)
        super().__init__("No configuration could be extracted: " + "; ".join(self.reasons))


class SweepCancelled(LayerExplorerError):
    """The sweep stopped before it finished: the user pressed Cancel, or the session went away."""


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
) -> SweepReport:
    """Score every layer of ``blocks`` × ``poolings`` on ``images`` and keep the result in the session.

    ``step(text)`` hears each stage ("Extracting features…"), ``progress(done, total, key)``
    each scored configuration: the page draws them. The extraction draws its own progress bar
    (images done of total, per layer set). The whole sweep is one batch job of the session
    (:func:`ui.inference_slot.batch_job`): it waits in line past the server's limit (saying so in
    a status line), lets clicks go between chunks, and stops at the next chunk when
    :func:`cancel_sweep` is called or the session goes away, raising :class:`SweepCancelled`.
    Raises :class:`NothingToScoreError` when no configuration could be extracted (every one over
    the memory limit).
    """
    started = time.perf_counter()
    queue_box, shown = st.empty(), [False]

    def on_status(status: JobStatus) -> None:
        if status.state == "queued":
            queue_box.info(f"{status.message()} The sweep starts as soon as one of them is done; the other "
                           "pages stay responsive meanwhile.", icon=":material/hourglass_top:")
            shown[0] = True
        elif shown[0]:  # admitted: the line goes (one delta, not one per chunk)
            queue_box.empty()
            shown[0] = False

    job = None
    try:
        with batch_job(on_status=on_status) as job:
            st.session_state[SWEEP_JOB_KEY] = job
            step(f"Extracting features: one pass per batch for all {len(blocks) * len(poolings)} configurations…")
            fetch = fetch_features(table, blocks, blocks, poolings, images=images, config=config)
            feats = fetch.features
            if not fetch.keys:
                raise NothingToScoreError(sorted(set(fetch.skipped.values())))
            step("Timing each layer on a small probe batch…")
            costs = layer_costs_cached(config, tuple(blocks), backbone)
            step("Scoring every configuration (cross-validated)…")
            depths = {info.name: info.depth for info in table}

            def scored(done: int, total: int, key: str) -> None:
                job.checkpoint()  # between two configurations: waiting clicks go first; a cancel stops here
                if progress is not None:
                    progress(done, total, key)

            with job.chunk():
                scores = score_sweep({key: feats.features[key] for key in fetch.keys}, feats.labels, depths=depths,
                                     costs_ms=costs, k=k, folds=folds, progress=scored)
    except JobCancelled as exc:
        raise SweepCancelled(f"The sweep was stopped before it finished ({exc})") from None
    finally:
        queue_box.empty()
        if job is not None and st.session_state.get(SWEEP_JOB_KEY) is job:
            st.session_state.pop(SWEEP_JOB_KEY, None)
    rows = rows_id(config, images.digests)
    result = SweepReport.from_table(
        scores, failures=list(feats.failures), n_images=len(feats.names), seconds=time.perf_counter() - started,
        layers=list(blocks), poolings=list(poolings), skipped=dict(fetch.skipped),
        health=feature_health({key: feats.features[key] for key in fetch.keys}, config, backbone),
        signature=sweep_signature(rows, labels_id(images.labels), poolings, k, folds), rows=rows,
        images_text=images.summary(), images_id=digest_of("images", tuple(images.digests)), config=config,
        runtime=feats.runtime)
    st.session_state[SWEEP_RESULT_KEY] = result
    return result


def cancel_sweep() -> None:
    """Stop this session's running sweep at its next chunk (the Cancel button's ``on_click``).

    Streamlit also stops the running script at its next progress update when the button is
    pressed; the job is cancelled here as well so nothing of it runs on, and the page says
    "Sweep cancelled" on the run that follows (:func:`was_cancelled`).
    """
    job = st.session_state.pop(SWEEP_JOB_KEY, None)
    if job is not None:
        job.cancel()
    st.session_state[SWEEP_CANCELLED_KEY] = True


def was_cancelled() -> bool:
    """Whether the Cancel button stopped a sweep since the last call (then forgets it)."""
    return bool(st.session_state.pop(SWEEP_CANCELLED_KEY, False))


def scores_view(view: pd.DataFrame) -> pd.DataFrame:
    """The sweep table as shown: an empty Problem cell where there is none (never the word "None")."""
    if "problem" in view:
        view = view.assign(problem=view["problem"].where(view["problem"].notna(), "").astype(str))
    return view


def stored_result() -> SweepReport | None:
    """This session's last sweep (whatever it was run on: compare its ``signature``)."""
    return st.session_state.get(SWEEP_RESULT_KEY)


def matching_result(images: ImageSet, config: BackboneConfig, poolings: Sequence[str], k: int,
                    folds: int) -> SweepReport | None:
    """This session's last sweep if it was run on these images, labels, network and settings, else None."""
    result = stored_result()
    rows = rows_id(config, images.digests)
    if result is None or result.signature != sweep_signature(rows, labels_id(images.labels), poolings, k, folds):
        return None
    return result


def flatten_sizes(table: Sequence[LayerInfo], layers: Sequence[str]) -> list[tuple[str, int]]:
    """(layer, H×W×C) of each of ``layers`` whose map size is known: how long its flatten vector is."""
    by_name = {info.name: info for info in table}
    return [(name, int(by_name[name].shape[0] * by_name[name].shape[1] * by_name[name].shape[2]))
            for name in layers if by_name[name].shape[0]]


def use_in_export(layer: str, pooling: str) -> None:
    """Hand a (layer, pooling) choice to the Export page (an ``on_click`` callback), with the sweep it came from."""
    result = stored_result()
    st.session_state[EXPORT_CHOICE_KEY] = {"layers": [layer], "poolings": [pooling],
                                           "sweep": result.signature if result is not None else None}


def export_choice() -> dict | None:
    """The choice handed over by :func:`use_in_export`, if any."""
    return st.session_state.get(EXPORT_CHOICE_KEY)
