"""ui.heap: the heap is frozen once per loaded model, not at all when turned off; and the server
config leaves out Streamlit's second full collection after each run. No timings here: the speed
itself is measured by benchmarks/bench_analysis.py in the browser."""

from __future__ import annotations

import gc
import tomllib
from pathlib import Path

import pytest

from ui import heap, reclaim

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _thawed():
    heap._freeze_once.clear()
    reclaim.forget()
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_a_new_model_freezes_the_heap_and_a_seen_one_does_not(monkeypatch):
    monkeypatch.delenv(heap.FREEZE_ENV, raising=False)
    assert gc.get_freeze_count() == 0
    assert heap.keep_long_lived("demo-shapes", "block1_pool") is True
    frozen = gc.get_freeze_count()
    assert frozen > 1000  # pytest, NumPy, Streamlit: all long-lived now
    junk = [[i] for i in range(5000)]
    heap.keep_long_lived("demo-shapes", "block1_pool")  # seen: nothing new is frozen
    # At most as many: a frozen object whose last reference goes is still freed (and leaves the count).
    assert gc.get_freeze_count() <= frozen
    heap.keep_long_lived("demo-shapes", "block2_pool")  # another extractor: what lives now is frozen
    assert gc.get_freeze_count() >= frozen + 5000
    del junk


def test_frozen_garbage_is_reclaimed_once_the_frozen_heap_doubled(monkeypatch):
    monkeypatch.delenv(heap.FREEZE_ENV, raising=False)
    monkeypatch.setattr(heap, "_MIN_RECLAIM", 1)
    heap.keep_long_lived("first")
    base = gc.get_freeze_count()

    class Model:  # a cycle, like a Keras model and its layers
        def __init__(self):
            self.me = self
            self.payload = [[i] for i in range(base * 2)]

    evicted = Model()
    heap.keep_long_lived("second")  # frozen with the model still alive
    assert gc.get_freeze_count() > 2 * base
    del evicted  # now cyclic garbage, invisible to the collector while frozen
    gc.collect()
    assert gc.get_freeze_count() > 2 * base
    heap.keep_long_lived("third")  # doubled: unfreeze, full collection, freeze again
    assert gc.get_freeze_count() < 2 * base


def test_turned_off_it_leaves_the_collector_alone(monkeypatch):
    monkeypatch.setenv(heap.FREEZE_ENV, "0")
    assert heap.keep_long_lived("demo-shapes", "block1_pool") is False
    assert gc.get_freeze_count() == 0


def test_the_server_skips_streamlits_second_full_collection():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["runner"]["postScriptGC"] is False


def test_a_session_that_ends_after_a_freeze_is_freed_by_the_reclaim_after_sessions_end(monkeypatch):
    import weakref

    monkeypatch.delenv(heap.FREEZE_ENV, raising=False)

    class Session:  # Streamlit's sessions are cycles (session <-> script runner <-> callbacks)
        def __init__(self):
            self.me = self
            self.state = {"features": [[i] for i in range(1000)]}

    session = Session()
    gone = weakref.ref(session)
    heap.keep_long_lived("a model loaded while the session is open")  # the session is frozen with it
    del session
    gc.collect()
    assert gone() is not None, "frozen cyclic garbage is invisible to the collector"
    clock = [1000.0]
    assert reclaim.after_sessions_ended(min_interval_s=60, clock=lambda: clock[0]) is True
    assert gone() is None, "the reclaim after sessions end frees it"
    assert gc.get_freeze_count() > 0, "what lives on is frozen again"
    clock[0] += 30
    assert reclaim.after_sessions_ended(min_interval_s=60, clock=lambda: clock[0]) is False  # at most once a minute
    clock[0] += 31
    assert reclaim.after_sessions_ended(min_interval_s=60, clock=lambda: clock[0]) is True


def test_reclaim_docstring_examples():
    import doctest

    assert doctest.testmod(reclaim).failed == 0
