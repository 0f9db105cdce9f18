"""ui.features / ui.charts / ui.exports / ui.sweeps without a Streamlit server: which features to fetch, chart data, tooltip thumbnails,
selections, overlap tables, sweep tables and their charts, the recommendation text, and the
bytes behind every download (they must read back with extractor.export.read_features).

Hand-made arrays only; no network is built here.
"""

from __future__ import annotations

import ast
import base64
import io
import json
import zipfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from extractor import LayerInfo
from extractor.export import CSV_MAX_CELLS, read_features
from extractor.reduce import pca_2d
from extractor.scoring import Recommendation, overlap_matrix, recommend, score_sweep
from extractor.sweep import SweepReport
from ui import charts, exports, features
from ui.state import BackboneConfig

CONFIG = BackboneConfig("demo-shapes", "pretrained", (64, 64))


def _table() -> list[LayerInfo]:
    """A small layer table: two blocks of a conv and a pool each (64 px input)."""
    return [
        LayerInfo("b1_conv", (64, 64, 8), "conv", "b1", 1, 1, "Conv2D"),
        LayerInfo("b1_pool", (32, 32, 8), "pool", "b1", 2, 2, "MaxPooling2D"),
        LayerInfo("b2_conv", (32, 32, 16), "conv", "b2", 2, 3, "Conv2D"),
        LayerInfo("b2_pool", (16, 16, 16), "pool", "b2", 4, 4, "MaxPooling2D"),
    ]


def _blobs(n_per_class=10, dim=6, seed=0):
    rng = np.random.default_rng(seed)
    X = np.vstack([rng.normal(3 * k, 1.0, (n_per_class, dim)) for k in range(3)]).astype(np.float32)
    labels = [c for c in "abc" for _ in range(n_per_class)]
    return X, labels


# ---- identities --------------------------------------------------------------------------------

def test_ids_depend_on_every_part_and_on_order():
    assert features.digest_of("a", (1, 2)) == features.digest_of("a", (1, 2))
    assert features.digest_of("a", (1, 2)) != features.digest_of("a", (2, 1))
    rows = features.rows_id(CONFIG, ["d1", "d2"])
    assert rows == features.rows_id(CONFIG, ["d1", "d2"])
    assert rows != features.rows_id(CONFIG, ["d2", "d1"])
    assert rows != features.rows_id(BackboneConfig("demo-shapes", "none", (64, 64)), ["d1", "d2"])
    assert rows != features.rows_id(BackboneConfig("demo-shapes", "pretrained", (64, 64), precision="bfloat16"), ["d1", "d2"])
    assert features.labels_id(["a", None]) != features.labels_id(["a", "b"]) != features.labels_id(None)
    assert exports.export_id(rows, ["k"], ["x.png"], None) != exports.export_id(rows, ["k"], ["y.png"], None)


def test_widget_keys_are_safe_for_any_layer_name():
    assert features.widget_key("emb_chart", "model/inner block", "x/avg") == "emb_chart__model_inner_block__x_avg"


def test_remembered_choice_of_a_multiselect():
    def script():
        import streamlit as st

        from ui import state
        from ui.state import persistent

        def multiselect(label, options, default, key):  # records what the widget is handed
            return list(default)

        first = persistent(multiselect, "L", ["a", "b", "c"], key="k", default=["b"])
        state.remember("k", ["c", "a"])
        kept = persistent(multiselect, "L", ["a", "b", "c"], key="k", default=["b"])
        gone = persistent(multiselect, "L", ["x", "y"], key="k", default=["y", "z"])  # another backbone: its default
        state.remember("k", [])
        empty = persistent(multiselect, "L", ["a"], key="k", default=["a"])  # emptied on purpose stays empty
        st.session_state["out"] = (first, kept, gone, empty)

    at = AppTest.from_function(script, default_timeout=30)
    at.run()
    assert not at.exception
    assert at.session_state["out"] == (["b"], ["c", "a"], ["y"], [])


# ---- which panels, which features --------------------------------------------------------------

def test_default_map_layers_spread_over_depth_and_include_the_last():
    assert features.default_map_layers(["b1", "b2", "b3", "b4"]) == ["b2", "b3", "b4"]
    assert features.default_map_layers(["b1", "b2", "b3"]) == ["b2", "b3"]
    assert features.default_map_layers(["b1", "b2"]) == ["b1", "b2"]
    assert features.default_map_layers(["only"]) == ["only"]
    many = ["stem"] + [f"b{i}" for i in range(1, 17)]
    picked = features.default_map_layers(many)
    assert picked == ["b5", "b10", "b16"] and picked[-1] == many[-1]


