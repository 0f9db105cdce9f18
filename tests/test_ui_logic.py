"""The page-independent logic of the UI: mosaics, overlays, statistics, Keras snippets, messages.

No Streamlit script runs here and no network is built: tiny hand-made maps only.
"""

from __future__ import annotations

import ast

import numpy as np
import pytest

from ui import feature_maps as fm
from ui.code_snippets import KERAS_APPLICATIONS, keras_snippet


def _map(h=4, w=5, c=6, seed=0) -> np.ndarray:
    """A (h, w, c) map whose channel k has mean about k (so channel c-1 is the most active)."""
    rng = np.random.default_rng(seed)
    return (rng.random((h, w, c)) * 0.5 + np.arange(c)).astype(np.float32)


# ---- ordering and mosaics ------------------------------------------------------------------------

def test_channel_order_is_by_mean_descending_and_stable():
    fmap = _map()
    assert fm.channel_order(fmap).tolist() == [5, 4, 3, 2, 1, 0]
    tied = np.ones((2, 2, 4), np.float32)
    assert fm.channel_order(tied).tolist() == [0, 1, 2, 3]
    assert fm.channel_order(fmap[None]).tolist() == [5, 4, 3, 2, 1, 0]  # a batch of one is accepted


def test_mosaic_shape_and_layout():
    fmap = _map(4, 5, 6)
    m = fm.compose_mosaic(fmap, [5, 4, 3], columns=2, target_cell=8, max_cell=64, gap=2, labels=False)
    assert m.cell == (8, 10)  # 4×5 grown by a whole factor (2) until the long side reaches 8
    assert (m.columns, m.rows) == (2, 2)
    assert m.image.shape == (2 * 8 + 2, 2 * 10 + 2, 3) and m.image.dtype == np.uint8
    assert m.channels == [5, 4, 3]
    # the empty fourth cell and the gaps are white background
    y, x = m.cell_origin(3)
    assert (m.image[y:y + 8, x:x + 10] == 255).all()
    assert (m.image[8:10, :] == 255).all()


def test_mosaic_cells_follow_mean_order_and_show_each_channel():
    # channel k is a constant k except one bright pixel at (0, k % 3): per-channel scaling makes
    # each cell black-ish except that pixel, so we can tell which channel sits in which cell.
    c = 4
    fmap = np.zeros((3, 3, c), np.float32)
    for k in range(c):
        fmap[..., k] = k
        fmap[0, k % 3, k] = k + 10
    order = fm.channel_order(fmap)
    assert order.tolist() == [3, 2, 1, 0]
    m = fm.compose_mosaic(fmap, order, columns=4, target_cell=3, max_cell=3, gap=1, labels=False, cmap="gray")
    for pos, k in enumerate(order):
        y, x = m.cell_origin(pos)
        cell = m.image[y:y + 3, x:x + 3, 0]
        assert np.unravel_index(cell.argmax(), cell.shape) == (0, k % 3)
        assert cell.max() == 255 and cell.min() == 0


def test_mosaic_default_is_every_channel_and_large_layers_stay_bounded():
    # Speed is measured where the user waits (benchmarks/bench_analysis.py times the layer switch in the
    # browser), not by a timed assertion here; this checks the size that keeps it fast.
    fmap = np.random.default_rng(0).random((14, 14, 512)).astype(np.float32)
    m = fm.compose_mosaic(fmap)
    assert len(m.channels) == 512 and m.image.shape[1] <= 1400
    assert m.channels == fm.channel_order(fmap).tolist()


def test_small_maps_grow_nearest_and_large_maps_shrink():
    assert fm.display_cell(4, 4, target=64) == (64, 64)
    assert fm.display_cell(7, 7, target=64) == (70, 70)
    assert fm.display_cell(224, 224, max_cell=128) == (128, 128)
    assert fm.display_cell(64, 64) == (64, 64)
    grown = fm.resample_nearest(np.array([[1, 2], [3, 4]]), 4, 4)
    assert grown.tolist() == [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]


