"""The app under hostile input and many users: model upload off by default and audited when on,
one model per session, concurrent sessions equal to a single one, and no traceback or server
path in the browser when a page fails."""

from __future__ import annotations

import gc
import io
import json
import threading
import weakref
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from app_support import open_app
from streamlit.testing.v1 import AppTest

from extractor import FeatureExtractor, load_backbone
from extractor.demo import load_demo_set


def _texts(elements) -> str:
    return " ".join(str(e.value) for e in elements)


def _keras_bytes(tmp_path: Path, model, name: str = "m.keras") -> bytes:
    path = tmp_path / name
    model.save(path)
    return path.read_bytes()


def _small_cnn(seed: int = 0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((32, 32, 3)),
        keras.layers.Rescaling(1 / 255.0, name="scale"),
        keras.layers.Conv2D(4, 3, activation="relu", name="conv_a"),
        keras.layers.MaxPooling2D(name="pool_a"),
        keras.layers.Conv2D(8, 3, activation="relu", name="conv_b"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3),
    ])


def test_model_upload_is_off_by_default(monkeypatch):
    monkeypatch.delenv("LAYER_EXPLORER_ALLOW_MODEL_UPLOAD", raising=False)
    at = open_app()
    assert "custom" not in at.selectbox(key="sb_backbone").options


@pytest.fixture
def upload_on(monkeypatch):
    monkeypatch.setenv("LAYER_EXPLORER_ALLOW_MODEL_UPLOAD", "1")


def _choose_custom(at: AppTest) -> AppTest:
    at.selectbox(key="sb_backbone").set_value("custom")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_uploaded_model_is_audited_loaded_and_used(upload_on, tmp_path):
    at = _choose_custom(open_app())
    assert "No model uploaded yet" in _texts(at.error)
    model = _small_cnn()
    at.file_uploader(key="sb_model_upload").set_value([("my cnn.keras", _keras_bytes(tmp_path, model), "application/zip")])
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Something went wrong" not in _texts(at.error)
    layers = " ".join(at.selectbox(key="fm_layer").options)  # labels: "name (kind)"
    assert all(name in layers for name in ("conv_a", "pool_a", "conv_b"))
    # the page's numbers are the model's own
    at.selectbox(key="fm_layer").set_value("conv_b").run()
    table = at.dataframe[0].value
    assert len(table) == 8


def test_hostile_model_is_refused_with_its_reason(upload_on, tmp_path):
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Lambda(lambda x: x * 2, name="evil")])
    data = _keras_bytes(tmp_path, model, "lambda.keras")
    at = _choose_custom(open_app())
    at.file_uploader(key="sb_model_upload").set_value([("innocent.keras", data, "application/zip")])
    at.run()
    assert not at.exception
    errors = _texts(at.error)
    assert "innocent" in errors and "was not loaded" in errors and "Lambda" in errors


