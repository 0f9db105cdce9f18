"""Class evidence, Grad-CAM / Grad-CAM++, receptive fields and the explain CLI."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from extractor import backbone_from_model, feature_layers, load_backbone
from extractor.__main__ import main
from extractor.demo import _shape_sdf, make_shapes
from extractor.explain import (
    GradientUnavailableError,
    NoClassifier,
    NoClassifierError,
    UnknownClassError,
    class_evidence,
    default_cam_layer,
    find_classifier,
    grad_cam,
)
from extractor.layers import UnknownLayerError
from extractor.receptive_field import ReceptiveField, cell_region, receptive_fields

OUTLINE_CLASSES = ("circle", "square", "triangle", "star", "cross")


@pytest.fixture(scope="module")
def demo():
    backbone = load_backbone("demo-shapes")
    return backbone, find_classifier(backbone)


def _shapes_with_masks(n_per_class: int, size: int = 64, seed: int = 3):
    """Shapes drawn like the demo set's (its own outlines), on a two-colour ramp, with their masks."""
    rng = np.random.default_rng(seed)
    px = np.arange(size) + 0.5
    gx, gy = np.meshgrid(px, px)
    images, masks, labels = [], [], []
    for cls in OUTLINE_CLASSES:
        for _ in range(n_per_class):
            radius = rng.uniform(0.22, 0.36) * size
            cx, cy = rng.uniform(radius * 0.9, size - radius * 0.9, 2)
            theta = rng.uniform(0, 2 * np.pi)
            dx, dy = (gx - cx) / radius, (gy - cy) / radius
            u = np.cos(theta) * dx + np.sin(theta) * dy
            v = -np.sin(theta) * dx + np.cos(theta) * dy
            sdf = _shape_sdf(cls, u[None], v[None], np.array([False]))[0] * radius
            alpha = np.clip(0.5 - sdf, 0, 1)[..., None]
            while True:
                fg, bg1, bg2 = rng.uniform(0, 255, (3, 3))
                if min(np.linalg.norm(fg - bg1), np.linalg.norm(fg - bg2)) > 120:
                    break
            ramp = (gx / size)[..., None]
            bg = bg1 * (1 - ramp) + bg2 * ramp
            img = bg * (1 - alpha) + fg * alpha + rng.normal(0, 4, (size, size, 3))
            images.append(np.clip(np.rint(img), 0, 255).astype(np.uint8))
            masks.append(sdf < 0)
            labels.append(cls)
    return np.stack(images), np.stack(masks), labels


def _grow(mask: np.ndarray, r: int) -> np.ndarray:
    """Binary dilation by a (2r+1)² square, in NumPy."""
    padded = np.pad(mask, r)
    out = np.zeros_like(mask)
    h, w = mask.shape
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            out |= padded[dy:dy + h, dx:dx + w]
    return out


# ------------------------------------------------------------------ class evidence


def test_demo_class_evidence_is_right_on_the_demo_set(demo):
    _, clf = demo
    ds = make_shapes(per_class=2, size=64, seed=11)
    ev = class_evidence(clf, np.stack(ds.images))
    assert ev.probabilities.shape == (14, 7)
    np.testing.assert_allclose(ev.probabilities.sum(axis=1), 1.0, atol=1e-4)
    accuracy = np.mean([ev.class_names[p] == label for p, label in zip(ev.predicted, ds.labels, strict=True)])
    assert accuracy >= 0.9
    top = ev.top(0, 3)
    assert len(top) == 3 and top[0][1] >= top[1][1] >= top[2][1]


def test_headless_and_random_backbones_say_why():
    for backbone in (load_backbone("vgg16", weights="none", input_size=32), load_backbone("demo-shapes", weights="none")):
        result = find_classifier(backbone)
        assert isinstance(result, NoClassifier) and result.name == backbone.name and "random" in result.reason
        with pytest.raises(NoClassifierError, match="No classifier"):
            class_evidence(result, np.zeros((1, *backbone.input_size, 3), np.uint8))
    import keras

    headless = backbone_from_model(keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(4, 3)]))
    result = find_classifier(headless)
    assert isinstance(result, NoClassifier) and "no classifier head" in result.reason


