"""The explanation views' helpers without Streamlit running, and the Grad-CAM snippet against the core."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from extractor import feature_layers, load_backbone
from extractor.demo import make_shapes
from extractor.explain import find_classifier, grad_cam
from ui import explain as ex
from ui.code_snippets import gradcam_snippet
from ui.explain_view import field_note


def test_outline_draws_a_clipped_box():
    img = np.zeros((20, 20, 3), np.uint8)
    out = ex.outline(img, (-5, -5, 8, 8), width=1)
    assert (out[0, :8] == (255, 64, 32)).all() and (out[:8, 0] == (255, 64, 32)).all()
    assert (out[4, 4] == 0).all() and (out[12:, 12:] == 0).all()
    assert (img == 0).all()  # never drawn on the argument
    big = ex.outline(img, (2, 2, 6, 6), scale=2.0, width=1)
    assert (big[4, 4:12] == (255, 64, 32)).all()


def test_filter_tiles_normalise_each_filter():
    kernel = np.zeros((3, 3, 3, 2), np.float32)
    kernel[0, 0, 0, 0] = 5.0
    kernel[1, 1, 2, 1] = -0.01
    tiles = ex.filter_tiles(kernel)
    assert tiles.shape == (2, 3, 3, 3) and tiles.dtype == np.uint8
    assert tiles[0, 0, 0, 0] == 255 and tiles[1, 1, 1, 2] == 0  # each filter on its own scale
    assert tiles[0, 2, 2, 1] == 128  # zero weight is mid-grey


def test_first_conv_and_top_channels():
    backbone = load_backbone("demo-shapes")
    name, kernel = ex.first_conv(backbone.model, feature_layers(backbone.model))
    assert name == "block1_conv1" and kernel.shape == (3, 3, 3, 16)
    fmap = np.zeros((4, 4, 5), np.float32)
    fmap[1, 2] = [0.1, 3.0, 0.5, 2.0, -1.0]
    assert ex.top_channels_at(fmap, 1, 2, 3) == [(1, 3.0), (3, 2.0), (2, 0.5)]


def test_field_note():
    table = {info.name: info for info in feature_layers(load_backbone("demo-shapes").model)}
    assert field_note(table["block2_pool"]) == "; each cell sees a 16×16-pixel receptive field, 4 pixels apart"


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_gradcam_snippet_runs_and_matches_the_core(tmp_path, monkeypatch, method):
    image = make_shapes(per_class=1, size=64, seed=8).images[3]
    Image.fromarray(image).save(tmp_path / "image1.jpg", quality=100)
    monkeypatch.chdir(tmp_path)
    code = gradcam_snippet("demo-shapes", "block4_relu2", (64, 64), method=method)
    scope: dict = {}
    exec(compile(code, "<snippet>", "exec"), scope)  # noqa: S102 - our own generated code
    pixels = np.asarray(Image.open(tmp_path / "image1.jpg").convert("RGB"))
    expected = grad_cam(find_classifier(load_backbone("demo-shapes")), pixels[None], method=method)
    assert scope["heatmaps"].shape == (1, 64, 64)
    heat = scope["heatmaps"][0] / max(scope["heatmaps"][0].max(), 1e-9)
    np.testing.assert_allclose(heat, expected.heatmaps[0], atol=2e-3)
    for other in ("vgg16", "resnet50"):
        compile(gradcam_snippet(other, "block5_conv3", (224, 224), method=method, class_index=3), "<s>", "exec")


def test_the_classifier_and_its_tables_count_in_the_model_pool_and_are_rebuilt_after_eviction(monkeypatch):
    """Issue 15: the classifier head, its compiled Grad-CAM functions and the receptive fields are in
    the shared pool, in their backbone's group: the "maximum models kept" covers them, an eviction
    drops them with the network, and they come back on demand with the same numbers."""
    from extractor.explain import Classifier, class_evidence
    from ui import cache, inference_slot
    from ui.config import BackboneConfig
    from ui.model_pool import ModelPool

    pool = ModelPool(max_models=1)
    monkeypatch.setattr(inference_slot, "MODELS", pool)
    config = BackboneConfig("demo-shapes", "pretrained", (64, 64))
    group = ("backbone", "demo-shapes", "pretrained", (64, 64))
    images = np.stack(make_shapes(per_class=1, size=64, seed=3).images)

    clf = ex.classifier_for(config)
    assert isinstance(clf, Classifier)
    before = class_evidence(clf, images).probabilities
    fields = ex.receptive_fields_for(config)
    compiled = ex._compiled(config)
    assert pool.groups() == [group]
    held = set(pool.keys())
    assert {("classifier", config), ("receptive-fields", config), ("gradcam-functions", config)} <= held, held
    assert ex.classifier_for(config) is clf and ex._compiled(config) is compiled  # shared, not rebuilt

    cache.load_backbone_cached(config.replace(weights="none"))  # a second configuration: bound 1
    assert pool.groups() == [("backbone", "demo-shapes", "none", (64, 64))]
    assert pool.stats().evictions == 1
    assert not any(key[0] in ("classifier", "receptive-fields", "gradcam-functions") for key in pool.keys())

    again = ex.classifier_for(config)
    assert again is not clf, "rebuilt on demand"
    np.testing.assert_allclose(class_evidence(again, images).probabilities, before, rtol=1e-6, atol=1e-6)
    assert ex.receptive_fields_for(config) == fields
    assert pool.groups() == [group] and pool.stats().evictions == 2
