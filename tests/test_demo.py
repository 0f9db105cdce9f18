"""The built-in demo: image sets, the demo CNN, training helpers, and the shipped weights' claims.

Everything runs offline and small (32-64 px, a few images per class, one epoch); the shipped
weights are checked against freshly generated shapes from seeds training never used.
"""

from __future__ import annotations

import json
import time

import keras
import numpy as np
import pytest
from PIL import Image

from extractor import demo, training
from extractor.errors import LayerExplorerError

FRESH_SEED = 2024  # training used seed 0 and train_demo's own evaluation seed 10007


# --------------------------------------------------------------------------------------------
# image sets


def test_shapes_are_deterministic_labelled_rgb():
    a = demo.make_shapes(per_class=6, size=48, seed=3)
    b = demo.make_shapes(per_class=6, size=48, seed=3)
    c = demo.make_shapes(per_class=6, size=48, seed=4)
    assert len(demo.SHAPE_CLASSES) >= 6
    assert len(a.images) == len(a.labels) == len(a.names) == 6 * len(demo.SHAPE_CLASSES)
    assert all(x.shape == (48, 48, 3) and x.dtype == np.uint8 for x in a.images)
    assert all(np.array_equal(x, y) for x, y in zip(a.images, b.images, strict=False))
    assert not any(np.array_equal(x, y) for x, y in zip(a.images, c.images, strict=False))
    assert set(a.labels) == set(demo.SHAPE_CLASSES) and a.classes == demo.SHAPE_CLASSES
    assert len(set(a.names)) == len(a.names)
    assert all(n.startswith(f"{lab}/") and n.endswith(".png") for n, lab in zip(a.names, a.labels, strict=False))
    # Every image has a visible shape on it: far from a flat picture.
    assert min(int(x.max()) - int(x.min()) for x in a.images) > 60


def test_shapes_generation_speed_is_reported():
    start = time.perf_counter()
    ds = demo.make_shapes(per_class=143, size=64, seed=0)  # 1001 images
    seconds = time.perf_counter() - start
    print(f"\nmake_shapes: {len(ds.images)} images at 64 px in {seconds:.2f} s")
    assert len(ds.images) == 1001


def test_shapes_reject_bad_arguments():
    with pytest.raises(LayerExplorerError, match="per_class"):
        demo.make_shapes(per_class=0)
    with pytest.raises(LayerExplorerError, match="size"):
        demo.make_shapes(size=4)


def test_digits_load_offline_as_rgb():
    ds = demo.load_digits_set(per_class=3, size=32, seed=1)
    assert len(ds.images) == 30 and ds.classes == tuple(str(d) for d in range(10))
    assert all(x.shape == (32, 32, 3) and x.dtype == np.uint8 for x in ds.images)
    assert all(np.array_equal(x[..., 0], x[..., 2]) for x in ds.images)  # grey made RGB
    assert len(demo.load_digits_set(size=16).images) == 1797


def test_photos_load_offline_with_crops():
    native = demo.load_photos()
    assert set(native.labels) == {"china", "flower"} and len(native.images) == 12
    assert native.images[0].shape == (427, 640, 3) and native.images[0].dtype == np.uint8
    small = demo.load_photos(size=48)
    assert all(x.shape == (48, 48, 3) and x.dtype == np.uint8 for x in small.images)
    assert small.names == native.names


def test_load_demo_set_dispatches_and_refuses_unknown_names():
    assert demo.load_demo_set("demo-shapes", per_class=1, size=32).name == "shapes"
    assert demo.load_demo_set("digits", per_class=1, size=32).name == "digits"
    assert demo.load_demo_set("photos", size=32).images[0].shape == (32, 32, 3)
    with pytest.raises(demo.UnknownDemoSetError, match="shapes, digits, photos") as info:
        demo.load_demo_set("shape")
    assert isinstance(info.value, LayerExplorerError)
    assert "Did you mean 'shapes'" in str(info.value)


def test_export_writes_one_folder_per_class(tmp_path):
    paths = demo.export_demo_set("shapes", tmp_path / "shapes", per_class=2, seed=5, size=32)
    ds = demo.make_shapes(per_class=2, size=32, seed=5)
    assert sorted(p.name for p in (tmp_path / "shapes").iterdir()) == sorted(demo.SHAPE_CLASSES)
    assert len(paths) == 14
    for path, pixels in zip(paths, ds.images, strict=False):
        with Image.open(path) as im:
            assert im.format == "PNG"
            assert np.array_equal(np.asarray(im.convert("RGB")), pixels)  # PNG is lossless

    photos = demo.export_demo_set("photos", tmp_path / "photos")
    assert {p.parent.name for p in photos} == {"china", "flower"}
    for path in photos:
        with Image.open(path) as im:
            assert im.format == "JPEG"
            im.load()


