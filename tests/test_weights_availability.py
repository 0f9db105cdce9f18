"""Issue 10, item 6 (core side): a missing-ImageNet-weights error the UI can phrase in its own words,
and which backbones have ImageNet weights on this machine."""

from __future__ import annotations

import pickle

import pytest

from extractor import BACKBONES, WeightsUnavailableError, imagenet_weights_path, load_backbone
from extractor import backbones as backbones_module
from extractor.backbones import ImageNetWeightsMissingError, MissingWeights, imagenet_cached


def test_missing_imagenet_weights_carry_structured_fields(monkeypatch):
    monkeypatch.setattr(backbones_module, "_weights_host_reachable", lambda: False)
    with pytest.raises(ImageNetWeightsMissingError) as info:
        load_backbone("resnet50", weights="pretrained")
    exc = info.value
    assert isinstance(exc, WeightsUnavailableError)  # existing handlers keep working
    missing = exc.missing
    assert isinstance(missing, MissingWeights)
    assert missing.backbone == "resnet50" and missing.requested == "pretrained"
    assert missing.file_name == "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert missing.cause == "not-cached-offline" and missing.cache_dir.endswith("models")
    # The plain message is for the command line; it names random weights in words, and no tuple leaks into it.
    text = str(exc)
    assert text.startswith("ImageNet weights for resnet50 are not available")
    assert "random weights" in text and "weights 'none'" not in text
    back = pickle.loads(pickle.dumps(exc))  # Streamlit caches may pickle it
    assert back.missing == missing and str(back) == text


def test_imagenet_cached_reports_each_backbone(keras_home):
    path = imagenet_weights_path(BACKBONES["vgg16"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"placeholder: only its presence is checked")
    try:
        cached = imagenet_cached()
        assert cached["vgg16"] is True
        assert cached["resnet50"] is False
        assert cached["demo-shapes"] is None  # no ImageNet weights exist for it
        assert set(cached) == set(BACKBONES)
    finally:
        path.unlink()


def test_imagenet_cached_depends_on_the_input_size_where_the_file_does():
    # MobileNetV2's file name encodes the input size; a 96 px file is not a 224 px one.
    assert imagenet_weights_path(BACKBONES["mobilenetv2"], (96, 96)) != imagenet_weights_path(BACKBONES["mobilenetv2"])
    assert imagenet_cached((96, 96))["mobilenetv2"] is False