def test_panel_keys_are_layer_major_and_capped():
    keys, dropped = features.panel_keys(["l1", "l2"], ["avg", "max"])
    assert keys == ["l1/avg", "l1/max", "l2/avg", "l2/max"] and dropped == 0
    keys, dropped = features.panel_keys([f"l{i}" for i in range(5)], list(features.POOLING_CHOICES))
    assert len(keys) == features.PANEL_LIMIT == 12 and dropped == 25 - 12
    assert features.grid_columns(3, 2) == 2 and features.grid_columns(3, 1) == 3 and features.grid_columns(1, 5) == 3


def test_feature_requests_share_one_pass_when_it_fits():
    table = _table()
    blocks = ["b1_pool", "b2_pool"]
    # per image: (8 + 16) channels × (1 + 1 + 1 + 2) poolings × 4 bytes = 480 bytes
    assert features.estimate_bytes(table, blocks, ("avg", "max", "gem", "avgmax"), 10) == 4800
    assert features.estimate_bytes(table, ["b2_pool"], ["flatten"], 2) == 2 * 16 * 16 * 16 * 4
    shared = (("b1_pool", "b2_pool"), ("avg", "max", "gem", "avgmax"))
    # any global pooling of block layers → the same superset call, in depth / canonical order
    assert features.feature_requests(table, blocks, ["b2_pool"], ["max"], 10) == [shared]
    assert features.feature_requests(table, blocks, ["b2_pool", "b1_pool"], ["gem", "avg"], 10) == [shared]
    # flatten gets a call of its own, for the chosen layers only
    assert features.feature_requests(table, blocks, ["b2_pool"], ["avg", "flatten"], 10) == [
        shared, (("b2_pool",), ("flatten",))]
    assert features.feature_requests(table, blocks, ["b2_pool"], ["flatten"], 10) == [(("b2_pool",), ("flatten",))]
    # over the budget, or a layer that is not a block output → exactly what was chosen
    assert features.feature_requests(table, blocks, ["b2_pool"], ["max", "avg"], 10, budget=100) == [
        (("b2_pool",), ("avg", "max"))]
    assert features.feature_requests(table, blocks, ["b2_conv", "b1_pool"], ["avg"], 10) == [
        (("b1_pool", "b2_conv"), ("avg",))]
    assert features.feature_requests(table, blocks, [], ["avg"], 10) == []


def test_flatten_over_the_budget_is_refused_before_any_extraction():
    table = _table()
    many = [None] * 20_000  # 20,000 × 32×32×8 floats × 4 bytes = 625 MiB of flatten vectors
    fetch = features.fetch_features(table, ["b1_pool", "b2_pool"], ["b1_pool"], ["flatten"], images=many, config=CONFIG)
    assert fetch.keys == [] and list(fetch.skipped) == ["b1_pool/flatten"]
    assert "625 MiB, over the 512 MiB limit" in fetch.skipped["b1_pool/flatten"]


# ---- tooltip thumbnails ------------------------------------------------------------------------

def _decode_url(url: str) -> Image.Image:
    header, data = url.split(",", 1)
    assert header.startswith("data:image/") and header.endswith(";base64")
    return Image.open(io.BytesIO(base64.b64decode(data)))


def test_thumbnail_data_urls_are_small_images():
    flat = np.zeros((96, 64, 3), np.uint8)
    flat[20:60, 10:50] = (250, 40, 40)
    url = charts.thumbnail_data_url(flat)
    assert url.startswith("data:image/png;base64,")
    im = _decode_url(url)
    assert max(im.size) == charts.THUMB_PX == 48 and im.size == (32, 48)  # aspect kept
    assert np.asarray(im.convert("RGB"))[24, 16].tolist() == [250, 40, 40]

    noisy = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    url = charts.thumbnail_data_url(noisy)
    assert url.startswith("data:image/jpeg;base64,")  # a photo-like image: JPEG is far smaller
    assert len(url) < 4000 and _decode_url(url).size == (48, 48)

    gray = charts.thumbnail_data_url(np.full((10, 10), 128, np.uint8))  # 2-D input works too
    assert _decode_url(gray).mode == "RGB"


