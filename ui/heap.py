"""Keeping the garbage collections Streamlit runs after every script run cheap on a TensorFlow heap.

After *every* run Streamlit calls ``keras.backend.clear_session()`` (script_runner.py,
``_clean_problem_modules``), which ends in a full ``gc.collect()``; ``runner.postScriptGC`` would
add a second one (it is off in .streamlit/config.toml for that reason). With TensorFlow, Keras and
a loaded network the collector walks about half a million objects each time: 1–1.6 s on a shared
core, after the browser has been told the run ended, so the user's next click waits for it.

Nearly all of those objects live as long as the process: TensorFlow's modules, the cached
networks and extractors (``st.cache_resource``). :func:`keep_long_lived` moves everything alive at
that moment into the collector's permanent generation (``gc.freeze()``), once per newly loaded
model, so later full collections only walk what was made since: milliseconds.

The trade-off: a frozen object that later becomes cyclic garbage — a network evicted from
``st.cache_resource``; Keras models are full of reference cycles — is not reclaimed by the cycle
collector while it stays frozen (reference counting still frees everything acyclic). So the frozen
heap is bounded: when it has doubled since the last full reclaim, the next freeze first unfreezes
and runs one full collection (about a second, paid when a new model is loaded anyway), which frees
the evicted models, then freezes what is left. The sessions open at a freeze are frozen too; when
sessions end, the session watcher runs the same full collection (:mod:`ui.reclaim`, at most once a
minute), so a closed session's state does not stay behind in the frozen heap.

``LAYER_EXPLORER_GC_FREEZE=0`` turns this off (benchmarks/bench_analysis.py --browser-baseline
compares both).

Example (in a page, right after the network ran)::

    raw = cache.raw_maps(config, needed, digest, item)
    heap.keep_network(config, *needed)
"""

from __future__ import annotations

import gc
import os

import streamlit as st

from . import custom_model, reclaim
from .config import BackboneConfig

__all__ = ["FREEZE_ENV", "freeze_enabled", "keep_long_lived", "keep_network"]

#: Set to "0" to leave the collector alone (Streamlit's default behaviour).
FREEZE_ENV = "LAYER_EXPLORER_GC_FREEZE"

# Below this many frozen objects a full reclaim is not worth a second (TensorFlow alone is ~400k).
_MIN_RECLAIM = 200_000


def freeze_enabled() -> bool:
    """Whether :func:`keep_long_lived` freezes (``LAYER_EXPLORER_GC_FREEZE`` is not ``"0"``)."""
    return os.environ.get(FREEZE_ENV, "1").strip() != "0"


@st.cache_resource(max_entries=256, show_spinner=False)
def _freeze_once(what: tuple[str, ...]) -> int:
    if gc.get_freeze_count() > 2 * max(reclaim.reclaimed_at(), _MIN_RECLAIM):
        return reclaim.full_collection(freeze=True)  # frees networks evicted from the caches since the last one
    gc.collect(1)  # this run's young cyclic garbage is not worth keeping forever
    gc.freeze()
    reclaim.note_first_freeze(gc.get_freeze_count())
    return gc.get_freeze_count()


def keep_long_lived(*what: str) -> bool:
    """Freeze the heap once per ``what`` (plain strings naming the model just loaded); True if enabled.

    Call it right after a page has fetched its network or extractor (a cache hit costs nothing
    new: the key was seen). Cheap when the key was seen before.
    """
    if not freeze_enabled():
        return False
    _freeze_once(tuple(str(w) for w in what))
    return True


def keep_network(config: BackboneConfig, *what: str) -> bool:
    """:func:`keep_long_lived` for the network of ``config`` — except a user's uploaded model.

    An uploaded model lives in one session and must go when the session replaces or forgets it
    (tests/test_app_hardening.py holds weak references to check that). Frozen, its reference cycles
    would outlive the session until the next full reclaim, so a heap holding one is not frozen.
    """
    if custom_model.is_custom(config.name) or custom_model.current() is not None:
        return False
    return keep_long_lived(repr(config), *what)