def test_zip_with_parent_members_is_refused(upload_on, tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("config.json", json.dumps({"class_name": "Sequential", "config": {}}))
        z.writestr("../../etc/evil", "x")
    at = _choose_custom(open_app())
    at.file_uploader(key="sb_model_upload").set_value([("m.keras", buffer.getvalue(), "application/zip")])
    at.run()
    assert not at.exception
    assert "was not loaded" in _texts(at.error)


def test_reuploading_keeps_one_model_per_session(upload_on, tmp_path):
    from ui import custom_model

    a, b = _keras_bytes(tmp_path, _small_cnn(0), "a.keras"), _keras_bytes(tmp_path, _small_cnn(1), "b.keras")
    at = _choose_custom(open_app())
    refs = []
    for name, data in [("a.keras", a), ("b.keras", b), ("a.keras", a), ("b.keras", b)]:
        at.file_uploader(key="sb_model_upload").set_value([(name, data, "application/zip")])
        at.run()
        assert not at.exception
        held = at.session_state["_custom_model"]
        refs.append(weakref.ref(held.backbone.model))
        del held
    gc.collect()
    alive = [r for r in refs if r() is not None]
    assert len(alive) == 1, f"{len(alive)} uploaded models are still in memory; only the current one should be"
    assert custom_model._SESSION_KEY in at.session_state


def test_uploaded_model_never_enters_a_shared_cache(upload_on, tmp_path):
    from ui import cache

    at = _choose_custom(open_app())
    at.file_uploader(key="sb_model_upload").set_value([("m.keras", _keras_bytes(tmp_path, _small_cnn()), "application/zip")])
    at.run()
    assert not at.exception
    # A second, fresh session sees no uploaded model at all.
    other = _choose_custom(open_app())
    assert "No model uploaded yet" in _texts(other.error)
    # And the shared caches only ever hold registry backbones.
    for fn in (cache._shared_backbone, cache._shared_extractor):
        assert fn is not None
    held = at.session_state["_custom_model"]
    assert held.config_name.startswith("custom:")


def _keep_apptest_runtime_for_concurrent_runs(monkeypatch) -> None:
    """Let several AppTests run at once in threads.

    Each ``AppTest.run`` sets Streamlit's process-wide ``Runtime._instance`` to a mock and sets it
    back to None when it ends; with four runs in threads, one ending cleared it under another's
    script thread, which then failed in ``runtime.get_instance()`` and drew an empty page (seen in a
    clean-clone CI run: an unhandled ``RuntimeError`` in a ScriptRunner thread). The harness race,
    not the app: a cleared instance falls back to the last mock any run set.
    """
    from streamlit.runtime.runtime import Runtime

    last: dict = {}

    def instance(cls):
        if cls._instance is not None:
            last["mock"] = cls._instance
            return cls._instance
        if "mock" in last:
            return last["mock"]
        raise RuntimeError("Runtime hasn't been created!")

    def exists(cls):
        return cls._instance is not None or "mock" in last

    monkeypatch.setattr(Runtime, "instance", classmethod(instance))
    monkeypatch.setattr(Runtime, "exists", classmethod(exists))


def test_concurrent_sessions_get_the_single_session_result(monkeypatch):
    """Four sessions extract at once (different layers); each equals a direct, single-run result."""
    images = load_demo_set("shapes", per_class=10, size=64).images
    layers = ["block1_pool", "block2_pool", "block3_pool", "block4_pool"]
    backbone = load_backbone("demo-shapes")
    expected = {}
    for layer in layers:
        fx = FeatureExtractor(backbone, [layer], ["avg", "max"])
        expected[layer] = fx.extract(images).features

    from ui.cache import array_digest

    sessions = []
    for i, layer in enumerate(layers):  # each session its own layer and its own image
        at = open_app()
        sessions.append((layer, 2 * i + 1, at))
    errors: list[BaseException] = []

    def drive(layer: str, index: int, at: AppTest):
        try:
            block = layer.split("_")[0]
            at.selectbox(key="fm_block").set_value(block).run()
            at.selectbox(key="fm_layer").set_value(layer)
            at.selectbox(key="fm_image").set_value(array_digest(images[index])).run()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    _keep_apptest_runtime_for_concurrent_runs(monkeypatch)
    threads = [threading.Thread(target=drive, args=s) for s in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not [t.name for t in threads if t.is_alive()], "a session was still running after 600 s"
    assert not errors, errors
    for layer, index, at in sessions:
        assert not at.exception, [e.value for e in at.exception]
        table = at.dataframe[0].value.sort_values("channel")
        avg, mx = expected[layer][f"{layer}/avg"][index], expected[layer][f"{layer}/max"][index]
        assert len(table) == len(avg)
        # The page's per-channel mean and max are this image's avg and max pooling at this layer.
        np.testing.assert_allclose(table["mean"].to_numpy(), avg, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(table["max"].to_numpy(), mx, rtol=1e-4, atol=1e-5)

    # The pooled-features cache under concurrent use: identical to the single-session run.
    from concurrent.futures import ThreadPoolExecutor

    def pooled(layer):
        at = AppTest.from_function(_pooled_script, args=(layer,), default_timeout=180)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        return layer, at.session_state["result"]

    with ThreadPoolExecutor(4) as pool:
        for layer, result in pool.map(pooled, layers):
            for key, values in result.items():
                np.testing.assert_allclose(values, expected[layer][key], rtol=1e-5, atol=1e-5)


def _pooled_script(layer):
    import streamlit as st

    from ui import cache
    from ui.state import BackboneConfig, ImageSet

    demo = cache.demo_images("shapes", 10)
    images = ImageSet(items=demo.images, names=demo.names, labels=demo.labels, digests=demo.digests,
                      thumbnails=[], origin="demo")
    config = BackboneConfig("demo-shapes", "pretrained", (64, 64))
    feats = cache.pooled_features([layer], ["avg", "max"], images=images, config=config, show_progress=False)
    st.session_state["result"] = feats.features