def test_tooltip_budget():
    urls = ["x" * 1000] * 100
    assert charts.tooltip_images_fit(urls, 6, budget=600_000)
    assert not charts.tooltip_images_fit(urls, 7, budget=600_000)
    thumbs = [np.random.default_rng(i).integers(0, 256, (64, 64, 3), dtype=np.uint8) for i in range(4)]
    digests = [f"budget-{i}" for i in range(4)]
    urls48, size = charts.tooltip_thumbnails(digests, thumbs, [3, 0], 2)
    assert size == 48 and len(urls48) == 2 and urls48[0] == charts.thumbnail_data_url(thumbs[3])
    one48 = sum(len(u) for u in urls48)
    urls32, size = charts.tooltip_thumbnails(digests, thumbs, [3, 0], 2, budget=2 * one48 - 1)
    assert size == 32 and sum(len(u) for u in urls32) < one48  # smaller thumbnails before none at all
    assert charts.tooltip_thumbnails(digests, thumbs, [3, 0], 2, budget=10) == (None, 0)


# ---- maps --------------------------------------------------------------------------------------

def test_map_frame_and_scatter_spec():
    coords = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]], np.float32)
    urls = [charts.thumbnail_data_url(np.zeros((8, 8, 3), np.uint8))] * 3
    frame = charts.map_frame(coords, ["a.png", "<b>.png", "c.png"], ["cat", None, "dog"], urls)
    assert list(frame.columns) == ["idx", "x", "y", "name", "label", "image"]
    assert frame["idx"].tolist() == [0, 1, 2] and frame["label"].tolist() == ["cat", "", "dog"]
    assert frame["name"][1] == "<b>.png"  # as typed: vega-tooltip escapes HTML itself
    with pytest.raises(ValueError):
        charts.map_frame(coords, ["a"], None)

    spec = charts.scatter_chart(frame, method="pca", classes=["cat", "dog"], explained=(0.5, 0.25), select="box").to_dict()
    enc = spec["encoding"]
    titles = [t.get("title") for t in enc["tooltip"]]
    assert titles == ["image", "file", "class"]  # the "image" key is drawn as an <img> by vega-tooltip
    assert enc["color"]["scale"]["domain"] == ["cat", "dog", ""]
    assert enc["x"]["title"] == "PC1 (50%)" and enc["y"]["title"] == "PC2 (25%)"
    assert [p["name"] for p in spec["params"]] == ["box"]
    assert spec["params"][0]["select"]["type"] == "interval"
    data = next(iter(spec["datasets"].values()))
    assert data[0]["image"] == urls[0] and len(data) == 3

    click = charts.scatter_chart(frame, method="tsne", color_by="none", select="click").to_dict()
    assert click["params"][0]["name"] == "pick" and click["params"][0]["select"]["fields"] == ["idx"]
    assert click["encoding"]["color"] == {"value": charts.PRIMARY}
    assert click["encoding"]["x"]["title"] == "t-SNE 1"

    plain = charts.scatter_chart(charts.map_frame(coords, ["a", "b", "c"])).to_dict()
    assert [t.get("title") for t in plain["encoding"]["tooltip"]] == ["file"]  # no thumbnails, no labels
    legend = charts.legend_chart(["cat", "dog"], unlabelled=True).to_dict()
    assert legend["encoding"]["color"]["scale"]["domain"] == ["cat", "dog", ""]


def test_selected_indices_from_point_and_interval_selections():
    frame = charts.map_frame(np.array([[0, 0], [1, 1], [5, 5], [0.5, 4]]), list("abcd"))
    assert charts.selected_indices(frame, None) == []
    assert charts.selected_indices(frame, {"selection": {}}) == []
    assert charts.selected_indices(frame, {"selection": {"box": {"x": [2, -1], "y": [-1, 2]}}}) == [0, 1]
    assert charts.selected_indices(frame, {"selection": {"box": {"x": [-1, 6], "y": [3, 6]}}}) == [2, 3]
    assert charts.selected_indices(frame, {"selection": {"pick": [{"idx": 3}, {"idx": 1}, {"idx": 3}]}}) == [1, 3]
    # stale or malformed selections are ignored, never an exception
    assert charts.selected_indices(frame, {"selection": {"pick": [{"idx": 99}, {"idx": True}, {}, "x"]}}) == []
    assert charts.selected_indices(frame, {"selection": {"box": {"x": ["a", "b"], "y": [0, 1]}}}) == []


