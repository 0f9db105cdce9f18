"""The Embeddings, Layer-selection and Export pages through AppTest.

Numbers on the pages are checked against the core run directly (FeatureExtractor, PCA,
silhouette, k-NN); edge cases (two images, copies of one image, no labels, CSV too large) must
give a clear message and never an exception. Default set: the shapes demo through demo-shapes
(64 px, 10 images per class), small enough for two shared cores.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from app_support import assert_clean, open_app, png, texts
from PIL import Image
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest

from extractor import FeatureExtractor, load_backbone
from extractor.demo import load_demo_set
from extractor.export import read_features
from extractor.reduce import pca_2d
from extractor.scoring import knn_accuracy, silhouette

EMB, LS, EX = "pages/embeddings.py", "pages/layer_selection.py", "pages/export.py"


def _charts(at: AppTest) -> list:
    return at.get("vega_lite_chart")


def _upload(at: AppTest, files: list[tuple[str, bytes]]) -> None:
    at.radio(key="sb_source").set_value("upload")
    at.run()
    at.file_uploader(key="sb_upload").set_value([(name, data, "image/png") for name, data in files])
    at.run()
    assert_clean(at)


def _demo_features(layer: str, poolings=("avg",), per_class: int = 10):
    demo = load_demo_set("shapes", per_class=per_class, size=64)
    fx = FeatureExtractor(load_backbone("demo-shapes"), [layer], list(poolings))
    return fx.extract(demo.images).features, demo


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


# ---- Embeddings --------------------------------------------------------------------------------

def test_embeddings_default_matches_the_core():
    at = open_app(EMB)
    assert at.title[0].value == "Embeddings"
    assert at.multiselect(key="emb_layers__demo-shapes").value == ["block2_pool", "block3_pool", "block4_pool"]
    assert at.multiselect(key="emb_poolings").value == ["avg", "max"]
    assert len(_charts(at)) >= 1 + 6 + 1  # legend, 3 layers × 2 poolings, overlap heatmap
    captions = texts(at.caption)

    feats, demo = _demo_features("block4_pool", ("avg", "max"))
    X = feats["block4_pool/avg"]
    emb = pca_2d(X)
    a, b = emb.explained_variance
    sil = silhouette(X, demo.labels)
    expected = f"PC1 {a:.0%} · PC2 {b:.0%} of the variance ({a + b:.0%} together). Silhouette {sil:.2f} (cosine"
    assert any(c.startswith(expected) for c in captions), (expected, captions)
    assert sil > 0.5, "block4 of the trained demo CNN separates the shapes"

    # neighbours: the first image under block4_pool/max, checked against cosine similarity directly
    at.selectbox(key="emb_nn_config").set_value("block4_pool/max")
    at.run()
    assert_clean(at)
    U = feats["block4_pool/max"] / np.linalg.norm(feats["block4_pool/max"], axis=1, keepdims=True)
    sims = U @ U[0]
    sims[0] = -np.inf
    top = np.argsort(-sims, kind="stable")[:6]
    images = [img for img in at.get("image") if any(c.startswith("query · ") for c in getattr(img, "captions", []))]
    assert images, "the neighbour strip is shown"
    shown = images[0].captions[1:]
    assert [c.split(" · ")[1].replace("\\", "") for c in shown] == [demo.names[i].split("/")[-1] for i in top]
    assert [float(c.split(" · ")[0].removeprefix("cos ")) for c in shown] == pytest.approx(sims[top], abs=6e-4)

    # the overlap matrix is there, with the random baseline explained
    assert any("nearest neighbours" in m and "unrelated" in m for m in texts(at.markdown))


def test_embeddings_captions_say_when_the_weights_are_random():
    """Issue 10 item 4: the maps' caption carries ui.config.weights_caveat with random weights, not otherwise."""
    from ui.config import BackboneConfig, weights_caveat

    caveat = weights_caveat(BackboneConfig("demo-shapes", "none", (64, 64)))
    at = open_app(EMB)
    assert not any("Random weights" in c for c in texts(at.caption)), "pretrained: no caveat"
    at.radio(key="sb_weights").set_value("random")
    at.run()
    assert_clean(at)
    assert any(c.endswith(caveat) and "images through demo" in c for c in texts(at.caption)), texts(at.caption)


