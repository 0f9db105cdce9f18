"""The registry, weights that are always reported honestly, and layer tables."""

from __future__ import annotations

import time

import h5py
import keras
import numpy as np
import pytest

from extractor import (
    BACKBONES,
    InvalidInputSizeError,
    UnknownBackboneError,
    WeightsUnavailableError,
    feature_layers,
    get_spec,
    imagenet_weights_path,
    load_backbone,
    representative_layers,
)
from extractor import backbones as backbones_module

REQUIRED = ["vgg16", "vgg19", "resnet50", "resnet50v2", "mobilenetv2", "mobilenetv3small", "mobilenetv3large",
            "efficientnetb0", "densenet121", "inceptionv3", "xception", "convnexttiny"]
EXPECTED_PREPROCESSING = {
    "vgg16": "caffe", "vgg19": "caffe", "resnet50": "caffe", "resnet50v2": "tf", "mobilenetv2": "tf",
    "inceptionv3": "tf", "xception": "tf", "densenet121": "torch", "efficientnetb0": "none",
    "convnexttiny": "none", "mobilenetv3small": "none", "mobilenetv3large": "none",
}


def test_registry_has_every_required_backbone_with_its_preprocessing():
    for name in REQUIRED:
        spec = BACKBONES[name]
        assert spec.preprocessing == EXPECTED_PREPROCESSING[name], name
        assert spec.imagenet_file is not None
    assert "demo-shapes" in BACKBONES
    assert BACKBONES["inceptionv3"].input_size == (299, 299)


def test_unknown_backbone_suggests_close_names():
    with pytest.raises(UnknownBackboneError, match="resnet50"):
        get_spec("resnet5")


@pytest.mark.parametrize("name", REQUIRED)
def test_every_backbone_builds_with_random_weights_and_lists_layers(name):
    spec = BACKBONES[name]
    size = max(spec.min_input_size, 75) if spec.min_input_size > 32 else 64
    backbone = load_backbone(name, weights="none", input_size=(size, size))
    assert backbone.weights.kind == "random" and "random" in backbone.weights.description
    table = feature_layers(backbone.model)
    assert len(table) > 10
    assert [lyr.depth for lyr in table] == list(range(len(table)))
    for info in table:
        assert len(info.shape) == 3 and all(isinstance(d, int) for d in info.shape)
        assert info.kind and info.block
        assert info.stride >= 1
    strides = [lyr.stride for lyr in representative_layers(table, "stride")]
    assert strides == sorted(strides) and len(strides) >= 3
    assert table[-1].stride >= 16


def test_random_weights_are_reproducible():
    a = load_backbone("mobilenetv2", weights="none", input_size=(32, 32)).model.get_weights()
    b = load_backbone("mobilenetv2", weights="none", input_size=(32, 32)).model.get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=False))


def test_missing_imagenet_weights_fail_fast_without_any_download(monkeypatch):
    monkeypatch.setattr(backbones_module, "_weights_host_reachable", lambda: False)
    start = time.perf_counter()
    with pytest.raises(WeightsUnavailableError) as info:
        load_backbone("resnet50", weights="imagenet")
    assert time.perf_counter() - start < 5  # no model was even built
    message = str(info.value)
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert "none" in message and "demo-shapes" in message and "KERAS_HOME" in message


def test_offline_probe_is_remembered(monkeypatch):
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise OSError("offline")

    monkeypatch.setattr(backbones_module, "_probe_result", None)
    monkeypatch.setattr(backbones_module.socket, "create_connection", refuse)
    assert backbones_module._weights_host_reachable() is False
    assert backbones_module._weights_host_reachable() is False
    assert len(calls) == 1


def test_cached_imagenet_file_is_used_offline(keras_home, monkeypatch):
    """A weights file already in KERAS_HOME/models loads with no network at all."""
    from keras.src.legacy.saving import legacy_h5_format

    monkeypatch.setattr(backbones_module, "_weights_host_reachable", lambda: pytest.fail("probed the network"))
    keras.utils.set_random_seed(7)
    donor = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = imagenet_weights_path(BACKBONES["vgg16"], (32, 32))
    assert path.parent == keras_home / "models"
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, donor)
    try:
        backbone = load_backbone("vgg16", weights="imagenet", input_size=(32, 32))
        assert backbone.weights.kind == "imagenet" and path.name in backbone.weights.description
        for got, want in zip(backbone.model.get_weights(), donor.get_weights(), strict=False):
            np.testing.assert_array_equal(got, want)
    finally:
        path.unlink()


def test_local_weights_file(tmp_path):
    keras.utils.set_random_seed(3)
    donor = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "mine.weights.h5"
    donor.save_weights(path)
    backbone = load_backbone("mobilenetv2", weights=str(path), input_size=(32, 32))
    assert backbone.weights.kind == "file" and "mine.weights.h5" in backbone.weights.description
    for got, want in zip(backbone.model.get_weights(), donor.get_weights(), strict=False):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(WeightsUnavailableError, match="same architecture"):
        load_backbone("vgg16", weights=str(path), input_size=(32, 32))
    with pytest.raises(WeightsUnavailableError, match="neither"):
        load_backbone("vgg16", weights=str(tmp_path / "missing.weights.h5"))


def test_demo_backbone_loads_shipped_weights_quickly():
    start = time.perf_counter()
    backbone = load_backbone("demo-shapes")
    assert time.perf_counter() - start < 10  # generous; the README reports the real figure
    assert backbone.weights.kind == "shipped"
    with pytest.raises(WeightsUnavailableError, match="no ImageNet"):
        load_backbone("demo-shapes", weights="imagenet")


def test_input_size_rules():
    with pytest.raises(InvalidInputSizeError, match="75"):
        load_backbone("inceptionv3", weights="none", input_size=(40, 40))
    with pytest.raises(InvalidInputSizeError, match="height, width"):
        load_backbone("vgg16", weights="none", input_size="big")
    native = load_backbone("vgg16", weights="none", input_size="native")
    assert native.input_size is None
    assert feature_layers(native.model)[0].shape[0] is None


def test_block_names_follow_each_family():
    blocks = {lyr.block for lyr in feature_layers(load_backbone("resnet50", weights="none", input_size=(64, 64)).model)}
    assert {"conv2_block1", "conv5_block3"} <= blocks
    table = feature_layers(load_backbone("inceptionv3", weights="none", input_size=(75, 75)).model)
    assert table[-1].block == "mixed10" and table[0].block == "mixed0"


def test_a_weights_file_that_only_partly_fits_is_refused(tmp_path):
    """Keras only warns when part of a file doesn't match; that must never pass as trained weights."""
    donor = keras.applications.VGG19(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "vgg19.weights.h5"
    donor.save_weights(path)
    with pytest.raises(WeightsUnavailableError, match="does not fit vgg16"):
        load_backbone("vgg16", weights=str(path), input_size=(32, 32))