def test_variance_text():
    X = np.random.default_rng(0).normal(size=(200, 3)) * [10.0, 3.0, 1.0]
    emb = pca_2d(X)
    a, b = emb.explained_variance
    assert charts.variance_text(emb) == f"PC1 {a:.0%} · PC2 {b:.0%} of the variance ({a + b:.0%} together)"


def test_embedding_and_scores_match_the_core():
    X, labels = _blobs()
    emb = features.embedding("rows-test", "k/avg", "pca", (), X)
    np.testing.assert_allclose(emb.coords, pca_2d(X).coords, rtol=1e-5, atol=1e-5)
    from extractor.scoring import silhouette

    assert features.feature_silhouette("rows-test", features.labels_id(labels), "k/avg", X, labels) == pytest.approx(silhouette(X, labels))
    assert features.feature_silhouette("rows-test", features.labels_id(None), "k/avg", X, [None] * len(X)) is None
    assert features.method_params("tsne", perplexity=12) == (("perplexity", 12.0),)
    assert features.method_params("pca") == ()


def test_overlap_table_and_chart():
    X, _ = _blobs()
    feats = {"a/avg": X, "a/max": X * 3.0, "b/avg": np.random.default_rng(1).normal(size=X.shape)}
    m = features.overlap_table("rows-overlap", tuple(feats), 5, feats)
    pd.testing.assert_frame_equal(m, overlap_matrix(feats, k=5))
    assert m.loc["a/avg", "a/max"] == 1.0  # scaling changes no cosine neighbour
    long = charts.overlap_long(m)
    assert len(long) == 9 and long.iloc[1].tolist() == ["a/avg", "a/max", 1.0]
    spec = charts.overlap_chart(m).to_dict()
    assert spec["autosize"]["type"] == "pad"
    assert spec["layer"][0]["encoding"]["x"]["sort"] == list(feats)


def test_neighbour_table_is_cosine():
    X = np.array([[1, 0], [1, 0.1], [0, 1], [-1, 0]], np.float32)
    found = features.neighbour_table(X, 0, 2)
    assert [i for i, _ in found] == [1, 2] and found[0][1] == pytest.approx(1 / np.sqrt(1.01), rel=1e-5)


# ---- layer selection ---------------------------------------------------------------------------

def _sweep_table(labels=True) -> pd.DataFrame:
    X, y = _blobs(dim=8)
    rng = np.random.default_rng(2)
    feats = {
        "b1/avg": rng.normal(size=X.shape).astype(np.float32),
        "b1/max": rng.normal(size=X.shape).astype(np.float32),
        "b2/avg": X,
        "b2/max": np.hstack([X, X]),
    }
    return score_sweep(feats, y if labels else None, depths={"b1": 1, "b2": 5}, costs_ms={"b1": 0.5, "b2": 2.0},
                       k=3, folds=3)


def test_score_sweep_adds_time_and_keeps_the_core_scores():
    table = _sweep_table()
    assert table["ms_per_image"].tolist() == pytest.approx([0.5, 0.5, 2.0, 2.0])
    assert table.loc[table["layer"] == "b2", "linear_acc"].min() == 1.0
    assert table.loc[table["layer"] == "b1", "knn_acc"].max() < 0.7
    assert charts.metric_options(table) == ["linear_acc", "knn_acc", "silhouette", "effective_rank", "ms_per_image", "dim"]
    rec = recommend(table)
    assert (rec.layer, rec.pooling) == ("b2", "avg")

    unlabelled = _sweep_table(labels=False)
    assert unlabelled["linear_acc"].isna().all() and recommend(unlabelled) is None
    assert charts.metric_options(unlabelled) == ["effective_rank", "ms_per_image", "dim"]
    shown = charts.display_table(unlabelled)
    assert "linear_acc" not in shown and "effective_rank" in shown and "problem" not in shown