def test_display_options_and_switching_poolings_never_rerun_the_network(forward_counter, monkeypatch):
    import ui.features as features

    embeds = {"n": 0}
    original = features.embed

    def counting(X, method="pca", **kw):
        embeds["n"] += 1
        return original(X, method, **kw)

    monkeypatch.setattr(features, "embed", counting)
    at = open_app(EMB)
    passes, maps = forward_counter["n"], embeds["n"]
    at.slider(key="emb_point_size").set_value(150)
    at.run()
    at.radio(key="emb_select").set_value("click")
    at.run()
    at.radio(key="emb_color").set_value("none")
    at.run()
    assert_clean(at)
    assert (forward_counter["n"], embeds["n"]) == (passes, maps), "a display option recomputed features or maps"
    # another pooling or layer: same cached forward pass (all block layers × global poolings at once)
    at.multiselect(key="emb_poolings").set_value(["gem", "avgmax"])
    at.run()
    at.multiselect(key="emb_layers__demo-shapes").set_value(["block1_pool", "block4_pool"])
    at.run()
    assert_clean(at)
    assert forward_counter["n"] == passes
    assert len(_charts(at)) == 4 + 1  # colour "none": no legend; 2 × 2 maps and the overlap heatmap


def test_tsne_with_few_images_lowers_the_perplexity(downloads):
    at = open_app()
    at.slider(key="sb_per_class").set_value(2)  # 14 images
    at.run()
    at.switch_page(EMB).run()
    assert_clean(at)
    at.radio(key="emb_method").set_value("tsne")
    at.run()
    assert_clean(at)
    assert any("Compute t-SNE maps" in t for t in texts(at.info)), "t-SNE waits for its button"
    at.multiselect(key="emb_layers__demo-shapes").set_value(["block4_pool"])
    at.run()
    at.button(key="emb_compute").click()
    at.run()
    assert_clean(at)
    captions = " ".join(texts(at.caption))
    assert "Perplexity lowered from 30 to 4.3 because there are only 14 images." in captions
    assert not any("Compute t-SNE maps" in t for t in texts(at.info))
    assert len(_charts(at)) >= 1 + 2
    # the t-SNE maps computed here are offered on the Export page, next to PCA
    at.switch_page(EX).run()
    assert_clean(at)
    header = downloads["layer_explorer_maps.csv"].decode().splitlines()[0]
    assert header == ("paths,labels,block4_pool/avg pca_x,block4_pool/avg pca_y,"
                      # the perplexity really used (issue 10: the name said 30 when it was lowered)
                      "block4_pool/avg tsne perplexity=4.33_x,block4_pool/avg tsne perplexity=4.33_y")


def test_two_images_give_one_page_message_and_hide_what_means_nothing():
    at = open_app()
    rng = np.random.default_rng(0)
    _upload(at, [(f"photo_{i}.png", png(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))) for i in range(2)])
    at.switch_page(EMB).run()
    assert_clean(at)
    warnings = texts(at.warning)
    assert len(warnings) == 1 and "at least 3 images; there are 2" in warnings[0], warnings  # one, not one per map
    assert len(_charts(at)) == 0  # no map from nothing, and no agreement matrix that can only read 100 %
    assert not any("agree" in t for t in texts(at.subheader))
    captions = " ".join(texts(at.caption))
    assert "The image most similar to the query" in captions and "The 1 images" not in captions
    # t-SNE's button computes nothing here, so no status line claims maps were computed
    at.radio(key="emb_method").set_value("tsne").run()
    at.button(key="emb_compute").click().run()
    assert_clean(at)
    assert not [s for s in at.get("expandable") if "computed" in str(getattr(s.proto, "label", ""))]