def test_per_channel_vs_shared_scaling():
    fmap = np.zeros((2, 2, 2), np.float32)
    fmap[..., 0] = [[0, 1], [0, 1]]  # range 0..1
    fmap[..., 1] = [[0, 10], [0, 10]]  # range 0..10
    per = fm.normalise(fmap, scale="channel")
    shared = fm.normalise(fmap, scale="shared")
    assert per[..., 0].max() == pytest.approx(1.0) and per[..., 1].max() == pytest.approx(1.0)
    assert shared[..., 0].max() == pytest.approx(0.1) and shared[..., 1].max() == pytest.approx(1.0)
    flat = fm.normalise(np.full((2, 2, 1), 3.0, np.float32))
    assert (flat == 0).all()  # a constant channel does not divide by zero
    with pytest.raises(ValueError):
        fm.normalise(fmap, scale="log")


def test_colorize_applies_one_colormap_and_paints_nan_white():
    import matplotlib

    values = np.array([[0.0, 0.5], [1.0, np.nan]], np.float32)
    rgb = fm.colorize(values, "viridis")
    expected = matplotlib.colormaps["viridis"](np.array([0.0, 0.5, 1.0]), bytes=True)[:, :3]
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0].tolist() == expected[0].tolist() and rgb[1, 0].tolist() == expected[2].tolist()
    assert rgb[1, 1].tolist() == [255, 255, 255]


def test_bad_channel_index_is_a_clear_error():
    with pytest.raises(ValueError, match="channel 9 does not exist"):
        fm.compose_mosaic(_map(), [9])


# ---- overlay -------------------------------------------------------------------------------------

def test_overlay_shape_and_blending():
    image = np.full((32, 48, 3), 100, np.uint8)
    heat = np.zeros((4, 6), np.float32)
    heat[0, 0] = 1.0
    assert fm.overlay(image, heat, 0.0).tolist() == image.tolist()
    full = fm.overlay(image, heat, 1.0, cmap="gray")
    assert full.shape == (32, 48, 3) and full.dtype == np.uint8
    assert full[0, 0, 0] > 200 and full[-1, -1, 0] == 0  # hot corner bright, the rest black
    half = fm.overlay(image, heat, 0.5, cmap="gray")
    assert half[-1, -1, 0] == 50  # (100 + 0) / 2
    with pytest.raises(ValueError):
        fm.overlay(np.zeros((8, 8)), heat)


def test_upsample_bilinear_is_smooth_and_keeps_range():
    up = fm.upsample_bilinear(np.array([[0.0, 1.0]], np.float32), 1, 8)
    assert up.shape == (1, 8)
    assert (np.diff(up[0]) >= 0).all() and 0.0 <= up.min() and up.max() <= 1.0
    assert len(np.unique(up)) > 2  # interpolated, not blocky


def test_enlarge_only_small_images():
    small = np.zeros((64, 64, 3), np.uint8)
    assert fm.enlarge(small, 256).shape == (256, 256, 3)
    big = np.zeros((300, 400, 3), np.uint8)
    assert fm.enlarge(big, 256) is big


# ---- statistics ----------------------------------------------------------------------------------

def test_channel_stats_values_and_order():
    fmap = np.zeros((2, 2, 3), np.float32)
    fmap[..., 0] = [[0, 0], [0, 4]]  # mean 1, max 4, zeros 3/4
    fmap[..., 1] = [[2, 2], [2, 2]]  # mean 2, max 2, zeros 0
    fmap[..., 2] = 0  # mean 0, zeros 1
    table = fm.channel_stats(fmap)
    assert table.columns.tolist() == ["channel", "mean", "max", "zero_fraction"]
    assert table["channel"].tolist() == [1, 0, 2]
    assert table["mean"].tolist() == pytest.approx([2.0, 1.0, 0.0])
    assert table["max"].tolist() == pytest.approx([2.0, 4.0, 0.0])
    assert table["zero_fraction"].tolist() == pytest.approx([0.0, 0.75, 1.0])