def test_heatmap_and_curve_specs_follow_depth_and_pooling_order():
    table = _sweep_table().iloc[::-1].reset_index(drop=True)  # rows in any order
    heat = charts.metric_heatmap(table, "linear_acc", best=("b2", "avg")).to_dict()
    rect, text, outline = heat["layer"]
    assert rect["encoding"]["y"]["sort"] == ["b1", "b2"] and rect["encoding"]["x"]["sort"] == ["avg", "max"]
    assert rect["encoding"]["color"]["scale"]["domain"] == [0.0, 1.0]
    data = heat["datasets"][rect["data"]["name"]] if "data" in rect else next(iter(heat["datasets"].values()))
    assert {row["text"] for row in data} >= {"100%"}
    assert outline["mark"]["stroke"] and heat["autosize"]["type"] == "pad" and heat["width"] == {"step": 62}
    curve = charts.depth_curve(table, "knn_acc").to_dict()
    assert curve["encoding"]["x"]["sort"] == ["b1", "b2"] and curve["encoding"]["color"]["field"] == "pooling"
    charts.metric_heatmap(table, "effective_rank").to_dict()  # unbounded metrics work too
    charts.metric_heatmap(table, "dim").to_dict()


def test_recommendation_markdown_escapes_names():
    rec = Recommendation("block_4*x", "gem", 0.9, "linear_acc", "b3", "avg", 64, 0.89, "because_reasons", 128)
    text = charts.recommendation_markdown(rec, lambda s: s.replace("_", "\\_").replace("*", "\\*"))
    assert text.startswith("Use **block\\_4\\*x** with **gem** pooling (128 dimensions).")
    assert text.endswith("because\\_reasons")


def test_size_text():
    assert exports.size_text(999) == "999 bytes"
    assert exports.size_text(35_840) == "36 kB"
    assert exports.size_text(12_500_000) == "12.5 MB"


# ---- export ------------------------------------------------------------------------------------

def test_export_defaults_precedence():
    table = _sweep_table()
    result = SweepReport(table, recommend(table), n_images=30, seconds=1.0, layers=["b1", "b2"], poolings=["avg", "max"],
                         signature="sig")
    blocks, layers = ["b1", "b2"], ["b1c", "b1", "b2c", "b2"]
    assert exports.export_defaults({"layers": ["b1"], "poolings": ["max"]}, result, blocks, layers)[:2] == (["b1"], ["max"])
    assert exports.export_defaults(None, result, blocks, layers)[:2] == (["b2"], ["avg"])
    assert exports.export_defaults({"layers": ["gone"], "poolings": ["max"]}, None, blocks, layers)[:2] == (["b2"], ["avg"])
    assert exports.export_defaults(None, None, [], layers)[:2] == (["b2"], ["avg"])


