"""The Embeddings page's slow maps and its captions (no layout decisions; the page calls these).

* :func:`compute_slow_maps` — t-SNE / UMAP of every panel behind the page's button, as **one**
  batch job through the work lanes (:func:`ui.inference_slot.batch_job`): one place in line for
  the whole set of maps, one chunk per map (clicks of other sessions go first between maps), and
  it stops when the session goes away or the user moves on.
* :func:`page_caption` — the line under the controls, with :func:`ui.config.weights_caveat`
  when the weights are random (issue 10: captions of a result say so).
"""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from extractor.reduce import EmbeddingError

from . import features, inference_slot, state
from .config import BackboneConfig, weights_caveat

__all__ = ["compute_slow_maps", "page_caption"]


def compute_slow_maps(keys: Sequence[str], fetch, rid: str, method: str, params: tuple) -> None:
    """Every panel's ``method`` map (cached by ``features.embedding``), in one batch job, with a progress bar.

    Marks each key as computed for these settings in ``st.session_state[features.COMPUTED_MAPS_KEY]``
    (the panels show a map only once it was asked for). A map that cannot be made counts as
    failed; its panel says why.
    """
    computed = st.session_state.setdefault(features.COMPUTED_MAPS_KEY, set())
    todo = [k for k in keys if k not in fetch.skipped]
    name = features.METHOD_NAMES[method]
    failed = 0
    with st.status(f"Computing {state.plural(len(todo), name + ' map')}…", expanded=True) as status:
        line = st.empty()
        bar = st.progress(0.0)

        def on_status(job: inference_slot.JobStatus) -> None:
            if job.state == "queued":
                line.caption(job.message())
            elif job.state == "running":
                line.empty()

        try:
            with inference_slot.batch_job(chunks=len(todo), on_status=on_status):
                for done, key in enumerate(todo, start=1):
                    bar.progress((done - 1) / len(todo),
                                 text=f"{name} of {state.escape_markdown(key)} ({done} of {len(todo)})")
                    try:
                        # Inside this job, the map's batch slot is the job's next chunk.
                        features.embedding(rid, key, method, params, fetch.features.features[key])
                    except EmbeddingError:
                        failed += 1  # the panel shows why
                    computed.add((rid, key, method, params))
        except inference_slot.JobCancelled:
            status.update(label=f"{name} maps stopped before they were all computed.", state="error", expanded=False)
            return
        bar.progress(1.0, text="Done")
        label = features.computed_label(len(todo) - failed, failed, name)
        status.update(label=label, state="complete" if not failed else "error", expanded=False)


def page_caption(n_images: int, backbone_name: str, method: str, config: BackboneConfig) -> str:
    """What the maps are made of, and the weights caveat when the network is untrained.

    Example:
        >>> page_caption(3, "vgg16", "pca", BackboneConfig("vgg16", "none", (32, 32))).split(". ")[0]
        '3 images through vgg16; PCA of each layer × pooling'
    """
    text = (f"{state.plural(n_images, 'image')} through {state.escape_markdown(backbone_name)}; "
            f"{features.METHOD_NAMES[method]} of each layer × pooling. Hover a point for its image.")
    caveat = weights_caveat(config)
    return f"{text} {caveat}" if caveat else text