def test_k_and_its_text_agree_with_few_images():
    at = open_app()
    rng = np.random.default_rng(0)
    _upload(at, [(f"photo_{i}.png", png(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))) for i in range(5)])
    at.switch_page(EMB).run()
    assert_clean(at)
    k = [s for s in at.slider if s.label == "Neighbours per image (k)"]
    assert k and k[0].max == 3 and k[0].value == 3, [(s.label, s.max, s.value) for s in at.slider]
    assert any("3 nearest neighbours" in m for m in texts(at.markdown))


def test_collapsed_features_show_the_health_message_not_a_silhouette(monkeypatch):
    # As mobilenetv2 with random weights does: pooled values around 1e-12.
    from ui import features

    real = features.fetch_features

    def vanishing(*args, **kwargs):
        fetch = real(*args, **kwargs)
        for key in fetch.features.features:
            fetch.features.features[key] = fetch.features.features[key] * np.float32(1e-12)
        return fetch

    monkeypatch.setattr(features, "fetch_features", vanishing)
    for cached in (features.feature_health, features.embedding, features.feature_silhouette):
        cached.clear()  # keyed by rows id: the same images' healthy features may be cached from another test
    at = open_app(EMB)
    captions = " ".join(texts(at.caption))
    assert "Silhouette" not in captions
    warnings = texts(at.warning)
    assert len(warnings) == 6 and all("has collapsed" in w for w in warnings), warnings


def test_copies_of_one_image_give_a_clear_message():
    # Byte-identical uploads are merged into one, so: the same pixels in three lossless formats.
    pixels = Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8))
    files = []
    for fmt, ext in (("PNG", "png"), ("BMP", "bmp"), ("TIFF", "tif")):
        buf = io.BytesIO()
        pixels.save(buf, format=fmt)
        files.append((f"copy.{ext}", buf.getvalue()))
    at = open_app()
    _upload(at, files)
    assert "3 images" in " ".join(texts(at.sidebar.caption))
    at.switch_page(EMB).run()
    assert_clean(at)
    warnings = texts(at.warning)
    # the health check's words (it names the possible causes: copies of one image, or the layer)
    assert warnings and all("same vector for every image" in w and "copies of one image" in w for w in warnings), warnings


# ---- Layer selection ---------------------------------------------------------------------------

def test_sweep_on_shapes_recommends_a_deep_layer_and_feeds_export(downloads):
    at = open_app(LS)
    assert at.multiselect(key="ls_poolings").value == ["avg", "max", "gem", "avgmax"]
    assert not at.success
    at.button(key="ls_run").click()
    at.run()
    assert_clean(at)
    table = at.dataframe[0].value
    assert len(table) == 4 * 4
    best = table.groupby("layer")["linear_acc"].max()
    assert best["block4_pool"] > best["block1_pool"] + 0.5, best
    assert best["block4_pool"] >= 0.9
    assert (table["ms_per_image"] > 0).all()

    # the k-NN accuracy on the page is the core's, on features from FeatureExtractor directly
    feats, demo = _demo_features("block4_pool", ("avg",))
    row = table[(table["layer"] == "block4_pool") & (table["pooling"] == "avg")].iloc[0]
    assert row["knn_acc"] == pytest.approx(knn_accuracy(feats["block4_pool/avg"], demo.labels))

    success = texts(at.success)
    assert len(success) == 1 and "block4\\_pool" in success[0] and "linear\\-probe accuracy" in success[0]
    assert len(_charts(at)) == 2  # heatmap and curve
    at.radio(key="ls_metric").set_value("silhouette")
    at.run()
    assert_clean(at)
    assert len(_charts(at)) == 2

    # the result survives a trip to another page and back
    at.switch_page(EMB).run()
    at.switch_page(LS).run()
    assert_clean(at)
    assert len(texts(at.success)) == 1

    # "Use this in Export" opens Export with that choice
    at.button(key="ls_use_best").click()
    at.run()
    assert_clean(at)
    assert at.title[0].value == "Export"
    assert at.multiselect(key="ex_layers__demo-shapes").value == ["block4_pool"]
    pooling = at.multiselect(key="ex_poolings").value
    assert len(pooling) == 1
    back, names, labels = read_features(downloads["layer_explorer_features.npz"])
    assert list(back) == [f"block4_pool/{pooling[0]}"] and names == demo.names and labels == demo.labels