def test_feature_files_round_trip():
    X, labels = _blobs()
    feats = {"b2/avg": X, "b2/max": X[:, :3] * 2}
    names = [f"img_{i}.png" for i in range(len(X))]
    eid = exports.export_id("rows", list(feats), names, labels)
    for blob in (exports.npz_bytes(eid, feats, names, labels), exports.parquet_bytes(eid, feats, names, labels)):
        back, back_names, back_labels = read_features(blob)
        assert back_names == names and back_labels == labels
        assert list(back) == list(feats)
        for key in feats:
            np.testing.assert_array_equal(back[key], feats[key].astype(np.float32))
    plain = exports.export_id("rows", list(feats), names, None)
    npz = np.load(io.BytesIO(exports.npz_bytes(plain, feats, names, None)))  # without labels, without pickle
    assert "labels" not in npz.files and npz["b2/avg"].shape == X.shape

    data, why = exports.csv_bytes_or_message(eid, feats, names, labels)
    assert why is None
    lines = data.decode().splitlines()
    assert lines[0].startswith("paths,labels,b2/avg_0") and len(lines) == len(X) + 1

    wide = {"big/flatten": np.zeros((10, CSV_MAX_CELLS // 10 + 1), np.float32)}
    data, why = exports.csv_bytes_or_message(exports.export_id("rows", list(wide), names[:10], None), wide, names[:10], None)
    assert data is None and ".npz or .parquet" in why


def test_coords_projector_and_reproduce_files():
    X, labels = _blobs()
    names = [f"=cmd|{i}.png" if i == 0 else f"img_{i}.png" for i in range(len(X))]
    coords = {"b2/avg pca": pca_2d(X).coords}
    csv = exports.coords_csv_bytes("eid-coords", coords, names, labels).decode().splitlines()
    assert csv[0] == "paths,labels,b2/avg pca_x,b2/avg pca_y"
    assert csv[1].startswith("'=cmd|0.png,a,")  # a formula-looking name is defused

    thumbs = [np.full((20, 20, 3), 10 * i % 255, np.uint8) for i in range(len(X))]
    blob = exports.projector_bytes("eid-proj", X, names, labels, thumbs)
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        assert {"vectors.tsv", "metadata.tsv", "sprite.png", "projector_config.json"} <= set(zf.namelist())
        assert len(zf.read("vectors.tsv").decode().splitlines()) == len(X)
        assert zf.read("metadata.tsv").decode().splitlines()[0] == "name\tlabel"

    blob, script = exports.reproduce_files(BackboneConfig("demo-shapes", "/srv/secret/dir/my.weights.h5", (64, 64)),
                                      ["block4_pool"], ["gem"])
    cfg = json.loads(blob)
    assert cfg["weights"] == "my.weights.h5" and cfg["layers"] == ["block4_pool"] and cfg["poolings"] == ["gem"]
    assert "/srv/secret" not in script and "/srv/secret" not in blob.decode()
    ast.parse(script)
    assert "LAYERS = ['block4_pool']" in script and "POOLINGS = ['gem']" in script
    assert set(exports.FILE_NAMES.values()) >= {"layer_explorer_features.npz", "extract_features.py"}


def test_reproduce_script_of_an_uploaded_model_names_its_file(monkeypatch):
    """The session's model goes into the script by its file name (a name load_backbone takes), beside the script."""
    from types import SimpleNamespace

    from extractor.export import ExportError, reproduce_config
    from ui import custom_model

    monkeypatch.setattr(custom_model, "held_for", lambda name: SimpleNamespace(file_name="../up/My Net.keras"))
    config = BackboneConfig("custom:0123456789abcdef", "upload", (64, 64))
    blob, script = exports.reproduce_files(config, ["conv2"], ["avg"])
    cfg = json.loads(blob)
    assert cfg["backbone"] == "My_Net.keras" and cfg["weights"] is None
    assert "BACKBONE = 'My_Net.keras'" in script and "beside" in script and "../up" not in script
    assert "BACKBONE = 'My_Net.keras'  # your model file: put My_Net.keras in this script's folder\n" in script
    ast.parse(script)
    with pytest.raises(ExportError, match="resize must be one of"):
        reproduce_config(backbone="vgg16", weights=None, layers=["b"], poolings=["avg"], resize="squash",
                         precision="float32", input_size=(64, 64))


def test_maps_export_lists_pca_and_computed_maps_and_says_what_failed():
    """ui.exports.maps_export (moved out of the Export page): PCA of every key, t-SNE maps computed for
    these rows only, the parameters really used, and a Failure for a key that can't be mapped."""

    def script():
        import numpy as np
        import streamlit as st

        from ui import exports, features

        X = np.random.default_rng(0).normal(size=(12, 4)).astype(np.float32)
        selected = {"b1/avg": X, "b2/avg": np.ones((12, 3), np.float32)}
        ex = exports.ExportSet(list(selected), selected, [f"i{i}.png" for i in range(12)], None, "rows", "eid", [])
        st.session_state[features.COMPUTED_MAPS_KEY] = {("rows", "b1/avg", "tsne", (("perplexity", 30.0),)),
                                                        ("other rows", "b1/avg", "umap", ())}
        maps = exports.maps_export(ex)
        st.session_state["out"] = (sorted(maps.coords), maps.listed, [(f.name, f.kind) for f in maps.problems],
                                   {k: v.shape for k, v in maps.coords.items()})

    at = AppTest.from_function(script, default_timeout=120)
    at.run()
    assert not at.exception
    columns, listed, problems, shapes = at.session_state["out"]
    assert columns[0] == "b1/avg pca" and len(columns) == 2 and columns[1].startswith("b1/avg tsne perplexity=")
    assert columns[1] != "b1/avg tsne perplexity=30"  # lowered for 12 images, and the file says so
    assert listed[0] == "b1/avg: PCA" and listed[1].startswith("b1/avg: t-SNE perplexity=")
    assert problems == [("b2/avg", "configuration")]  # all vectors identical: no map, and why
    assert set(shapes.values()) == {(12, 2)}
