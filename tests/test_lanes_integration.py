"""The work lanes as the app uses them: through ui.cache / ui.sweeps, a real demo-shapes extractor, AppTest sessions.

The scheduler itself is tested in test_work_lanes.py; here, several AppTest sessions run at once
(each in its own script thread) against the server-wide objects of ui.inference_slot, replaced by
fresh ones per test. No timing assertions: the first chunk of a batch job is held at a gate
(a wrapper around ``FeatureExtractor.extract``) while the test sets up the situation, and the
tests assert on the order of events and on the numbers.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from app_support import assert_clean, open_app
from streamlit.testing.v1 import AppTest

from extractor import FeatureExtractor, load_backbone, runtime
from extractor.demo import load_demo_set
from ui import cache, inference_slot, session_watch
from ui.config import BackboneConfig
from ui.model_pool import ModelPool
from ui.session_watch import SessionWatcher
from ui.work_lanes import WorkLanes

WAIT_S = 120
TIMEOUT_S = 180


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.01)


class Session(threading.Thread):
    """One AppTest session running ``script`` once, in a thread of its own."""

    def __init__(self, script, log: list, name: str, chunks_started=lambda: None):
        super().__init__(daemon=True)
        self.at = AppTest.from_function(script, default_timeout=TIMEOUT_S)
        self.log, self.name_, self.chunks_started = log, name, chunks_started
        self.chunks_at_end = None

    def run(self):
        self.at.run()
        self.chunks_at_end = self.chunks_started()
        self.log.append(f"{self.name_} done")

    def finish(self) -> AppTest:
        self.join(TIMEOUT_S)
        assert not self.is_alive(), f"{self.name_} did not finish"
        assert not self.at.exception, [e.value for e in self.at.exception]
        return self.at


@pytest.fixture
def lanes(monkeypatch):
    """Fresh server-wide objects: one slot (so every order is forced), a small pool, empty data caches."""
    fresh = WorkLanes(slots=1, max_batch_jobs=1)
    monkeypatch.setattr(inference_slot, "LANES", fresh)
    # Every AppTest session has the same id ("test session id"); a server's sessions each have their own.
    monkeypatch.setattr(session_watch, "current_session_id", lambda: f"session-{threading.get_ident()}")
    monkeypatch.setattr(inference_slot, "MODELS", ModelPool(max_models=2))
    cache._pooled_chunk.clear()
    cache.raw_maps.clear()
    yield fresh
    cache._pooled_chunk.clear()
    cache.raw_maps.clear()


@pytest.fixture
def gate(monkeypatch):
    """``FeatureExtractor.extract`` (one pooled chunk) logs each call; the first waits for ``gate.open``."""

    class Gate:
        open = threading.Event()
        first_started = threading.Event()
        calls: list[int] = []  # images per call, in order
        on_first = None  # called in the chunk's own thread, once

    original = FeatureExtractor.extract

    def gated(self, inputs, *args, **kwargs):
        first = not Gate.calls
        Gate.calls.append(len(inputs))
        if first:
            if Gate.on_first is not None:
                Gate.on_first()
            Gate.first_started.set()
            assert Gate.open.wait(WAIT_S), "the test never opened the gate"
        return original(self, inputs, *args, **kwargs)

    monkeypatch.setattr(FeatureExtractor, "extract", gated)
    yield Gate
    Gate.open.set()


def _batch_script():
    """A whole set (shapes, 20 per class = 140 images = 5 chunks of 32) through ui.cache.pooled_features."""
    import streamlit as st

    from ui import cache
    from ui.image_set import ImageSet
    from ui.inference_slot import JobCancelled
    from ui.state import BackboneConfig

    demo = cache.demo_images("shapes", 20)
    images = ImageSet(demo.images, demo.names, demo.labels, demo.digests, [], "demo")
    config = BackboneConfig("demo-shapes", "pretrained", (64, 64))
    try:
        feats = cache.pooled_features(["block3_pool"], ["max"], images=images, config=config)
        st.session_state["features"] = feats.features["block3_pool/max"]
    except JobCancelled as exc:
        st.session_state["cancelled"] = str(exc)


def _click_script():
    """The raw maps of one image (what a block switch on Feature maps asks for)."""
    import streamlit as st

    from ui import cache
    from ui.state import BackboneConfig

    demo = cache.demo_images("shapes", 20)
    config = BackboneConfig("demo-shapes", "pretrained", (64, 64))
    st.session_state["maps"] = cache.raw_maps(config, ("block2_pool",), demo.digests[5], demo.images[5]).maps


def _warm(lanes):
    """Build both extractors first, so the click below is one forward pass and nothing else."""
    at = AppTest.from_function(_click_script, default_timeout=TIMEOUT_S)
    at.run()
    assert not at.exception
    config = BackboneConfig("demo-shapes", "pretrained", (64, 64))
    cache.get_extractor(config, ("block3_pool",), ("max",))
    cache.raw_maps.clear()
    assert inference_slot.MODELS.stats().entries == 3  # the backbone and its two extractors


def _reference(per_class=20):
    images = load_demo_set("shapes", per_class=per_class, size=64).images
    backbone = load_backbone("demo-shapes")
    pooled = FeatureExtractor(backbone, ["block3_pool"], ["max"], runtime="tensorflow").extract(images)
    pooled = pooled.features["block3_pool/max"]
    maps = FeatureExtractor(backbone, ["block2_pool"], ["none"], runtime="tensorflow").run_batch(np.stack([images[5]]))
    return pooled, np.asarray(maps["block2_pool/none"][0])


def test_a_click_submitted_while_a_batch_job_runs_completes_before_it(lanes, gate):
    _warm(lanes)
    log: list[str] = []
    batch = Session(_batch_script, log, "batch")
    batch.start()
    assert gate.first_started.wait(WAIT_S)  # the batch job holds the only slot, in its first chunk
    click = Session(_click_script, log, "click", chunks_started=lambda: len(gate.calls))
    click.start()
    wait_until(lambda: lanes.snapshot().waiting_interactive == 1, "the click waits for the slot")
    gate.open.set()
    click_at, batch_at = click.finish(), batch.finish()

    assert log == ["click done", "batch done"], log
    assert len(gate.calls) == 5, gate.calls  # 140 images in chunks of 32
    # The click went in right after the first chunk: at most the chunk that asked next had started.
    assert click.chunks_at_end <= 2, (click.chunks_at_end, gate.calls)
    pooled, maps = _reference()
    np.testing.assert_allclose(batch_at.session_state["features"], pooled, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(click_at.session_state["maps"]["block2_pool"], maps, rtol=1e-5, atol=1e-5)
    assert lanes.sessions() == set()


def test_a_closed_sessions_queued_job_never_runs(lanes, gate):
    _warm(lanes)
    log: list[str] = []
    first = Session(_batch_script, log, "first")
    first.start()
    assert gate.first_started.wait(WAIT_S)
    # A second session's batch job waits in line (one batch job at a time on this server).
    cache._pooled_chunk.clear()  # so it would have to compute, not reuse the first session's chunks
    second = Session(_batch_script, log, "second")
    second.start()
    wait_until(lambda: len(lanes.snapshot().queued_jobs) == 1, "the second job waits in line")
    queued = lanes.snapshot().queued_jobs[0]
    assert queued.ahead == 1 and queued.message() == "Queued behind 1 other run."
    running_sid = lanes.snapshot().running_jobs[0].session_id
    # Its tab closes: the watcher (grace period 0 here) drops the gone session's work.
    watcher = SessionWatcher(lanes, grace_s=0.0, is_active=lambda sid: sid == running_sid)
    assert watcher.check_once() == [queued.session_id]
    second_at = second.finish()
    assert "cancelled" in second_at.session_state and "features" not in second_at.session_state
    calls_when_dropped = len(gate.calls)
    gate.open.set()
    first_at = first.finish()
    assert calls_when_dropped == 1 and len(gate.calls) == 5, "only the first session's 5 chunks ever ran"
    np.testing.assert_allclose(first_at.session_state["features"], _reference()[0], rtol=1e-5, atol=1e-5)
    assert lanes.sessions() == set()


def _sweep_script():
    """A Layer-selection sweep on shapes (5 per class, demo-shapes), Cancel pressed during its first chunk."""
    import streamlit as st

    from extractor import representative_layers
    from ui import cache, sweeps
    from ui.image_set import ImageSet
    from ui.state import BackboneConfig

    demo = cache.demo_images("shapes", 10)  # 70 images: 3 chunks per layer set
    images = ImageSet(demo.images, demo.names, demo.labels, demo.digests, [], "demo")
    config = BackboneConfig("demo-shapes", "pretrained", (64, 64))
    backbone, table = cache.load_backbone_cached(config)
    blocks = [info.name for info in representative_layers(table, "block")]
    try:
        sweeps.run_sweep(table, blocks, ["avg", "max"], k=3, folds=2, images=images, config=config, backbone=backbone)
    except sweeps.SweepCancelled as exc:
        st.session_state["stopped"] = str(exc)
    st.session_state["shown_cancelled"] = sweeps.was_cancelled()


def test_a_cancelled_sweep_stops_at_the_next_chunk(lanes, gate):
    from ui import sweeps

    gate.on_first = sweeps.cancel_sweep  # what the Cancel button's on_click does, while the first chunk runs
    gate.open.set()
    at = AppTest.from_function(_sweep_script, default_timeout=TIMEOUT_S)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert "stopped" in at.session_state, "the sweep ran to the end"
    assert gate.calls == [32], f"chunks after the Cancel ran: {gate.calls}"
    assert sweeps.SWEEP_RESULT_KEY not in at.session_state
    assert at.session_state["shown_cancelled"] is True
    assert sweeps.SWEEP_JOB_KEY not in at.session_state
    assert lanes.sessions() == set(), "the cancelled job still holds the lanes"


def test_the_model_pool_evicts_beyond_its_bound_and_rebuilds_with_the_same_numbers(monkeypatch):
    monkeypatch.setattr(inference_slot, "MODELS", ModelPool(max_models=1))
    images = np.stack(load_demo_set("shapes", per_class=1, size=64).images)
    trained = BackboneConfig("demo-shapes", "pretrained", (64, 64))
    first = cache.get_extractor(trained, ("block4_pool",), ("avg",))
    before = first.run_batch(images)["block4_pool/avg"]
    random_weights = trained.replace(weights="none")
    cache.get_extractor(random_weights, ("block4_pool",), ("avg",))  # a second configuration: the first goes
    stats = inference_slot.MODELS.stats()
    assert stats.evictions == 1 and stats.groups == 1
    assert inference_slot.MODELS.groups() == [("backbone", "demo-shapes", "none", (64, 64))]
    again = cache.get_extractor(trained, ("block4_pool",), ("avg",))
    assert again is not first, "rebuilt on demand"
    np.testing.assert_allclose(again.run_batch(images)["block4_pool/avg"], before, rtol=1e-6, atol=1e-6)
    # Correct, not only unchanged: the numbers of a network built outside the pool.
    independent = FeatureExtractor(load_backbone("demo-shapes"), ["block4_pool"], ["avg"], runtime="tensorflow")
    np.testing.assert_allclose(independent.run_batch(images)["block4_pool/avg"], before, rtol=1e-5, atol=1e-5)


def test_the_first_render_under_auto_never_waits_for_an_openvino_conversion(monkeypatch, tmp_path):
    """A conversion held at a gate: the page still renders (TensorFlow), and the sidebar says what ran."""
    pytest.importorskip("openvino")
    # Nothing from earlier tests in this process: no extractor in the pool, no converted graph on disk.
    monkeypatch.setattr(inference_slot, "MODELS", ModelPool(max_models=2))
    monkeypatch.setenv(runtime.CACHE_ENV, str(tmp_path / "openvino"))
    cache._pooled_chunk.clear()
    cache.raw_maps.clear()
    gate, started = threading.Event(), threading.Event()
    original = runtime._convert_now

    def held(*args, **kwargs):
        started.set()
        assert gate.wait(WAIT_S)
        return original(*args, **kwargs)

    monkeypatch.setattr(runtime, "_convert_now", held)
    try:
        at = open_app()
        assert at.radio(key="sb_runtime").value == "auto"
        at.radio(key="sb_weights").set_value("random")  # fresh random weights: a graph never converted before
        at.run()
        assert_clean(at)
        assert started.is_set(), "no background conversion was started"
        at.run()  # the sidebar is drawn before the page: it reports the engine of the previous run
        captions = [c.value for c in at.sidebar.caption]
        assert any(c.startswith("Runs on TensorFlow, float32 (converting for OpenVINO") for c in captions), captions
    finally:
        gate.set()
    at.radio(key="sb_runtime").set_value("tensorflow")
    at.run()
    at.run()
    assert_clean(at)
    captions = [c.value for c in at.sidebar.caption]
    assert "Runs on TensorFlow, float32." in captions, captions


def test_a_batch_job_waiting_in_line_stops_when_the_user_presses_a_button(monkeypatch):
    """Streamlit interrupts a run at its next element call; a job waiting in line makes none, so it asks."""
    from types import SimpleNamespace

    from streamlit.runtime.scriptrunner_utils.script_requests import RerunData, ScriptRequests

    from ui.work_lanes import JobCancelled

    lanes = WorkLanes(slots=1, max_batch_jobs=1)
    monkeypatch.setattr(inference_slot, "LANES", lanes)
    requests = ScriptRequests()
    monkeypatch.setattr(session_watch, "get_script_run_ctx", lambda **kw: SimpleNamespace(script_requests=requests))
    assert session_watch.rerun_requested()() is False
    hold, errors = threading.Event(), []

    def first():
        with inference_slot.batch_job("other") as job, job.chunk():
            hold.wait(WAIT_S)

    def second():
        try:
            with inference_slot.batch_job("me") as job, job.chunk():
                errors.append("ran")
        except JobCancelled:
            errors.append("stopped")

    a = threading.Thread(target=first, daemon=True)
    a.start()
    wait_until(lambda: len(lanes.snapshot().running_jobs) == 1, "the first job runs")
    b = threading.Thread(target=second, daemon=True)
    b.start()
    wait_until(lambda: len(lanes.snapshot().queued_jobs) == 1, "the second job waits in line")
    requests.request_rerun(RerunData())  # the user pressed Cancel (or any widget) in that session
    b.join(WAIT_S)
    assert errors == ["stopped"]
    hold.set()
    a.join(WAIT_S)
    assert lanes.sessions() == set()


def test_layer_selection_says_sweep_cancelled_after_cancel_and_shows_the_about_expander():
    """The page's side of Cancel (the button's callback marks it; the next run says so), and the sidebar's limits."""
    from ui import sweeps

    at = open_app("pages/layer_selection.py")
    at.session_state[sweeps.SWEEP_CANCELLED_KEY] = True  # what cancel_sweep leaves for the run that follows
    at.run()
    assert_clean(at)
    assert any(w.value.startswith("Sweep cancelled") for w in at.warning), [w.value for w in at.warning]
    at.run()
    assert not any(w.value.startswith("Sweep cancelled") for w in at.warning), "said once, not on every run"
    assert "About this server" in [e.label for e in at.sidebar.expander]
    limits = at.sidebar.expander[-1].table[0].value
    assert list(limits["value"]) == [inference_slot.LIMITS.max_batch_jobs, inference_slot.LIMITS.max_models,
                                     inference_slot.LIMITS.max_images_per_session]