# --------------------------------------------------------------------------------------------
# the architecture and training


def test_demo_cnn_is_legible_small_and_fully_convolutional():
    model = training.build_demo_cnn((None, None, 3))
    names = [layer.name for layer in model.layers]
    assert names[1] == "rescale" and isinstance(model.layers[1], keras.layers.Rescaling)
    for b in range(1, 5):
        for part in ("conv1", "bn1", "relu1", "conv2", "bn2", "relu2", "pool"):
            assert f"block{b}_{part}" in names
    assert model.count_params() * 4 <= 2 * 2**20
    out = model(np.zeros((2, 40, 56, 3), np.float32), training=False)
    assert tuple(out.shape) == (2, 2, 3, 128)


def test_shipped_keras_file_is_the_shipped_weights():
    """demo_shapes.keras (for plain Keras code) and demo_shapes.weights.h5 (the registry's) can't drift apart."""
    import tomllib
    from pathlib import Path

    from extractor.demo_cnn import DEMO_MODEL_PATH

    assert DEMO_MODEL_PATH.is_file() and DEMO_MODEL_PATH.stat().st_size <= 2 * 2**20
    shipped = keras.saving.load_model(DEMO_MODEL_PATH, safe_mode=True, compile=False)
    built = training.load_demo_backbone((None, None, 3))
    assert [layer.name for layer in shipped.layers] == [layer.name for layer in built.layers]
    for size in (64, 40):
        x = np.stack(demo.make_shapes(per_class=1, size=size, seed=5).images).astype(np.float32)
        np.testing.assert_array_equal(shipped.predict(x, verbose=0), built.predict(x, verbose=0))
    # and it installs with the package
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["extractor"]
    assert any(DEMO_MODEL_PATH.relative_to(DEMO_MODEL_PATH.parents[1]).match(p) for p in patterns)


def _tiny_shapes(per_class=8, size=32, seed=0):
    ds = demo.make_shapes(per_class=per_class, size=size, seed=seed)
    return np.stack(ds.images), ds.labels


@pytest.mark.parametrize("bad", [{"epochs": True}, {"epochs": 0}, {"batch_size": 2.0}, {"batch_size": False}])
def test_train_classifier_refuses_counts_that_are_not_whole_numbers(bad):
    """One integer validator (extractor.errors.check_int): a bool is not a number of epochs."""
    x, y = _tiny_shapes(per_class=2)
    with pytest.raises(training.TrainingDataError, match="must be a whole number of at least 1"):
        training.train_classifier(x, y, **bad)


def test_train_classifier_runs_and_saves_a_safe_model(tmp_path):
    x, y = _tiny_shapes()
    calls = []
    result = training.train_classifier(x, y, epochs=1, batch_size=16, progress=lambda *a: calls.append(a))
    assert result.classes == tuple(sorted(demo.SHAPE_CLASSES))
    assert result.n_heldout == 14 and result.n_train == 42  # stratified: 2 of 8 per class held out
    assert 0.0 <= result.heldout_accuracy <= 1.0
    assert [c[:2] for c in calls] == [(1, 1)] and "loss" in calls[0][2]
    assert set(result.history) >= {"loss", "accuracy", "val_loss", "val_accuracy"}

    path = tmp_path / "tiny.keras"
    result.model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True, compile=False)
    xs = x[:4].astype(np.float32)
    np.testing.assert_allclose(np.asarray(loaded(xs, training=False)),
                               np.asarray(result.model(xs, training=False)), rtol=1e-5, atol=1e-6)
    assert loaded.get_layer("block3_conv2") is not None


def test_training_is_deterministic_for_a_seed():
    x, y = _tiny_shapes(per_class=5)
    a = training.train_classifier(x, y, epochs=1, batch_size=16, seed=7)
    b = training.train_classifier(x, y, epochs=1, batch_size=16, seed=7)
    assert all(np.array_equal(u, v) for u, v in zip(a.model.get_weights(), b.model.get_weights(), strict=False))
    assert a.history == b.history


