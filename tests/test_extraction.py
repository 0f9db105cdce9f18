"""The extraction core against plain Keras: same numbers, one pass, no retracing, bounded memory."""

from __future__ import annotations

import io

import keras
import numpy as np
import pytest
from PIL import Image

from extractor import (
    ExtractionRequestError,
    FeatureExtractor,
    NoImagesError,
    RawMapsTooLargeError,
    UnknownLayerError,
    backbone_from_model,
    feature_layers,
    load_backbone,
    pool_numpy,
    preprocess_images,
)
from extractor.pooling import UnknownPoolingError, check_poolings

SIZE = (64, 64)

# Four backbones covering the four preprocessing modes, with the Keras module whose own
# preprocess_input the reference uses.
PLAIN_KERAS = [
    ("vgg16", keras.applications.vgg16, "caffe"),
    ("mobilenetv2", keras.applications.mobilenet_v2, "tf"),
    ("densenet121", keras.applications.densenet, "torch"),
    ("efficientnetb0", keras.applications.efficientnet, "none"),
]


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (5, *SIZE, 3), dtype=np.uint8)


def _relative_close(ours: np.ndarray, reference: np.ndarray, rtol: float = 1e-4) -> None:
    scale = max(float(np.abs(reference).max()), 1e-12)
    np.testing.assert_allclose(ours, reference, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("name,module,mode", PLAIN_KERAS, ids=[p[0] for p in PLAIN_KERAS])
def test_pooled_features_equal_plain_keras(name, module, mode, images):
    backbone = load_backbone(name, weights="none", input_size=SIZE)
    assert backbone.spec.preprocessing == mode
    table = feature_layers(backbone.model)
    picked = [table[1].name, table[len(table) // 2].name, table[-1].name]
    fx = FeatureExtractor(backbone, picked, ["avg", "max", "flatten"])
    result = fx.extract(list(images), batch_size=2)
    assert fx.forward_calls == 3  # 5 images in batches of 2, every layer in each pass

    x = module.preprocess_input(images.astype("float32").copy())
    for layer in picked:
        plain = keras.Model(backbone.model.input, backbone.model.get_layer(layer).output)
        maps = np.asarray(plain.predict(x, verbose=0))
        _relative_close(result.features[f"{layer}/avg"], maps.mean(axis=(1, 2)))
        _relative_close(result.features[f"{layer}/max"], maps.max(axis=(1, 2)))
        _relative_close(result.features[f"{layer}/flatten"], maps.reshape(len(maps), -1))


@pytest.mark.parametrize("name,module,mode", PLAIN_KERAS, ids=[p[0] for p in PLAIN_KERAS])
def test_numpy_preprocessing_matches_keras_and_never_mutates(name, module, mode):
    x = np.random.default_rng(1).integers(0, 256, (2, 8, 8, 3)).astype(np.float32)
    before = x.copy()
    ours = preprocess_images(x, mode)
    np.testing.assert_array_equal(x, before)
    reference = module.preprocess_input(x.copy())
    np.testing.assert_allclose(ours, reference, rtol=1e-6, atol=1e-5)
    assert ours is not x


@pytest.fixture(scope="module")
def small_vgg():
    return load_backbone("vgg16", weights="none", input_size=SIZE)


def test_new_batch_size_does_not_retrace(small_vgg, images):
    fx = FeatureExtractor(small_vgg, ["block2_pool"], ["avg"], runtime="tensorflow")
    for n in (1, 3, 5, 2):
        fx.run_batch(images[:n])
    assert fx.traces == 1


def test_gem_and_avgmax_match_numpy(small_vgg, images):
    fx = FeatureExtractor(small_vgg, ["block3_conv3"], ["gem", "avgmax", "none"])
    result = fx.extract(list(images))
    maps = result.features["block3_conv3/none"]
    assert maps.shape == (5, 16, 16, 256)
    _relative_close(result.features["block3_conv3/gem"], pool_numpy(maps, "gem"))
    _relative_close(result.features["block3_conv3/avgmax"], pool_numpy(maps, "avgmax"))
    assert result.features["block3_conv3/avgmax"].shape == (5, 512)


def test_pool_numpy_reduces_space_only():
    x = np.arange(2 * 3 * 3 * 4, dtype=np.float32).reshape(2, 3, 3, 4)
    assert pool_numpy(x, "avg").shape == (2, 4)  # never one number per image (the seed article's bug)
    np.testing.assert_allclose(pool_numpy(x, "avg"), x.mean(axis=(1, 2)))
    with pytest.raises(ValueError):
        pool_numpy(x.reshape(2, -1), "max")  # pooling belongs on a rank-4 map, not a flattened one


def test_unknown_pooling_is_named():
    with pytest.raises(UnknownPoolingError, match="'median'"):
        check_poolings("avg,median")
    assert check_poolings(" avg, max ,avg") == ("avg", "max")


def test_wrong_layer_name_lists_closest(small_vgg):
    with pytest.raises(UnknownLayerError) as info:
        FeatureExtractor(small_vgg, ["block3_conv9"], ["avg"])
    message = str(info.value)
    assert "block3_conv9" in message and "block3_conv1" in message and "layers" in message


def test_bad_images_are_named_and_good_ones_processed(small_vgg, images):
    buffer = io.BytesIO()
    Image.fromarray(images[0]).save(buffer, format="PNG")
    good = buffer.getvalue()
    fx = FeatureExtractor(small_vgg, ["block1_pool"], ["avg"])
    result = fx.extract([("good.png", good), ("notes.png", b"hello, not an image"), ("empty.jpg", b"")])
    assert result.names == ["good.png"]
    assert result.features["block1_pool/avg"].shape == (1, 64)
    assert {f.name for f in result.failures} == {"notes.png", "empty.jpg"}
    assert all(f.message for f in result.failures)
    with pytest.raises(NoImagesError) as info:
        fx.extract([("notes.png", b"hello")])
    assert info.value.failures[0].name == "notes.png"


def test_raw_map_memory_cap_says_how_much(small_vgg, images):
    fx = FeatureExtractor(small_vgg, ["block1_conv1"], ["none"], max_raw_bytes=2 * 2**20)
    with pytest.raises(RawMapsTooLargeError, match=r"MiB"):
        fx.extract(list(images))  # 5 × 64×64×64 × 4 bytes = 5 MiB > 2 MiB


def test_native_resize_groups_by_shape_and_keeps_order(small_vgg):
    rng = np.random.default_rng(2)
    sizes = [(64, 64), (48, 80), (64, 64), (96, 40), (48, 80)]
    imgs = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]
    fx = FeatureExtractor(small_vgg, ["block3_pool"], ["avg", "max"], resize="native")
    result = fx.extract(imgs, batch_size=4)
    assert result.indices == [0, 1, 2, 3, 4]
    # each row equals that image run alone at its own size
    for i, image in enumerate(imgs):
        alone = fx.run_batch(image[None])["block3_pool/avg"][0]
        _relative_close(result.features["block3_pool/avg"][i], alone)
    with pytest.raises(ExtractionRequestError, match="native"):
        FeatureExtractor(small_vgg, ["block3_pool"], ["flatten"], resize="native")


def test_stretch_resizes_any_input_to_the_backbone_size(small_vgg):
    big = np.random.default_rng(3).integers(0, 256, (100, 150, 3), dtype=np.uint8)
    fx = FeatureExtractor(small_vgg, ["block5_pool"], ["flatten"], resize="pad")
    assert fx.extract([big]).features["block5_pool/flatten"].shape == (1, 2 * 2 * 512)


def test_nested_backbone_layers_are_reachable_by_qualified_name():
    inner_in = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv_a")(inner_in)
    x = keras.layers.ReLU(name="relu_a")(x)
    x = keras.layers.Conv2D(6, 3, strides=2, padding="same", name="conv_b")(x)
    inner = keras.Model(inner_in, x, name="base")
    outer_in = keras.Input((32, 32, 3))
    y = keras.layers.Rescaling(1 / 255.0, name="scale")(outer_in)
    y = inner(y)
    y = keras.layers.GlobalAveragePooling2D()(y)
    outer = keras.Model(outer_in, keras.layers.Dense(3)(y), name="transfer")

    table = feature_layers(outer)
    names = [lyr.name for lyr in table]
    assert "base/conv_a" in names and "base/conv_b" in names and "base" in names
    stride = {lyr.name: lyr.stride for lyr in table}
    assert stride["base/conv_b"] == 2

    bb = backbone_from_model(outer)
    images = np.random.default_rng(4).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    result = FeatureExtractor(bb, ["base/relu_a", "base/conv_b"], ["avg"]).extract(list(images))
    direct = keras.Model(inner.input, [inner.get_layer("relu_a").output, inner.get_layer("conv_b").output])
    relu_a, conv_b = direct.predict(images.astype("float32") / 255.0, verbose=0)
    _relative_close(result.features["base/relu_a/avg"], relu_a.mean(axis=(1, 2)))
    _relative_close(result.features["base/conv_b/avg"], conv_b.mean(axis=(1, 2)))


def test_sequential_that_was_never_called():
    model = keras.Sequential([
        keras.layers.Conv2D(4, 3, name="c1"),
        keras.layers.MaxPooling2D(name="p1"),
        keras.layers.Conv2D(8, 3, name="c2"),
    ])
    table = feature_layers(model, input_size=(32, 32))
    assert [lyr.name for lyr in table] == ["c1", "p1", "c2"]
    assert table[1].shape == (15, 15, 4)
    bb = backbone_from_model(model, input_size=(32, 32))
    out = FeatureExtractor(bb, ["c2"], ["max"]).extract([np.zeros((32, 32, 3), np.uint8)])
    assert out.features["c2/max"].shape == (1, 8)


def test_bfloat16_features_stay_close_to_float32(small_vgg, images):
    f32 = FeatureExtractor(small_vgg, ["block4_pool"], ["avg"]).extract(list(images)).features["block4_pool/avg"]
    bf16 = FeatureExtractor(small_vgg, ["block4_pool"], ["avg"], precision="bfloat16", runtime="tensorflow")
    assert bf16._tf_function("mixed_bfloat16")[2].layers[1].compute_dtype == "bfloat16"
    got = bf16.extract(list(images)).features["block4_pool/avg"]
    assert got.dtype == np.float32
    cosine = (got * f32).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(f32, axis=1))
    assert cosine.min() > 0.98


def test_progress_callback_reaches_total(small_vgg, images):
    seen = []
    FeatureExtractor(small_vgg, ["block1_pool"], ["avg"]).extract(list(images), batch_size=2,
                                                                   progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (5, 5)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_bfloat16_really_applies_to_every_kind_of_backbone():
    """Registry, demo (which pins its layers' dtype) and in-memory models all compute in bfloat16."""
    demo = FeatureExtractor(load_backbone("demo-shapes"), ["block2_pool"], ["avg"], precision="bfloat16",
                            runtime="tensorflow")
    custom_model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(4, 3, name="c")])
    custom = FeatureExtractor(backbone_from_model(custom_model), ["c"], ["avg"], precision="bfloat16",
                              runtime="tensorflow")
    for fx in (demo, custom):
        cut = fx._tf_function("mixed_bfloat16")[2]
        conv = next(layer for layer in cut.layers if isinstance(layer, keras.layers.Conv2D))
        assert conv.compute_dtype == "bfloat16"
        assert fx.extract([np.zeros((32, 32, 3), np.uint8)]).features[fx.keys[0]].dtype == np.float32