def test_imagenet_head_missing_from_cache_is_a_reason(monkeypatch, tmp_path):
    """ImageNet weights present without the top file: a NoClassifier naming the file, no download."""
    import dataclasses

    from extractor.backbones import WeightsInfo

    backbone = load_backbone("vgg16", weights="none", input_size=32)
    faked = dataclasses.replace(backbone, weights=WeightsInfo("imagenet", "ImageNet"), input_size=(224, 224))
    result = find_classifier(faked)
    assert isinstance(result, NoClassifier)
    assert "vgg16_weights_tf_dim_ordering_tf_kernels.h5" in result.reason and "Keras cache" in result.reason


# ------------------------------------------------------------------ Grad-CAM


def test_default_layer_is_the_last_activation_before_pooling(demo):
    backbone, _ = demo
    assert default_cam_layer(feature_layers(backbone.model)).name == "block4_relu2"
    resnet = feature_layers(load_backbone("resnet50", weights="none", input_size=64).model)
    assert default_cam_layer(resnet).name == "conv5_block3_out"


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_gradcam_points_at_the_shape(demo, method):
    _, clf = demo
    images, masks, labels = _shapes_with_masks(6)
    cam = grad_cam(clf, images, method=method)
    assert cam.layer == "block4_relu2" and cam.heatmaps.shape == (len(images), 64, 64)
    assert cam.heatmaps.dtype == np.float32 and cam.heatmaps.min() >= 0 and cam.heatmaps.max() <= 1
    cell = 64 // cam.cams.shape[1]  # one cell of the explained layer, in pixels (8)
    hits = []
    for heat, mask in zip(cam.heatmaps, masks, strict=True):
        y, x = np.unravel_index(np.argmax(heat), heat.shape)
        hits.append(bool(_grow(mask, cell)[y, x]))
    assert np.mean(hits) >= 0.8, f"{method}: max inside the shape for {np.mean(hits):.0%} of images"
    predicted = [clf.class_names[c] for c in cam.classes]
    assert np.mean([p == label for p, label in zip(predicted, labels, strict=True)]) >= 0.8


def test_gradcam_for_a_named_class_and_bad_requests(demo):
    _, clf = demo
    images = np.stack(make_shapes(per_class=1, size=64, seed=2).images[:2])
    cam = grad_cam(clf, images, layer="block3_relu2", class_="star")
    assert cam.classes == (clf.class_names.index("star"),) * 2 and cam.cams.shape[1:] == (16, 16)
    with pytest.raises(UnknownClassError, match="Did you mean star"):
        grad_cam(clf, images, class_="starr")
    with pytest.raises(UnknownLayerError, match="block4_relu2"):
        grad_cam(clf, images, layer="block4_relu9")


def _demo_weights_into(model, classifier_model):
    for layer in model.layers:
        if layer.weights:
            layer.set_weights(classifier_model.get_layer(layer.name).get_weights())


def test_nested_transfer_model_equals_flat(demo):
    """A base model inside a Sequential classifier gives the Grad-CAM of the same network built flat."""
    import keras

    from extractor import training

    _, flat = demo
    base = training.build_demo_cnn((64, 64, 3), name="base")
    _demo_weights_into(base, flat.model)
    base.trainable = False  # the usual transfer-learning set-up: a frozen base
    nested = keras.Sequential([keras.Input((64, 64, 3)), base, keras.layers.GlobalAveragePooling2D(),
                               keras.layers.Dense(7, activation="softmax", name="head")])
    nested.get_layer("head").set_weights(flat.model.get_layer("predictions").get_weights())
    clf = find_classifier(backbone_from_model(nested))
    images = np.stack(make_shapes(per_class=1, size=64, seed=4).images)
    for method in ("gradcam", "gradcam++"):
        a = grad_cam(flat, images, method=method)
        b = grad_cam(clf, images, layer="base/block4_relu2", method=method)
        np.testing.assert_allclose(b.heatmaps, a.heatmaps, atol=1e-4)
        np.testing.assert_allclose(b.evidence.probabilities, a.evidence.probabilities, atol=1e-5)