def test_train_classifier_refuses_unusable_data():
    x, y = _tiny_shapes(per_class=2)
    with pytest.raises(training.TooFewClassesError, match="at least 2 classes"):
        training.train_classifier(x[:2], y[:2], epochs=1)
    lonely = list(y[:3]) + ["lonely"]
    with pytest.raises(training.TooFewImagesError, match="'lonely' \\(1\\)"):
        training.train_classifier(x[:4], lonely, epochs=1)
    with pytest.raises(training.TrainingDataError, match="uint8"):
        training.train_classifier(x.astype(np.float32), y, epochs=1)
    with pytest.raises(training.TrainingDataError, match="labels"):
        training.train_classifier(x, y[:-1], epochs=1)


def test_train_from_folder_skips_and_reports_bad_files(tmp_path):
    data = tmp_path / "data"
    demo.export_demo_set("shapes", data, per_class=4, seed=1, size=32)
    (data / "circle" / "broken.png").write_bytes(b"this is not a png")
    out = tmp_path / "models" / "mine.keras"
    result = training.train_from_folder(data, out, input_size=(32, 32), epochs=1)
    assert [name for name, _ in result.skipped] == ["circle/broken.png"]
    assert "broken.png" in result.skipped[0][1] and str(tmp_path) not in result.skipped[0][1]
    assert result.n_train + result.n_heldout == 4 * len(demo.SHAPE_CLASSES)
    model = keras.saving.load_model(out, safe_mode=True, compile=False)
    assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 7)
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["classes"] == list(result.classes) and sidecar["skipped"][0][0] == "circle/broken.png"


def test_train_from_folder_needs_two_classes(tmp_path):
    demo.export_demo_set("shapes", tmp_path / "all", per_class=2, size=32)
    data = tmp_path / "one"
    data.mkdir()
    (tmp_path / "all" / "circle").rename(data / "circle")
    (data / "notes").mkdir()  # a sub-folder without images is not a class
    with pytest.raises(training.TooFewClassesError, match="at least 2"):
        training.train_from_folder(data, tmp_path / "m.keras", input_size=(32, 32), epochs=1)
    with pytest.raises(training.TrainingFolderError):
        training.train_from_folder(tmp_path / "missing", tmp_path / "m.keras")
    with pytest.raises(training.TrainingDataError, match=".keras"):
        training.train_from_folder(tmp_path / "all", tmp_path / "m.h5")


# --------------------------------------------------------------------------------------------
# the shipped weights


@pytest.fixture(scope="module")
def fresh_shapes():
    ds = demo.make_shapes(per_class=40, size=training.DEMO_INPUT_SIZE[0], seed=FRESH_SEED)
    return np.stack(ds.images).astype(np.float32), ds.labels


def test_shipped_files_are_small_and_described():
    assert training.DEMO_WEIGHTS_PATH.is_file() and training.DEMO_HEAD_WEIGHTS_PATH.is_file()
    assert training.DEMO_WEIGHTS_PATH.stat().st_size <= 2 * 2**20
    info = training.load_demo_info()
    assert info["classes"] == sorted(demo.SHAPE_CLASSES)
    assert tuple(info["input_size"]) == training.DEMO_INPUT_SIZE
    assert info["heldout_accuracy"] >= 0.95 and info["fresh_eval"]["accuracy"] >= 0.95
    assert info["backbone_params"] == training.build_demo_cnn().count_params()


def test_shipped_weights_reach_the_claimed_accuracy(fresh_shapes):
    x, labels = fresh_shapes
    start = time.perf_counter()
    backbone = training.load_demo_backbone()
    print(f"\nload_demo_backbone: {time.perf_counter() - start:.3f} s")
    assert backbone.output_shape == (None, 4, 4, 128)
    classifier = training.load_demo_classifier()
    classes = np.array(training.load_demo_info()["classes"])
    predicted = classes[np.asarray(classifier(x, training=False)).argmax(axis=1)]
    accuracy = float(np.mean(predicted == np.array(labels)))
    print(f"shipped classifier on fresh shapes (seed {FRESH_SEED}): {accuracy:.3f}")
    assert accuracy >= 0.95


def test_shipped_weights_have_a_real_layer_hierarchy(fresh_shapes):
    x, labels = fresh_shapes
    scores = training.block_knn_scores(training.load_demo_backbone(), x, labels)
    print(f"\n5-NN on avg-pooled features, by block: {scores}")
    assert list(scores) == [f"block{b}_pool" for b in range(1, 5)]
    assert scores["block4_pool"] >= 0.95
    assert scores["block4_pool"] - scores["block1_pool"] >= 0.20


def test_missing_weights_are_a_clear_error(tmp_path):
    with pytest.raises(training.DemoWeightsMissingError, match="demo train"):
        training.load_demo_backbone(weights_path=tmp_path / "nope.weights.h5")