def test_unlabelled_uploads_get_unsupervised_scores_and_a_hint():
    at = open_app()
    rng = np.random.default_rng(2)
    _upload(at, [(f"img_{i}.png", png(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))) for i in range(6)])
    at.switch_page(LS).run()
    assert_clean(at)
    infos = " ".join(texts(at.info))
    assert "no labels" in infos.lower() and "one folder per class" in infos
    at.button(key="ls_run").click()
    at.run()
    assert_clean(at)
    assert not at.success
    assert any("No accuracy scores" in t for t in texts(at.info))
    table = at.dataframe[0].value
    assert "linear_acc" not in table.columns and "effective_rank" in table.columns and len(table) == 16
    assert at.radio(key="ls_metric").options[0] == "Effective rank"


# ---- Export ------------------------------------------------------------------------------------

def test_export_default_downloads_read_back(downloads):
    at = open_app(EX)
    assert at.multiselect(key="ex_layers__demo-shapes").value == ["block4_pool"]
    assert at.multiselect(key="ex_poolings").value == ["avg"]
    labels = [b.label for b in at.get("download_button")]
    assert labels == ["Features (.npz)", "Features (.parquet)", "Features (.csv)", "2-D coordinates (.csv)",
                      "Projector bundle (.zip)", "Settings (config.json)", "Script (extract_features.py)"]
    feats, demo = _demo_features("block4_pool", ("avg",))
    for name in ("layer_explorer_features.npz", "layer_explorer_features.parquet"):
        back, names, back_labels = read_features(downloads[name])
        assert names == demo.names and back_labels == demo.labels
        np.testing.assert_allclose(back["block4_pool/avg"], feats["block4_pool/avg"], rtol=1e-4, atol=1e-5)
    npz = np.load(io.BytesIO(downloads["layer_explorer_features.npz"]))  # no pickle needed
    assert npz["block4_pool/avg"].shape == (70, 128)
    header = downloads["layer_explorer_features.csv"].decode().splitlines()[0]
    assert header.startswith("paths,labels,block4_pool/avg_0,")
    coords = downloads["layer_explorer_maps.csv"].decode().splitlines()
    assert coords[0] == "paths,labels,block4_pool/avg pca_x,block4_pool/avg pca_y" and len(coords) == 71
    script = downloads["extract_features.py"].decode()
    compile(script, "extract_features.py", "exec")
    assert "LAYERS = ['block4_pool']" in script and script.strip() in at.code[0].value.strip()
    assert b'"backbone": "demo-shapes"' in downloads["layer_explorer_config.json"]


def test_export_refuses_csv_that_is_too_big_and_offers_the_others(downloads):
    at = open_app()
    at.slider(key="sb_per_class").set_value(20)  # 140 images × 16,384 flatten values > 2 M cells
    at.run()
    at.switch_page(EX).run()
    at.multiselect(key="ex_layers__demo-shapes").set_value(["block1_pool"])
    at.multiselect(key="ex_poolings").set_value(["flatten"])
    at.run()
    assert_clean(at)
    labels = [b.label for b in at.get("download_button")]
    assert "Features (.csv)" not in labels and "Features (.npz)" in labels and "Features (.parquet)" in labels
    assert any(".npz or .parquet" in t for t in texts(at.info))
    back, names, _ = read_features(downloads["layer_explorer_features.npz"])
    assert back["block1_pool/flatten"].shape == (140, 32 * 32 * 16)