def test_never_called_sequential_and_logit_output():
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.layers.Conv2D(6, 3, activation="relu", name="c1"),
                              keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="c2"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, name="logits")])
    clf = find_classifier(backbone_from_model(model, input_size=(32, 32)))
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    cam = grad_cam(clf, images, class_=1)
    assert cam.layer == "c2" and cam.heatmaps.shape == (2, 32, 32) and np.isfinite(cam.heatmaps).all()
    np.testing.assert_allclose(cam.evidence.probabilities.sum(axis=1), 1.0, atol=1e-5)


class _Quantise:
    """A layer whose output has no gradient (rounding through stop_gradient), built lazily."""

    @staticmethod
    def make():
        import keras

        class Quantise(keras.layers.Layer):
            def call(self, x):
                return keras.ops.stop_gradient(keras.ops.round(x))

        return Quantise(name="quantise")


def test_no_gradient_is_a_clear_error():
    import keras

    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, name="c1")(inputs)
    x = _Quantise.make()(x)
    x = keras.layers.Conv2D(4, 3, name="c2")(x)
    out = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    clf = find_classifier(backbone_from_model(keras.Model(inputs, out)))
    with pytest.raises(GradientUnavailableError, match="not differentiable"):
        grad_cam(clf, np.zeros((1, 16, 16, 3), np.uint8), layer="c1")
    assert grad_cam(clf, np.zeros((1, 16, 16, 3), np.uint8), layer="c2").heatmaps.shape == (1, 16, 16)


# ------------------------------------------------------------------ receptive fields


def test_receptive_fields_match_published_values():
    vgg = receptive_fields(load_backbone("vgg16", weights="none").model)
    # Araujo et al., Distill 2019 (VGG16 212); the classic layer-by-layer table (block3_pool 44).
    assert vgg["block3_pool"].size == (44, 44) and vgg["block3_pool"].stride == (8, 8)
    assert vgg["block5_pool"].size == (212, 212) and vgg["block5_pool"].stride == (32, 32)
    resnet = receptive_fields(load_backbone("resnet50", weights="none").model)
    # Keras ResNet50 strides in the 1×1 conv, as ResNet-50 v1: 7 / 11 / 35 after conv1, pool1, conv2
    # and 483 at the last block (Distill 2019), effective stride 32.
    assert resnet["conv1_conv"].size == (7, 7)
    assert resnet["pool1_pool"].size == (11, 11)
    assert resnet["conv2_block3_out"].size == (35, 35)
    assert resnet["conv5_block3_out"].size == (483, 483) and resnet["conv5_block3_out"].stride == (32, 32)


@pytest.mark.parametrize("name", ["vgg16", "resnet50", "densenet121", "demo-shapes"])
def test_effective_stride_is_input_over_map_size(name):
    backbone = load_backbone(name, weights="none")
    h = backbone.input_size[0]
    for info in feature_layers(backbone.model):
        assert info.receptive_field is not None, info.name
        if h % info.shape[0] == 0:  # 'same' padding everywhere: the map tiles the input exactly
            assert info.effective_stride == (h // info.shape[0],) * 2, info.name


def test_receptive_fields_inside_nested_models_and_table():
    import keras

    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(64, 64, 3))
    outer = keras.Sequential([keras.Input((64, 64, 3)), base, keras.layers.GlobalAveragePooling2D()])
    table = {info.name: info for info in feature_layers(outer)}
    assert table["vgg16/block3_pool"].receptive_field == (44, 44)
    assert table["vgg16/block3_pool"].as_dict()["effective_stride"] == [8, 8]


def test_cell_region_is_clipped_and_centred():
    rf = ReceptiveField((44, 44), (8, 8), (3.5, 3.5))
    assert cell_region(rf, 0, 0, (224, 224)) == (0, 0, 26, 26)
    top, left, bottom, right = cell_region(rf, 13, 10, (224, 224))
    assert (bottom - top, right - left) == (44, 44)
    assert (top + bottom) / 2 == pytest.approx(3.5 + 13 * 8 + 0.5)