def test_histogram_leaves_relu_zeros_out_and_says_so():
    rng = np.random.default_rng(0)
    relu = np.maximum(rng.normal(size=(8, 8, 16)), 0).astype(np.float32)
    hist = fm.activation_histogram(relu, bins=10)
    assert hist.zeros_left_out and 0.3 < hist.zero_fraction < 0.7
    assert hist.table["count"].sum() == int((relu != 0).sum())
    assert hist.table["start"].min() > 0
    dense = rng.normal(size=(8, 8, 4)).astype(np.float32)
    hist = fm.activation_histogram(dense, bins=10)
    assert not hist.zeros_left_out and hist.table["count"].sum() == dense.size
    all_zero = fm.activation_histogram(np.zeros((2, 2, 2), np.float32))
    assert all_zero.zero_fraction == 1.0 and all_zero.table["count"].sum() == 8


def test_hierarchy_tile_keeps_coarse_maps_coarse():
    fmap = np.zeros((2, 2, 3), np.float32)
    fmap[0, 0, :] = 1.0
    tile = fm.hierarchy_tile(fmap, size=8, mode="mean", cmap="gray")
    assert tile.shape == (8, 8, 3)
    assert (tile[:4, :4] == 255).all() and (tile[4:, :] == 0).all()  # 4×4 blocks, no blur
    top = fm.hierarchy_tile(_map(), size=10, mode="top")
    assert top.shape == (8, 10, 3)
    with pytest.raises(ValueError):
        fm.hierarchy_tile(fmap, mode="max")


# ---- the plain Keras snippet ---------------------------------------------------------------------

SNIPPET_CASES = [
    ("vgg16", "block3_pool", "pretrained", "stretch", "float32"),
    ("resnet50", "conv3_block4_out", "none", "center-crop", "float32"),
    ("mobilenetv2", "block_6_expand_relu", "pretrained", "pad", "bfloat16"),
    ("efficientnetb0", "block3a_expand_activation", "/srv/models/my.weights.h5", "stretch", "float32"),
    ("demo-shapes", "block2_pool", "pretrained", "stretch", "float32"),
    ("demo-shapes", "block3_conv1", "none", "stretch", "bfloat16"),
]


@pytest.mark.parametrize("backbone,layer,weights,resize,precision", SNIPPET_CASES, ids=[c[0] + "-" + c[2][:4] for c in SNIPPET_CASES])
def test_keras_snippet_compiles_and_does_it_right(backbone, layer, weights, resize, precision):
    code = keras_snippet(backbone, layer, (96, 96), weights=weights, resize=resize, precision=precision)
    compile(code, "<snippet>", "exec")
    assert ".mean(axis=(1, 2))" in code
    assert "axis=(1, 2, 3)" not in code and "Flatten" not in code
    assert code.count(".predict(") == 1
    tree = ast.parse(code)
    loops_with_predict = [node for node in ast.walk(tree) if isinstance(node, (ast.For, ast.While))
                          and ".predict(" in ast.unparse(node)]
    assert not loops_with_predict, "one batched predict, not one per image"
    assert f"get_layer({layer!r})" in code
    assert "(96, 96, 3)" in code
    if backbone == "demo-shapes":
        assert ".preprocess_input(" not in code
        # plain Keras (issue 9): the shipped .keras file by its installed path, safe mode, no code of ours
        assert 'files("extractor") / "assets" / "demo_shapes.keras"' in code
        assert "keras.saving.load_model(str(model_file), safe_mode=True" in code
        assert "from extractor" not in code and "load_demo_backbone" not in code
        assert ("fresh random weights" in code) == (weights == "none")
    else:
        assert "include_top=False" in code
        assert ".preprocess_input(" in code and ".copy())" in code
    if weights.endswith(".weights.h5"):
        assert "/srv/models" not in code and "'my.weights.h5'" in code
    assert ("mixed_bfloat16" in code) == (precision == "bfloat16")