def _auto_batch_script():
    """The whole set of _batch_script under runtime "auto" (OpenVINO once its conversion lands)."""
    import streamlit as st

    from ui import cache
    from ui.image_set import ImageSet
    from ui.state import BackboneConfig

    demo = cache.demo_images("shapes", 20)
    images = ImageSet(demo.images, demo.names, demo.labels, demo.digests, [], "demo")
    config = BackboneConfig("demo-shapes", "pretrained", (64, 64), runtime="auto")
    feats = cache.pooled_features(["block3_pool"], ["max"], images=images, config=config)
    st.session_state["features"] = feats.features["block3_pool/max"]
    st.session_state["runtime"] = feats.runtime


def test_a_set_is_computed_by_one_engine_when_openvino_takes_over_halfway(lanes, monkeypatch, tmp_path):
    """The load test's first sweep on a fresh server scored a mix: chunks from TensorFlow until the
    background conversion landed, then OpenVINO's (the two differ by ~1e-4, enough to reorder an
    untrained network's scores). Now the set starts over on OpenVINO, and says which engine ran."""
    pytest.importorskip("openvino")
    monkeypatch.setenv(runtime.CACHE_ENV, str(tmp_path / "openvino"))  # nothing converted yet
    landed = threading.Event()
    convert = runtime._convert_now

    def held(*args, **kwargs):
        assert landed.wait(WAIT_S), "the test never let the conversion land"
        return convert(*args, **kwargs)

    monkeypatch.setattr(runtime, "_convert_now", held)
    engines: list[str] = []
    extract = FeatureExtractor.extract

    def logged(self, inputs, *args, **kwargs):
        result = extract(self, inputs, *args, **kwargs)
        engines.append(result.runtime)
        if len(engines) == 1:  # the first chunk ran on TensorFlow; now the conversion lands
            landed.set()
            wait_until(lambda: self.runtime == "openvino", "OpenVINO took over")
        return result

    monkeypatch.setattr(FeatureExtractor, "extract", logged)
    at = AppTest.from_function(_auto_batch_script, default_timeout=TIMEOUT_S)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert engines == ["tensorflow"] + ["openvino"] * 5, engines  # the TensorFlow chunk computed again
    assert at.session_state["runtime"] == "openvino"
    images = load_demo_set("shapes", per_class=20, size=64).images
    ov = FeatureExtractor(load_backbone("demo-shapes"), ["block3_pool"], ["max"], runtime="openvino").extract(images)
    np.testing.assert_allclose(at.session_state["features"], ov.features["block3_pool/max"], rtol=1e-6, atol=1e-6)
