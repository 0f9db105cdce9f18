"""The Streamlit app through AppTest: every page opens, the sidebar drives the Feature-maps page,
uploads and offline weights give clear messages, and display options never rerun the network.

Small on purpose: the default demo-shapes backbone (64 px), VGG16 with random weights at 64 px.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from app_support import APP, assert_clean, open_app, png, texts
from PIL import Image
from streamlit.testing.v1 import AppTest

from extractor import FeatureExtractor, load_backbone
from extractor.demo import load_demo_set

ROOT = Path(APP).parent
PAGES = ["pages/feature_maps.py", "pages/embeddings.py", "pages/layer_selection.py", "pages/export.py"]


def _demo_image(i: int) -> tuple[np.ndarray, str]:
    """The i-th image of the default demo set and its picker option (its content digest)."""
    from ui.cache import array_digest

    image = load_demo_set("shapes", per_class=10, size=64).images[i]
    return image, array_digest(image)


@pytest.fixture
def offline(monkeypatch):
    """The weights host cannot be reached (without touching the network)."""
    monkeypatch.setattr("extractor.backbones._weights_host_reachable", lambda: False)


def test_default_opens_on_feature_maps_with_something_to_see():
    at = open_app()
    assert at.title[0].value == "Feature maps"
    # the default: demo-shapes with its shipped weights, the shapes set, a mid-depth layer
    assert at.selectbox(key="sb_backbone").value == "demo-shapes"
    assert at.selectbox(key="fm_layer").value == "block2_pool"
    table = at.dataframe[0].value
    assert list(table.columns) == ["channel", "mean", "max", "zero_fraction"]
    assert len(table) == 32  # every channel of block2_pool, sortable
    assert (np.diff(table["mean"].to_numpy()) <= 1e-9).all(), "top channels are sorted by mean, highest first"
    # grid, input, overlay and the hierarchy strip are all there
    captions = " ".join(" ".join(img.captions) for img in at.get("image"))
    assert len(at.get("image")) >= 4
    assert "highest mean activation first" in captions and "What the network sees" in captions
    assert "block4\\_pool" in captions  # hierarchy strip, names escaped for Markdown
    code = at.code[0].value
    compile(code, "<snippet>", "exec")
    # plain Keras (issue 9): the shipped model file, loaded in safe mode, not extractor.training
    assert "demo_shapes.keras" in code and "safe_mode=True" in code and ".mean(axis=(1, 2))" in code
    assert "from extractor" not in code
    # no local weights file unless the server allows it
    assert at.radio(key="sb_weights").options == ["Pretrained", "Random (untrained)"]


def test_resize_policy_and_precision_apply():
    at = open_app()
    before = at.dataframe[0].value
    at.radio(key="sb_resize").set_value("pad")
    at.radio(key="sb_precision").set_value("bfloat16")
    at.run()
    assert_clean(at)
    after = at.dataframe[0].value
    assert len(after) == len(before) == 32
    assert "(pad)" in " ".join(" ".join(img.captions) for img in at.get("image"))


def test_pages_opened_directly_keep_the_sidebar_and_its_choices():
    # With a pages/ folder, AppTest.switch_page (like a fresh server's first deep link) runs the
    # page file on its own; ensure_shell() must still draw the sidebar, with the user's choices.
    at = open_app()
    at.selectbox(key="sb_backbone").set_value("vgg16")
    at.radio(key="sb_weights").set_value("random")
    at.run()
    assert_clean(at)
    at.switch_page("pages/embeddings.py").run()
    assert_clean(at)
    assert at.selectbox(key="sb_backbone").value == "vgg16"
    assert at.radio(key="sb_weights").value == "random"


@pytest.mark.parametrize("page", PAGES)
def test_every_page_opens(page):
    at = open_app()
    at.switch_page(page).run()
    assert_clean(at)
    assert at.title, f"{page} shows a title"
    # the sidebar is drawn by app.py on every page
    assert at.selectbox(key="sb_backbone").value == "demo-shapes"


def test_switch_backbone_layer_and_image_matches_feature_extractor():
    at = open_app()
    at.selectbox(key="sb_backbone").set_value("vgg16")
    at.radio(key="sb_weights").set_value("random")
    at.run()
    assert_clean(at)
    at.number_input(key="sb_input_size__vgg16").set_value(64)
    at.run()
    assert_clean(at)
    at.selectbox(key="fm_block").set_value("block3")
    at.run()
    at.selectbox(key="fm_layer").set_value("block3_conv1")
    image, digest = _demo_image(3)
    at.selectbox(key="fm_image").set_value(digest)
    at.run()
    assert_clean(at)
    assert any("Random weights — not trained" in t for t in texts(at.sidebar.markdown)), "the weights badge is honest"

    first = at.dataframe[0].value.iloc[0]
    fx = FeatureExtractor(load_backbone("vgg16", weights="none", input_size=(64, 64)), ["block3_conv1"], ["avg", "max"])
    result = fx.extract([image])
    avg, mx = result.features["block3_conv1/avg"][0], result.features["block3_conv1/max"][0]
    top = int(np.argmax(avg))
    assert int(first["channel"]) == top
    np.testing.assert_allclose(first["mean"], avg[top], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(first["max"], mx[top], rtol=1e-4, atol=1e-5)
    assert "vgg16.VGG16(include_top=False, weights=None, input_shape=(64, 64, 3))" in at.code[0].value
    assert any("16×16 positions × 256 channels" in t for t in texts(at.caption))


def test_display_options_do_not_rerun_the_network(forward_counter):
    at = open_app()
    before = forward_counter["n"]
    changes = [
        (at.select_slider, "fm_count", "all"),
        (at.radio, "fm_scale", "shared"),
        (at.selectbox, "fm_cmap", "magma"),
        (at.slider, "fm_opacity", 0.8),
        (at.radio, "fm_hier_mode", "top"),
        (at.selectbox, "fm_overlay", int(at.dataframe[0].value.iloc[1]["channel"])),
    ]
    for widgets, key, value in changes:
        widgets(key=key).set_value(value)
        at.run()
        assert_clean(at)
        assert widgets(key=key).value == value
    at.run()
    assert_clean(at)
    assert forward_counter["n"] == before, "a display option re-ran the network"
    # and a new layer of the same block is served from the same forward pass
    at.selectbox(key="fm_layer").set_value("block2_conv1")
    at.run()
    assert_clean(at)
    assert forward_counter["n"] == before


def test_upload_good_and_corrupt_file():
    at = open_app()
    at.radio(key="sb_source").set_value("upload")
    at.run()
    assert_clean(at)
    assert any("Upload images" in t for t in texts(at.info))

    good = png(np.random.default_rng(1).integers(0, 256, (40, 50, 3), dtype=np.uint8))
    frames = [Image.fromarray(np.full((24, 24, 3), v, np.uint8)) for v in (30, 200)]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:])
    at.file_uploader(key="sb_upload").set_value([
        ("good.png", good, "image/png"),
        ("broken_file.png", b"\x89PNG\r\n\x1a\n this is not a png", "image/png"),
        ("moving.gif", gif.getvalue(), "image/gif"),
    ])
    at.run()
    assert_clean(at)
    warnings = " ".join(texts(at.warning))
    assert "broken" in warnings and "good" not in warnings and "moving" not in warnings
    picker = at.selectbox(key="fm_image")
    assert picker.options == ["good.png", "moving.gif"]
    assert len(at.dataframe) == 1  # the page shows the good image's maps
    notes = " ".join(texts(at.sidebar.markdown))
    assert "animated GIF" in notes and "first of 2 frames" in notes


def test_imagenet_weights_offline_show_a_clear_error(offline, keras_home):
    at = open_app()
    at.selectbox(key="sb_backbone").set_value("vgg16")
    at.run()
    assert not at.exception
    errors = texts(at.error)
    assert any("ImageNet weights for vgg16 are not available" in e for e in errors), errors
    assert not any(str(keras_home) in e for e in errors), "a server path reached the browser"
    # the way out is offered, in the same one box (issue 10, item 6: shown once, not twice) and as one click
    assert any("**Random**" in e for e in errors), "the way out is offered"
    assert at.button(key="state_use_random").label == "Use random weights instead"
    # the app stays usable: random weights work right away
    at.radio(key="sb_weights").set_value("random")
    at.number_input(key="sb_input_size__vgg16").set_value(64)
    at.run()
    assert_clean(at)
    assert not at.error
    assert len(at.dataframe) == 1


def test_pooled_features_api_matches_the_extractor_and_is_cached(forward_counter):
    """The API the Embeddings / Layer-selection / Export pages build on, in a script of its own."""

    def script():
        import streamlit as st

        from ui import cache, state

        images, config = state.current_images(), state.current_config()
        feats = cache.pooled_features(["block2_pool", "block4_pool"], ["avg", "gem"], images=images, config=config)
        st.session_state["result"] = feats
        again = cache.pooled_features(["block2_pool", "block4_pool"], ["avg", "gem"], images=images, config=config)
        st.session_state["same"] = all((again.features[k] == v).all() for k, v in feats.features.items())

    at = AppTest.from_function(script, default_timeout=180)
    at.run()
    assert_clean(at)
    feats = at.session_state["result"]
    demo = load_demo_set("shapes", per_class=10, size=64)  # the app's default image set
    assert feats.names == demo.names and feats.labels == demo.labels and feats.indices == list(range(70))
    assert {k: v.shape for k, v in feats.features.items()} == {
        "block2_pool/avg": (70, 32), "block2_pool/gem": (70, 32), "block4_pool/avg": (70, 128), "block4_pool/gem": (70, 128)}
    assert at.session_state["same"]
    calls = forward_counter["n"]
    assert calls <= 4, "70 images in chunks of 64 (batch 32): a handful of passes, the second call none"
    direct = FeatureExtractor(load_backbone("demo-shapes"), ["block4_pool"], ["gem"]).extract(demo.images)
    np.testing.assert_allclose(feats.features["block4_pool/gem"], direct.features["block4_pool/gem"], rtol=1e-4, atol=1e-5)


def test_cached_values_never_carry_a_file_name():
    """Decoding results are shared across sessions by content hash: they must not hold names."""
    from extractor import ImageSource
    from ui import cache

    bad = ImageSource.from_bytes("secret_holiday_name.png", b"\x89PNG\r\n\x1a\nbroken")
    good = ImageSource.from_bytes("another_private_name.png", png(np.zeros((8, 8, 3), np.uint8)))
    decoded = cache.decode_thumbnails((bad.digest, good.digest), [bad, good])
    assert decoded[0].thumbnail is None and decoded[0].error
    assert decoded[1].thumbnail is not None
    assert "secret_holiday_name" not in repr(decoded) and "another_private_name" not in repr(decoded)