def test_demo_snippet_runs_and_matches_the_extractor(tmp_path):
    """The copied code gives the same vectors as the app's extractor (a second route, same numbers)."""
    from PIL import Image

    from extractor import FeatureExtractor, load_backbone
    from extractor.demo import make_shapes

    images = make_shapes(per_class=1, size=64, seed=3).images[:2]
    paths = []
    for i, pixels in enumerate(images):
        paths.append(str(tmp_path / f"im{i}.png"))
        Image.fromarray(pixels).save(paths[-1])
    code = keras_snippet("demo-shapes", "block2_pool", (64, 64))
    code = code.replace('paths = ["image1.jpg", "image2.jpg"]', f"paths = {paths!r}")
    scope: dict = {}
    exec(compile(code, "<snippet>", "exec"), scope)
    fx = FeatureExtractor(load_backbone("demo-shapes"), ["block2_pool"], ["avg"])
    ours = fx.extract(images).features["block2_pool/avg"]
    assert scope["vectors"].shape == ours.shape == (2, 32)
    np.testing.assert_allclose(scope["vectors"], ours, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("weights,precision", [("none", "float32"), ("pretrained", "bfloat16"), ("none", "bfloat16")])
def test_demo_snippet_variants_run(tmp_path, weights, precision):
    """Random weights and bfloat16 are plain Keras too (clone_model), and they run."""
    from PIL import Image

    from extractor.demo import make_shapes

    images = make_shapes(per_class=1, size=64, seed=3).images[:2]
    paths = []
    for i, pixels in enumerate(images):
        paths.append(str(tmp_path / f"im{i}.png"))
        Image.fromarray(pixels).save(paths[-1])
    code = keras_snippet("demo-shapes", "block2_pool", (64, 64), weights=weights, precision=precision)
    code = code.replace('paths = ["image1.jpg", "image2.jpg"]', f"paths = {paths!r}")
    scope: dict = {}
    exec(compile(code, "<snippet>", "exec"), scope)
    assert scope["vectors"].shape == (2, 32) and np.isfinite(np.asarray(scope["vectors"], np.float32)).all()
    conv = scope["base"].get_layer("block1_conv1")
    assert conv.dtype_policy.name == ("mixed_bfloat16" if precision == "bfloat16" else "float32")
    shipped = scope["trained"] if precision == "bfloat16" else None
    if shipped is not None:
        same = np.array_equal(conv.get_weights()[0], shipped.get_layer("block1_conv1").get_weights()[0])
        assert same == (weights != "none")


def test_every_registry_backbone_has_a_snippet():
    from extractor import BACKBONES

    for name in BACKBONES:
        if name != "demo-shapes":
            assert name in KERAS_APPLICATIONS, name
        compile(keras_snippet(name, "some_layer", (224, 224)), name, "exec")


def test_snippet_pooling_max():
    code = keras_snippet("vgg16", "block5_pool", (224, 224), pooling="max")
    assert ".max(axis=(1, 2))" in code and ".mean(" not in code


# ---- messages for the browser --------------------------------------------------------------------

def test_user_message_hides_server_paths(tmp_path, monkeypatch):
    from extractor.backbones import keras_cache_dir
    from ui.state import escape_markdown, user_message

    cache_dir = keras_cache_dir()
    message = user_message(ValueError(f"Tried the Keras cache file 'x.h5' in {cache_dir} and /opt/secret/dir/file.h5."))
    assert str(cache_dir) not in message and "/opt/secret" not in message
    assert "the Keras cache folder" in message and "'x.h5'" in message
    assert user_message(ValueError("avg / max and 20 MiB/s")) == "avg / max and 20 MiB/s"
    assert escape_markdown("[x](javascript:alert(1)) **b** <i>") == (
        r"\[x\]\(javascript\:alert\(1\)\) \*\*b\*\* \<i\>")
