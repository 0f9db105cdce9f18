"""Issue 10, item 5: features whose scale collapsed (random MobileNetV2 gives ~1e-12) are named as such,
with the likely cause; batch-norm calibration on the images makes them usable and says it is not training."""

from __future__ import annotations

import numpy as np
import pytest

from extractor.feature_health import (
    COLLAPSED,
    CONSTANT,
    OK,
    FeatureHealth,
    check_features,
    likely_cause,
)

# --------------------------------------------------------------------------------------------
# the classifier on plain matrices (fast)


def test_ordinary_features_are_ok():
    x = np.random.default_rng(0).normal(size=(10, 8)).astype(np.float32)
    h = check_features(x)
    assert isinstance(h, FeatureHealth) and h.status == OK and h.message == ""
    assert h.scale == pytest.approx(float(np.abs(x).max()))


def test_tiny_scale_is_collapsed_with_the_numbers_and_the_cause():
    x = np.random.default_rng(0).random((10, 8)).astype(np.float32) * 1e-12
    h = check_features(x, "out_relu/avg", random_weights=True, batchnorm=True)
    assert h.status == COLLAPSED and h.scale < 1e-11
    assert h.cause == "untrained-batchnorm"
    assert "out_relu/avg" in h.message and "e-1" in h.message  # the scale, in numbers
    assert "batch normalisation" in h.message and "not about your images" in h.message
    assert "copies" not in h.message


def test_same_vector_for_every_image_is_constant():
    x = np.tile(np.random.default_rng(1).normal(size=(1, 6)), (5, 1))
    h = check_features(x, "b/avg")
    assert h.status == CONSTANT and h.spread < 1e-12
    assert "every image" in h.message


def test_all_zero_is_constant_not_collapsed():
    h = check_features(np.zeros((4, 3)))
    assert h.status == CONSTANT


def test_one_image_cannot_be_constant():
    assert check_features(np.ones((1, 3))).status == OK


def test_nan_is_ignored_for_the_scale():
    x = np.random.default_rng(0).normal(size=(6, 4))
    x[0, 0] = np.nan
    assert check_features(x).status == OK


def test_likely_cause_without_context_does_not_blame_the_images():
    assert likely_cause(random_weights=None, batchnorm=None) == "unknown"
    assert likely_cause(random_weights=True, batchnorm=False) == "untrained"
    assert likely_cause(random_weights=False, batchnorm=True) == "unknown"


def test_bad_input_is_a_clear_error():
    from extractor.errors import LayerExplorerError

    with pytest.raises(LayerExplorerError, match="2-D"):
        check_features(np.ones(3))


# --------------------------------------------------------------------------------------------
# random MobileNetV2: collapsed, then calibrated


@pytest.fixture(scope="module")
def mobilenet_random():
    from extractor import load_backbone

    return load_backbone("mobilenetv2", weights="none", input_size=(96, 96))


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (8, 12, 12, 3)).astype(np.float32)
    # smooth-ish images (block upsampled noise), so they differ from each other in structure
    return np.clip(np.kron(base, np.ones((1, 8, 8, 1))) + rng.normal(0, 8, (8, 96, 96, 3)), 0, 255).astype(np.uint8)


@pytest.mark.slow
def test_random_mobilenet_is_collapsed_and_calibration_fixes_it(mobilenet_random, images):
    import keras

    from extractor import FeatureExtractor
    from extractor.calibration import calibrate_batchnorm, has_batchnorm

    assert has_batchnorm(mobilenet_random.model)
    raw = FeatureExtractor(mobilenet_random, ["out_relu"], ["avg"]).run_batch(images)["out_relu/avg"]
    before = check_features(raw, "out_relu/avg", random_weights=True, batchnorm=True)
    assert before.status == COLLAPSED and before.cause == "untrained-batchnorm"

    calibrated = calibrate_batchnorm(mobilenet_random, images)
    assert calibrated is not mobilenet_random and calibrated.model is not mobilenet_random.model
    info = calibrated.weights
    assert info.kind == "random" and not info.is_pretrained  # still random: every random-weights warning stays
    assert info.bn_calibrated_on == 8
    assert "BN calibrated on 8 images" in info.description and "not training" in info.description
    assert mobilenet_random.weights.bn_calibrated_on is None  # the original is untouched

    after = FeatureExtractor(calibrated, ["out_relu"], ["avg"]).run_batch(images)["out_relu/avg"]
    assert check_features(after, "out_relu/avg", random_weights=True, batchnorm=True).status == OK
    assert np.abs(after).max() > 1e-3

    # Each calibrated BN layer holds its input's statistics over these images (in inference mode).
    from extractor.backbones import preprocess_images

    x = preprocess_images(images.astype(np.float32), calibrated.spec.preprocessing)
    bns = [layer for layer in calibrated.model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for bn in (bns[0], bns[len(bns) // 2], bns[-1]):
        inputs = np.asarray(keras.Model(calibrated.model.inputs, bn.input)(x, training=False), np.float64)
        mean, var = inputs.mean(axis=(0, 1, 2)), inputs.var(axis=(0, 1, 2))
        np.testing.assert_allclose(np.asarray(bn.moving_mean), mean, rtol=1e-3, atol=1e-5 * np.abs(mean).max() + 1e-7)
        np.testing.assert_allclose(np.asarray(bn.moving_variance), var, rtol=1e-3, atol=1e-5 * var.max() + 1e-9)
        assert bn.momentum == pytest.approx(0.999)  # restored after calibration


def test_calibration_refuses_bad_images():
    from extractor import load_backbone
    from extractor.calibration import CalibrationError, calibrate_batchnorm

    demo = load_backbone("demo-shapes", input_size=(64, 64))
    with pytest.raises(CalibrationError, match="uint8"):
        calibrate_batchnorm(demo, np.zeros((2, 64, 64, 3), np.float32))
    with pytest.raises(CalibrationError, match="at least 2"):
        calibrate_batchnorm(demo, np.zeros((1, 64, 64, 3), np.uint8))
