"""Sidebar choices survive every button on every page (issue 10, item 1), and what Export says it came from.

Flow: upload a labelled .zip → mobilenetv3small, random weights, 32 px → sweep → "Use … in Export" →
the sidebar is exactly as it was, and Export names the sweep its choice came from.
"""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from app_support import APP, TIMEOUT_S, assert_clean, png, texts
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest

from extractor import load_backbone
from extractor.export import read_features
from extractor.layers import feature_layers

LS, EX = "pages/layer_selection.py", "pages/export.py"
SIDEBAR_KEYS = ("sb_source", "sb_backbone", "sb_weights", "sb_resize", "sb_precision")


def labelled_zip(per_class: int = 4, size: int = 32) -> tuple[bytes, list[str]]:
    """A zip with one folder per class (red, green, blue squares with noise), and its member names."""
    rng = np.random.default_rng(0)
    buf, names = io.BytesIO(), []
    with zipfile.ZipFile(buf, "w") as zf:
        for c, cls in enumerate(("red", "green", "blue")):
            for i in range(per_class):
                img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
                img[4:28, 4:28, c] = 200 + i * 10
                name = f"{cls}/{cls}_{i}.png"
                zf.writestr(name, png(img))
                names.append(name)
    return buf.getvalue(), names


def open_on(page: str) -> AppTest:
    """The app opened straight on ``page`` (the first page is not part of these flows)."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S)
    at.switch_page(page).run()
    assert_clean(at)
    return at


def sidebar(at) -> dict:
    values = {key: at.session_state[key] for key in SIDEBAR_KEYS}
    values["images"] = [c.value for c in at.sidebar.caption if "image" in str(c.value)]
    values["size"] = at.session_state["sb_input_size__mobilenetv3small"]
    return values


def upload_random_small(at, backbone: str = "mobilenetv3small"):
    at.radio(key="sb_source").set_value("upload").run()
    data, names = labelled_zip()
    at.file_uploader(key="sb_upload").set_value([("shapes.zip", data, "application/zip")]).run()
    at.radio(key="sb_weights").set_value("random").run()  # before the backbone: no ImageNet load is tried
    at.selectbox(key="sb_backbone").set_value(backbone).run()
    at.number_input(key=f"sb_input_size__{backbone}").set_value(32).run()
    assert_clean(at)
    return names


@pytest.fixture
def downloads(monkeypatch):
    """Every file handed to st.download_button, by file name (AppTest keeps no bytes itself)."""
    files: dict[str, bytes] = {}
    original = MediaFileManager.add

    def add(self, path_or_data, mimetype, coordinates, file_name=None, is_for_static_download=False):
        if is_for_static_download and file_name:
            files[file_name] = path_or_data if isinstance(path_or_data, bytes) else str(path_or_data).encode()
        return original(self, path_or_data, mimetype, coordinates, file_name, is_for_static_download)

    monkeypatch.setattr(MediaFileManager, "add", add)
    return files


@pytest.mark.slow
def test_use_in_export_keeps_every_sidebar_choice(downloads):
    at = open_on(LS)
    names = upload_random_small(at)
    before = sidebar(at)
    assert before["sb_source"] == "upload" and before["sb_weights"] == "random"
    assert before["images"][0].startswith("12 images · 3 classes"), before
    at.button(key="ls_run").click().run()
    assert_clean(at)
    rec = at.session_state["ls_result"].recommendation
    assert rec is not None
    assert [w for w in texts(at.warning) if w.startswith("Random weights (untrained)")], texts(at.warning)
    at.button(key="ls_use_best").click().run()
    assert_clean(at)
    assert at.title[0].value == "Export"
    assert sidebar(at) == before
    assert at.multiselect(key="ex_layers__mobilenetv3small").value == [rec.layer]
    assert at.multiselect(key="ex_poolings").value == [rec.pooling]
    toasts = texts(at.toast)
    assert toasts and rec.layer.replace("_", "\\_") in toasts[0]
    # Export says where the choice came from, and that the weights are random
    said = " ".join(texts(at.caption) + texts(at.markdown) + texts(at.info) + texts(at.warning))
    assert "sweep" in said and "12 images" in said
    assert not [w for w in texts(at.warning) if "differs" in w]

    # the downloaded features are the uploaded images through the chosen layer of the chosen backbone
    back, paths, labels = read_features(downloads["layer_explorer_features.npz"])
    assert paths == names and labels == [n.split("/")[0] for n in names]
    key = f"{rec.layer}/{rec.pooling}"
    channels = {info.name: info.shape[-1] for info in feature_layers(
        load_backbone("mobilenetv3small", weights="none", input_size=(32, 32)).model)}
    assert list(back) == [key] and back[key].shape[0] == 12
    assert back[key].shape[1] == channels[rec.layer] * (2 if rec.pooling == "avgmax" else 1)

    # random weights are said where the export is presented, and in config.json
    assert [w for w in texts(at.warning) if w.startswith("Random weights (untrained)")], texts(at.warning)
    cfg = json.loads(downloads["layer_explorer_config.json"])
    assert cfg["weights"] == "none" and cfg["weights_kind"] == "random" and "not trained" in cfg["weights_description"]
    assert cfg["images"] == names  # the exported rows, in their order

    # changing the sidebar afterwards: Export says the choice came from another configuration
    at.number_input(key="sb_input_size__mobilenetv3small").set_value(48).run()
    at.switch_page(EX).run()  # AppTest's next run is on the page it last switched to itself
    assert_clean(at)
    warned = [w for w in texts(at.warning) if "differs from the sweep" in w]
    assert warned and "32×32 → 48×48" in warned[0], (texts(at.warning), texts(at.caption), texts(at.error), texts(at.info))


def test_missing_imagenet_weights_speak_the_sidebars_words(monkeypatch):
    """Offline, no cached file: one box in the sidebar's words (no server path, no local-file way out when the
    deployment allows none), a one-click way to random weights, and the backbone list says what is cached."""
    import extractor.backbones as backbones

    monkeypatch.setattr(backbones, "_weights_host_reachable", lambda: False)
    fake = backbones.imagenet_weights_path(backbones.get_spec("resnet50"))
    fake.parent.mkdir(parents=True, exist_ok=True)
    fake.write_bytes(b"")  # only its presence is read by the list; it is never loaded here
    try:
        at = open_on(LS)
        labels = at.selectbox(key="sb_backbone").options
        assert "resnet50 (ResNet) · ✓ ImageNet" in labels
        assert "vgg16 (VGG) · no ImageNet weights here" in labels
        assert "demo-shapes (Demo)" in labels
    finally:
        fake.unlink()
    at.selectbox(key="sb_backbone").set_value("vgg16").run()
    assert not at.exception
    errors = texts(at.error)
    assert len(errors) == 1, errors
    message = errors[0]
    assert "No ImageNet weights for vgg16" in message and "**Random**" in message and "demo-shapes" in message
    assert "weights 'none'" not in message and "--weights" not in message
    assert "Local weights file" not in message  # LAYER_EXPLORER_ALLOW_LOCAL_WEIGHTS is not set
    assert str(backbones.keras_cache_dir()) not in message and "/" not in message
    assert not at.info  # the ways out are said once, in that box
    at.button(key="state_use_random").click().run()
    assert_clean(at)
    assert at.radio(key="sb_weights").value == "random"
    assert not at.error
    assert at.button(key="ls_run")


@pytest.mark.slow
def test_collapsed_random_features_are_named_not_blamed_on_the_images(downloads):
    """Random MobileNetV2 (batch norm): the sweep and Export say the features collapsed, and why."""
    at = open_on(LS)
    at.slider(key="sb_per_class").set_value(2).run()
    at.radio(key="sb_weights").set_value("random").run()
    at.selectbox(key="sb_backbone").set_value("mobilenetv2").run()
    at.number_input(key="sb_input_size__mobilenetv2").set_value(32).run()
    at.multiselect(key="ls_poolings").set_value(["avg"]).run()
    at.button(key="ls_run").click().run()
    assert_clean(at)
    said = [w for w in texts(at.warning) if "collapsed" in w or "same vector" in w]
    assert said and "not about your images" in said[0] and "batch normalisation" in said[0], texts(at.warning)
    assert not [t for t in texts(at.markdown) + texts(at.info) if "copies of one image" in t]
    # (AppTest.switch_page would run the page file on its own, whose sidebar widgets are other widgets)
    at.button(key="ls_use_best").click().run()
    assert_clean(at)
    assert at.title[0].value == "Export"
    result = at.session_state["ls_result"]
    chosen = f"{result.recommendation.layer}/{result.recommendation.pooling}"
    verdict = {h.name: h for h in result.health}[chosen]
    said = [w for w in texts(at.warning) if "collapsed" in w or "same vector" in w]
    assert bool(said) == (not verdict.ok), (chosen, verdict, texts(at.warning))
    assert sum(not h.ok for h in result.health) >= 1


def test_no_accuracy_scores_is_one_box_in_one_voice():
    """Unlabelled uploads: before and after the sweep, one box "No accuracy scores: the images have no labels…"."""
    at = open_on(LS)
    at.radio(key="sb_source").set_value("upload").run()
    rng = np.random.default_rng(1)
    files = [(f"img_{i}.png", png(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)), "image/png") for i in range(4)]
    at.file_uploader(key="sb_upload").set_value(files).run()
    for when in ("before", "after"):
        boxes = [t for t in texts(at.info) if "accuracy scores" in t.lower() or "labels" in t.lower()]
        assert len(boxes) == 1, (when, texts(at.info))
        assert boxes[0].startswith("No accuracy scores: the images have no labels"), boxes[0]
        assert boxes[0].lower().count("one folder per class") == 1, boxes[0]
        if when == "before":
            at.button(key="ls_run").click().run()
            assert_clean(at)


def test_sidebar_polish_caps_left_out_list_and_problem_column():
    """The uploader carries the app's own per-file cap; many bad files sit in a collapsed list; no "None" cells."""
    import pandas as pd

    from ui.state import UPLOAD_LIMITS
    from ui.sweeps import scores_view

    at = open_on(LS)
    at.radio(key="sb_source").set_value("upload").run()
    uploader = at.file_uploader(key="sb_upload")
    assert uploader.proto.max_upload_size_mb == UPLOAD_LIMITS.max_file_bytes // 2**20
    good = png(np.zeros((32, 32, 3), np.uint8))
    files = [("ok.png", good, "image/png")] + [(f"bad_{i}.png", b"not an image", "image/png") for i in range(8)]
    uploader.set_value(files).run()
    assert_clean(at)
    left = [e for e in at.sidebar.expander if "Left out: 8 files" in e.label]
    assert left and not left[0].proto.expanded
    assert not [w for w in at.sidebar.warning if "Left out" in str(w.value)]

    view = scores_view(pd.DataFrame({"layer": ["a", "b"], "problem": [None, "too few images"]}))
    assert list(view["problem"]) == ["", "too few images"]
