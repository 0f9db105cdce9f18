"""The shared model pool (ui.model_pool): bounded, least recently used evicted, rebuilt on demand."""

from __future__ import annotations

import doctest
import threading

import numpy as np
import pytest

from extractor import FeatureExtractor, load_backbone
from extractor.demo import load_demo_set
from ui import model_pool
from ui.model_pool import ModelPool

WAIT_S = 20


class Counter:
    """A builder that counts its calls and returns a fresh object each time."""

    def __init__(self, name):
        self.name, self.calls = name, 0

    def __call__(self):
        self.calls += 1
        return f"{self.name}#{self.calls}"


def test_evicts_the_least_recently_used_configuration_beyond_its_bound():
    pool = ModelPool(max_models=2)
    a, b, c = Counter("a"), Counter("b"), Counter("c")
    assert pool.get("a", a) == "a#1"
    assert pool.get("b", b) == "b#1"
    assert pool.get("a", a) == "a#1"  # a hit; a is now the most recent
    assert pool.get("c", c) == "c#1"  # third configuration: b (least recent) goes
    assert pool.groups() == ["a", "c"]
    assert pool.get("b", b) == "b#2"  # rebuilt on demand ...
    assert pool.groups() == ["c", "b"]  # ... and a went this time
    stats = pool.stats()
    assert (stats.hits, stats.builds, stats.evictions, stats.groups) == (1, 4, 2, 2)
    assert (a.calls, b.calls, c.calls) == (1, 2, 1)


def test_a_configuration_goes_with_all_its_extractors():
    dropped = []
    pool = ModelPool(max_models=1, on_evict=lambda group, objects: dropped.append((group, sorted(objects))))
    pool.get(("net", "A"), lambda: "A")
    pool.get(("fx", "A", "l1"), lambda: "A/l1", group=("net", "A"))
    pool.get(("fx", "A", "l2"), lambda: "A/l2", group=("net", "A"))
    assert pool.stats().entries == 3 and pool.stats().groups == 1
    pool.get(("net", "B"), lambda: "B")
    assert dropped == [(("net", "A"), ["A", "A/l1", "A/l2"])]
    assert pool.keys() == [("net", "B")]


def test_one_build_per_key_when_sessions_ask_at_once_and_a_builder_may_use_the_pool():
    pool = ModelPool(max_models=4)
    release = threading.Event()
    calls = []

    def slow_net():
        calls.append("net")
        assert release.wait(WAIT_S)
        return "net"

    def extractor():  # the builder itself asks the pool for its backbone: no deadlock
        return pool.get("net", slow_net) + "/fx"

    results = []
    threads = [threading.Thread(target=lambda: results.append(pool.get("fx", extractor, group="net")))
               for _ in range(4)]
    for t in threads:
        t.start()
    release.set()
    for t in threads:
        t.join(WAIT_S)
    assert results == ["net/fx"] * 4
    assert calls == ["net"]


def test_a_failed_build_is_not_kept_and_the_next_call_tries_again():
    pool = ModelPool(max_models=2)

    def broken():
        raise OSError("weights file is damaged")

    with pytest.raises(OSError, match="damaged"):
        pool.get("x", broken)
    assert pool.keys() == []
    assert pool.get("x", lambda: "fixed") == "fixed"


def test_a_build_stopped_by_its_own_run_is_rebuilt_by_a_waiter_not_re_raised_there():
    """A rerun of the session that was building (Streamlit's control flow, a BaseException) must not
    stop another run that was waiting for the same model: that run builds it itself."""

    class RunStopped(BaseException):  # like streamlit's RerunException / StopException
        pass

    pool = ModelPool(max_models=2)
    started, release = threading.Event(), threading.Event()
    outcome = {}

    def stopped_build():
        started.set()
        release.wait(WAIT_S)
        raise RunStopped

    def first():
        try:
            pool.get("vgg16", stopped_build)
        except RunStopped:
            outcome["first"] = "stopped"

    def second():
        outcome["second"] = pool.get("vgg16", lambda: "vgg16#2")

    a = threading.Thread(target=first)
    a.start()
    assert started.wait(WAIT_S)
    b = threading.Thread(target=second)
    b.start()
    release.set()
    a.join(WAIT_S)
    b.join(WAIT_S)
    assert not a.is_alive() and not b.is_alive()
    assert outcome == {"first": "stopped", "second": "vgg16#2"}
    assert pool.get("vgg16", lambda: "never") == "vgg16#2"  # kept for everyone after


def test_rebuilt_extractor_gives_the_same_numbers():
    """A real small network (demo-shapes, shipped weights): evicted, rebuilt, identical features."""
    pool = ModelPool(max_models=1)
    images = np.stack(load_demo_set("shapes", per_class=2, size=64).images[:6])
    config = ("demo-shapes", "pretrained", (64, 64))

    def backbone():
        return load_backbone("demo-shapes", weights="pretrained", input_size=(64, 64))

    def extractor():
        fx = FeatureExtractor(pool.get(config, backbone), ["block1_pool", "block2_pool"], ["avg", "max"])
        fx.warm()
        return fx

    fx_key = (*config, ("block1_pool", "block2_pool"), ("avg", "max"))
    first = pool.get(fx_key, extractor, group=config)
    before = {k: np.asarray(v).copy() for k, v in first.run_batch(images).items()}
    assert pool.get(fx_key, extractor, group=config) is first
    pool.get("another configuration", lambda: object())  # bound 1: demo-shapes goes
    assert pool.keys() == ["another configuration"]
    second = pool.get(fx_key, extractor, group=config)
    assert second is not first
    after = second.run_batch(images)
    assert sorted(after) == sorted(before)
    for key in before:
        assert before[key].shape == (6, before[key].shape[1]) and np.isfinite(before[key]).all()
        np.testing.assert_allclose(np.asarray(after[key]), before[key], rtol=1e-6, atol=1e-6)
    assert pool.groups() == [config]  # and the other configuration went in turn
    assert pool.stats().evictions == 2


def test_bad_bound_is_refused():
    with pytest.raises(ValueError, match="max_models=0"):
        ModelPool(max_models=0)


def test_docstring_examples():
    assert doctest.testmod(model_pool).failed == 0