# ------------------------------------------------------------------ CLI


@pytest.fixture(scope="module")
def shape_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("explain")
    ds = make_shapes(per_class=1, size=64, seed=9)
    for pixels, name in zip(ds.images, ds.names, strict=True):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(root / name)
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return root


def test_explain_cli_writes_heatmaps_and_names_bad_files(shape_files, tmp_path, capsys):
    out = tmp_path / "cams.npz"
    code = main(["explain", "demo-shapes", str(shape_files), "--method", "gradcam++", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "broken.png" in captured.err and captured.err.count("skipped") == 1
    d = np.load(out)
    n = len(d["paths"])
    assert n == 7 and d["heatmaps"].shape == (n, 64, 64) and d["heatmaps"].dtype == np.float32
    assert 0 <= d["heatmaps"].min() and d["heatmaps"].max() <= 1
    assert d["probabilities"].shape == (n, 7) and list(d["class_names"]) == sorted(d["class_names"])
    assert str(d["layer"]) == "block4_relu2" and (d["classes"] == d["predicted"]).all()


def test_explain_cli_errors_are_one_line(shape_files, tmp_path, capsys):
    cases = [
        (["explain", "demo-shapes", str(shape_files), "--out", str(tmp_path / "x.txt")], 2, "--out must end with .npz"),
        (["explain", "demo-shapes", str(shape_files), "--method", "cam", "--out", str(tmp_path / "x.npz")], 2, "invalid"),
        (["explain", "demo-shapes", str(shape_files)], 2, "--out"),
        (["explain", "vgg16", "--weights", "none", "--input-size", "32", str(shape_files), "--out",
          str(tmp_path / "x.npz")], 1, "No classifier"),
        (["explain", "demo-shapes", str(shape_files), "--class", "circl", "--out", str(tmp_path / "x.npz")], 1,
         "Did you mean circle"),
    ]
    for argv, expected, text in cases:
        code = main(argv)
        err = capsys.readouterr().err.strip()
        assert code == expected and text in err and "\n" not in err, (argv, err)


@pytest.mark.slow
def test_imagenet_head_from_the_keras_cache(tmp_path):
    """A Keras application with ImageNet weights and its top file cached: names from the class index."""
    import dataclasses
    import json

    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    from extractor.backbones import WeightsInfo, keras_cache_dir

    keras.utils.set_random_seed(1)
    top = keras.applications.MobileNetV3Small(include_top=True, weights=None)
    cache = keras_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / "weights_mobilenet_v3_small_224_1.0_float.h5"
    index = cache / "imagenet_class_index.json"
    try:
        with h5py.File(path, "w") as f:  # the legacy format Keras's own ImageNet files use
            legacy_h5_format.save_weights_to_hdf5_group(f, top)
        index.write_text(json.dumps({str(i): [f"n{i:08d}", f"thing_{i}"] for i in range(1000)}))
        backbone = load_backbone("mobilenetv3small", weights="none")
        faked = dataclasses.replace(backbone, weights=WeightsInfo("imagenet", "ImageNet (test file)"))
        clf = find_classifier(faked)
        assert not isinstance(clf, NoClassifier), clf
        assert clf.class_names[:2] == ("thing_0", "thing_1") and path.name in clf.source
        images = np.stack(make_shapes(per_class=1, size=224, seed=0).images[:2])
        ev = class_evidence(clf, images)
        expected = np.asarray(top(images.astype(np.float32), training=False))
        np.testing.assert_allclose(ev.probabilities, expected, atol=1e-5)
        # the backbone's own layer names reach the rebuilt model's layers (matched by depth)
        table = feature_layers(backbone.model)
        cam = grad_cam(clf, images, layer=table[-3].name)
        assert cam.layer == table[-3].name and cam.heatmaps.shape == (2, 224, 224)
        assert set(clf.layer_names) == {info.name for info in table}
    finally:
        path.unlink(missing_ok=True)
        index.unlink(missing_ok=True)
