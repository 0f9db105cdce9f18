"""The Channels & layers page through AppTest: every control, numbers checked against the core.

Default set: the shapes demo through demo-shapes (64 px, 10 images per class, 70 images), so the
debiased CKA estimator is on by default (below 100 images).
"""

from __future__ import annotations

import numpy as np
import pytest
from app_support import assert_clean, open_app, texts

from extractor import FeatureExtractor, load_backbone
from extractor.channels import channel_stats
from extractor.cka import cka_matrix
from extractor.demo import load_demo_set

PAGE = "pages/channels.py"
BLOCKS = ["block1_pool", "block2_pool", "block3_pool", "block4_pool"]

pytestmark = pytest.mark.slow


def _charts(at):
    return at.get("vega_lite_chart")


def _core(layers, poolings=("avg", "max")):
    demo = load_demo_set("shapes", per_class=10, size=64)
    return FeatureExtractor(load_backbone("demo-shapes"), layers, list(poolings)).extract(demo.images).features, demo


def _md(at) -> str:
    return "\n".join(texts(at.markdown))


def _captions(at) -> str:
    return "\n".join(texts(at.caption)).replace("\\", "")  # Markdown escapes off


def test_default_view_matches_the_core():
    at = open_app(PAGE)
    assert at.selectbox(key="ch_layer__demo-shapes").value == "block4_pool"
    feats, demo = _core(BLOCKS)
    stats = channel_stats(feats["block4_pool/max"], list(demo.labels), mean_pooled=feats["block4_pool/avg"])
    first = stats.order("max_value")[0]
    assert at.selectbox(key="ch_channel__demo-shapes__block4_pool").value == first
    assert "**Highest 9**" in _md(at) and "**Lowest 9**" in _md(at)
    col = feats["block4_pool/max"][:, first]
    top = [float(c.split(" · ")[0]) for c in at.image[0].captions]
    low = [float(c.split(" · ")[0]) for c in at.image[1].captions]
    np.testing.assert_allclose(top, np.sort(col)[::-1][:9], rtol=1e-2)  # captions show 3 significant digits
    np.testing.assert_allclose(low, np.sort(col)[:9], rtol=1e-2, atol=1e-3)
    table = at.dataframe[0].value
    assert len(table) == 128 and list(table["channel"]) == list(range(128))
    np.testing.assert_allclose(table["selectivity"].to_numpy(dtype=float),
                               [s.selectivity for s in stats.channels], rtol=1e-5, equal_nan=True)
    # two charts: the depth summary and the CKA heat map (within this network, avg-pooled, debiased)
    assert len(_charts(at)) == 2
    assert "debiased" in _captions(at) and "below 100 images" in _captions(at)
    assert at.toggle(key="ch_cka_debiased_True").value is True
    expected = cka_matrix({b: feats[f"{b}/avg"] for b in BLOCKS}, debiased=True)
    assert f"{expected.n_images} images" in _captions(at)


def test_every_control():
    at = open_app(PAGE)
    # layer, order, channel, k
    at.selectbox(key="ch_layer__demo-shapes").set_value("block2_pool").run()
    assert_clean(at)
    at.selectbox(key="ch_order").set_value("selectivity").run()
    assert_clean(at)
    feats, demo = _core(["block2_pool"])
    stats = channel_stats(feats["block2_pool/max"], list(demo.labels), mean_pooled=feats["block2_pool/avg"])
    assert at.selectbox(key="ch_channel__demo-shapes__block2_pool").options[0] == f"channel {stats.order('selectivity')[0]}"
    at.selectbox(key="ch_channel__demo-shapes__block2_pool").set_value(5).run()
    assert_clean(at)
    assert any("What channel 5 of block2" in s for s in texts(at.subheader))
    at.slider(key="ch_k").set_value(4).run()
    assert_clean(at)
    assert "**Highest 4**" in _md(at) and len(at.image[0].captions) == 4 and len(at.image[1].captions) == 4

    # every layer: a convolution before its BatchNorm/ReLU is "never positive", not "dead"
    at.toggle(key="ch_all_layers").set_value(True).run()
    assert_clean(at)
    at.selectbox(key="ch_layer__demo-shapes").set_value("block1_conv1").run()
    assert_clean(at)
    assert "never positive" in _captions(at)

    # CKA options: biased estimator, two networks (trained vs random), full maps behind a button
    at.toggle(key="ch_cka_debiased_True").set_value(False).run()
    assert_clean(at)
    assert "biased (Kornblith" in _captions(at)
    at.radio(key="ch_cka_mode").set_value("between").run()
    assert_clean(at)
    assert at.selectbox(key="ch_other_backbone").value == "demo-shapes"
    assert at.radio(key="ch_other_weights").value == "none"
    assert "demo-shapes (random)" in _captions(at)
    at.radio(key="ch_other_weights").set_value("pretrained").run()
    assert_clean(at)
    assert "demo-shapes (random)" not in _captions(at)
    at.selectbox(key="ch_other_backbone").set_value("demo-shapes").run()
    at.radio(key="ch_cka_mode").set_value("within").run()
    at.radio(key="ch_cka_features").set_value("full").run()
    assert_clean(at)
    assert len(_charts(at)) == 1  # only the depth chart until the button is pressed
    at.button(key="ch_cka_full_run").click().run()
    assert_clean(at)
    assert len(_charts(at)) == 2 and "full maps" in _captions(at)

    # activation maximisation: steps, run, cancel
    at.slider(key="ch_am_steps").set_value(10).run()
    at.button(key="ch_am_run").click().run()
    assert_clean(at)
    assert at.image[-1].captions == ["An optimised picture, not a real image."]
    assert "in 10 steps" in _captions(at)
    at.button(key="ch_am_cancel").click().run()
    assert_clean(at)
    assert "Optimisation cancelled." in texts(at.info)


def test_the_app_pins_blas_to_one_thread_so_a_cka_product_cannot_hang():
    """ui.native_threads: OpenBLAS's own pool hung a CKA product here (test_every_control, minutes in
    exec_blas_async); the app sets one BLAS thread once per process, before any session computes."""
    from threadpoolctl import threadpool_info

    open_app()
    blas = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
    assert blas and all(pool["num_threads"] == 1 for pool in blas)


def test_peaks_found_for_all_blocks_in_one_pass_are_each_layers_own():
    """The crops of every block come from one pass through all blocks (a block switch then runs
    nothing, issue 14); each block's peaks must be those of a pass through that block alone, and
    the brute-force argmax of its raw maps."""
    from extractor import feature_key
    from ui import channels_view as cv
    from ui.config import BackboneConfig

    demo = load_demo_set("shapes", per_class=3, size=64)
    items = list(demo.images)
    config = BackboneConfig("demo-shapes", "pretrained", (64, 64))
    digests = tuple(f"image-{i}" for i in range(len(items)))
    together = cv.peak_positions(config, tuple(BLOCKS), digests, items)
    assert set(together) == set(BLOCKS)
    raw = FeatureExtractor(load_backbone("demo-shapes", input_size=(64, 64)), BLOCKS, ["none"]).extract(items).features
    for layer in BLOCKS:
        alone, size = cv.peak_positions(config, (layer,), digests, items)[layer]
        np.testing.assert_array_equal(together[layer][0], alone)
        assert together[layer][1] == size
        maps = raw[feature_key(layer, "none")]  # (n, H, W, C)
        flat = maps.reshape(len(items), -1, maps.shape[-1]).argmax(axis=1)
        np.testing.assert_array_equal(alone[..., 0] * maps.shape[2] + alone[..., 1], flat)
