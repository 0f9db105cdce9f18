"""Every engine against the TensorFlow reference, on the same uint8 batches (STYLE.md §11).

OpenVINO float32 must match TensorFlow float32 to 1e-4 relative for every pooling and raw maps;
bfloat16 must stay within cosine 0.999 of float32 per image on both runtimes. Conversions are
counted, so the cache is held to "convert once" across extractors and processes.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from extractor import FeatureExtractor, backbone_from_model, feature_layers, load_backbone
from extractor import runtime as rt
from extractor.__main__ import main
from extractor.export import read_features

pytest.importorskip("openvino")

ROOT = Path(__file__).resolve().parent.parent
POOLINGS = ["avg", "max", "gem", "avgmax", "flatten", "none"]


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """A cache directory of this test's own, so conversions are counted from zero."""
    monkeypatch.setenv(rt.CACHE_ENV, str(tmp_path / "ov"))
    return tmp_path / "ov"


def _batch(n, size, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *size, 3), dtype=np.uint8)


def _relative_close(ours, reference, rtol=1e-4):
    scale = max(float(np.abs(reference).max()), 1e-12)
    np.testing.assert_allclose(ours, reference, rtol=rtol, atol=rtol * scale)


def _pair(backbone, layers, poolings=POOLINGS, **kwargs):
    tf_fx = FeatureExtractor(backbone, layers, poolings, runtime="tensorflow", **kwargs)
    ov_fx = FeatureExtractor(backbone, layers, poolings, runtime="openvino", **kwargs)
    assert (tf_fx.runtime, ov_fx.runtime) == ("tensorflow", "openvino")
    return tf_fx, ov_fx


def _assert_parity(tf_fx, ov_fx, batch):
    expected, got = tf_fx.run_batch(batch), ov_fx.run_batch(batch)
    assert sorted(got) == sorted(expected)
    for key in expected:
        assert got[key].shape == expected[key].shape, key
        assert got[key].dtype == np.float32
        _relative_close(got[key], expected[key])


# ------------------------------------------------------------------ parity, float32
# One backbone per preprocessing mode: caffe, tf, torch, none (rescales inside the model).
FOUR_MODES = [
    ("vgg16", "caffe", 64),
    ("mobilenetv2", "tf", 64),
    pytest.param("densenet121", "torch", 64, marks=pytest.mark.slow),
    pytest.param("efficientnetb0", "none", 64, marks=pytest.mark.slow),
]


@pytest.mark.parametrize("name,mode,size", FOUR_MODES)
def test_openvino_float32_equals_tensorflow_on_every_pooling(name, mode, size):
    backbone = load_backbone(name, weights="none", input_size=size)
    assert backbone.spec.preprocessing == mode
    table = feature_layers(backbone.model)
    layers = [table[1].name, table[len(table) // 2].name, table[-1].name]
    tf_fx, ov_fx = _pair(backbone, layers)
    assert ov_fx.precision == "float32"
    _assert_parity(tf_fx, ov_fx, _batch(3, (size, size)))


def test_demo_shapes_and_extract_path_match():
    backbone = load_backbone("demo-shapes")
    tf_fx, ov_fx = _pair(backbone, ["block1_conv1", "block3_conv1", "block4_pool"])
    batch = _batch(4, backbone.spec.input_size, seed=1)
    _assert_parity(tf_fx, ov_fx, batch)
    # The whole extract path (decode, batching, reordering) too, and it says what served.
    a, b = tf_fx.extract(list(batch), batch_size=3), ov_fx.extract(list(batch), batch_size=3)
    assert (a.runtime, b.runtime, b.precision) == ("tensorflow", "openvino", "float32")
    for key in a.features:
        _relative_close(b.features[key], a.features[key])


def _transfer_model(size=32):
    inner_in = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv_a")(inner_in)
    x = keras.layers.ReLU(name="relu_a")(x)
    x = keras.layers.Conv2D(6, 3, strides=2, padding="same", name="conv_b")(x)
    inner = keras.Model(inner_in, x, name="base")
    outer_in = keras.Input((size, size, 3))
    y = keras.layers.Rescaling(1 / 255.0, name="scale")(outer_in)
    y = inner(y)
    y = keras.layers.Conv2D(5, 3, name="head_conv")(y)
    y = keras.layers.GlobalAveragePooling2D()(y)
    return keras.Model(outer_in, keras.layers.Dense(3)(y), name="transfer")


def test_nested_transfer_model_matches():
    backbone = backbone_from_model(_transfer_model())
    tf_fx, ov_fx = _pair(backbone, ["base/relu_a", "base/conv_b", "head_conv"])
    _assert_parity(tf_fx, ov_fx, _batch(3, (32, 32), seed=2))


def test_uploaded_keras_file_matches(tmp_path):
    path = tmp_path / "my_model.keras"
    _transfer_model(48).save(path)
    backbone = load_backbone(str(path))
    tf_fx, ov_fx = _pair(backbone, ["base/conv_a", "head_conv"])
    _assert_parity(tf_fx, ov_fx, _batch(2, (48, 48), seed=3))


def test_native_resize_serves_two_shapes_in_one_call():
    backbone = load_backbone("demo-shapes")
    tf_fx, ov_fx = _pair(backbone, ["block2_pool", "block4_pool"], ["avg", "gem", "max"], resize="native")
    rng = np.random.default_rng(5)
    images = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in [(64, 80, 3), (48, 48, 3), (64, 80, 3)]]
    a, b = tf_fx.extract(images), ov_fx.extract(images)
    assert b.runtime == "openvino" and b.indices == [0, 1, 2]
    assert ov_fx.forward_calls == 2  # one batch per shape
    for key in a.features:
        _relative_close(b.features[key], a.features[key])


# ------------------------------------------------------------------ bfloat16
def _openvino_offers_bf16() -> bool:
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


@pytest.mark.parametrize("runtime", ["tensorflow", "openvino"])
def test_bfloat16_stays_within_cosine_0_999_per_image(runtime):
    backbone = load_backbone("demo-shapes")
    layers, poolings = ["block2_pool", "block4_pool"], ["avg", "gem"]
    batch = _batch(6, backbone.spec.input_size, seed=6)
    reference = FeatureExtractor(backbone, layers, poolings, runtime="tensorflow").run_batch(batch)
    bf16 = FeatureExtractor(backbone, layers, poolings, runtime=runtime, precision="bfloat16")
    # TensorFlow emulates bfloat16 on any CPU; OpenVINO runs it only where the CPU has the instructions
    # (AVX512-BF16 or AMX), else float32 — and then says so, rather than claiming bfloat16.
    expected = "bfloat16" if runtime == "tensorflow" or _openvino_offers_bf16() else "float32"
    assert (bf16.runtime, bf16.precision) == (runtime, expected)
    if expected == "bfloat16":
        assert bf16.runtime_note is None
    else:
        assert "no bfloat16 instructions" in bf16.runtime_note and "float32 runs" in bf16.runtime_note
    got = bf16.run_batch(batch)
    for key, ref in reference.items():
        cosine = (got[key] * ref).sum(1) / (np.linalg.norm(got[key], axis=1) * np.linalg.norm(ref, axis=1))
        assert cosine.min() >= 0.999, (key, cosine.min())


# ------------------------------------------------------------------ conversion is paid once
_CHILD = """
import numpy as np
from extractor import FeatureExtractor, load_backbone, runtime
fx = FeatureExtractor(load_backbone("demo-shapes"), ["block3_pool"], ["avg", "max"], runtime="openvino")
fx.run_batch(np.zeros((1, 64, 64, 3), np.uint8))
print("RESULT", runtime.conversion_count(), fx.runtime)
"""


def test_second_extractor_and_second_process_convert_nothing(fresh_cache):
    backbone = load_backbone("demo-shapes")
    before = rt.conversion_count()
    first = FeatureExtractor(backbone, ["block3_pool"], ["avg", "max"], runtime="openvino")
    assert rt.conversion_count() == before + 1 and rt.is_converted(first.plan)
    assert list(fresh_cache.glob("*.xml"))
    FeatureExtractor(backbone, ["block3_pool"], ["avg", "max"], runtime="openvino", precision="bfloat16")
    assert rt.conversion_count() == before + 1  # same graph, other precision: a compile hint, no conversion

    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    child = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, env=env, timeout=240)
    assert child.returncode == 0, child.stderr[-2000:]
    assert "RESULT 0 openvino" in child.stdout


def test_a_new_configuration_is_served_by_tensorflow_while_converting(fresh_cache):
    backbone = load_backbone("demo-shapes")
    fx = FeatureExtractor(backbone, ["block2_conv1"], ["avg"], background=True)
    # Served at once: TensorFlow until the conversion lands (it may already have, on a fast machine).
    first = fx.extract([np.zeros((64, 64, 3), np.uint8)])
    assert first.runtime in ("tensorflow", "openvino")
    assert fx.wait_ready(timeout=120)
    assert fx.is_ready() and fx.runtime == "openvino"
    second = fx.extract([np.zeros((64, 64, 3), np.uint8)])
    assert second.runtime == "openvino"
    _relative_close(second.features["block2_conv1/avg"], first.features["block2_conv1/avg"])
    # Cached now: a new extractor for it converts nothing and serves OpenVINO from the start.
    count = rt.conversion_count()
    again = FeatureExtractor(backbone, ["block2_conv1"], ["avg"], background=True)
    assert again.runtime == "openvino" and rt.conversion_count() == count


# ------------------------------------------------------------------ failures
class _HostOp(keras.layers.Layer):
    """A layer that runs Python on the host (tf.numpy_function): OpenVINO has no such operation."""

    def call(self, x):
        y = tf.numpy_function(lambda a: np.maximum(a, 0).astype(np.float32), [x], tf.float32)
        return tf.reshape(y, tf.shape(x))


def _unconvertible():
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = _HostOp(name="host")(x)
    x = keras.layers.Conv2D(4, 3, name="conv2")(x)
    return backbone_from_model(keras.Model(inputs, x, name="odd"))


def test_unconvertible_model_fails_under_openvino_and_falls_back_under_auto(fresh_cache):
    backbone = _unconvertible()
    with pytest.raises(rt.ConversionError) as info:
        FeatureExtractor(backbone, ["conv2"], ["avg"], runtime="openvino")
    assert info.value.reason and "odd" in str(info.value)

    fx = FeatureExtractor(backbone, ["conv2"], ["avg"], runtime="auto")
    assert fx.runtime == "tensorflow"
    assert fx.runtime_note and "running on TensorFlow" in fx.runtime_note and "\n" not in fx.runtime_note
    batch = _batch(2, (32, 32))
    result = fx.extract(list(batch))
    assert result.runtime == "tensorflow" and fx.runtime_note in result.notes
    reference = FeatureExtractor(backbone, ["conv2"], ["avg"], runtime="tensorflow").run_batch(batch)
    np.testing.assert_array_equal(result.features["conv2/avg"], reference["conv2/avg"])


def test_converter_crash_is_a_conversion_error(fresh_cache, monkeypatch):
    def broken(function):
        raise RuntimeError("Cannot create Foo layer from unsupported opset")

    monkeypatch.setattr(rt, "_convert_to_ov", broken)
    backbone = load_backbone("demo-shapes")
    with pytest.raises(rt.ConversionError, match="unsupported opset"):
        FeatureExtractor(backbone, ["block1_pool"], ["avg"], runtime="openvino")
    fx = FeatureExtractor(backbone, ["block1_pool"], ["avg"])
    assert fx.runtime == "tensorflow" and "unsupported opset" in fx.runtime_note


def test_unknown_runtime_is_refused():
    with pytest.raises(rt.RuntimeChoiceError, match="tensorflow"):
        FeatureExtractor(load_backbone("demo-shapes"), ["block1_pool"], ["avg"], runtime="onnx")


def test_float32_hint_is_explicit():
    fx = FeatureExtractor(load_backbone("demo-shapes"), ["block1_pool"], ["avg"], runtime="openvino")
    import openvino as ov

    assert fx._engine._compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32
    assert fx._engine._compiled.get_property("INFERENCE_NUM_THREADS") == rt.openvino_threads()


# ------------------------------------------------------------------ provenance in exports
@pytest.mark.parametrize("runtime", ["tensorflow", "openvino"])
def test_exports_record_runtime_and_precision(tmp_path, runtime):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(_batch(1, (40, 40), seed=i)[0]).save(folder / f"{i}.png")
    for suffix in (".npz", ".parquet"):
        out = tmp_path / f"feats{suffix}"
        code = main(["extract", "demo-shapes", str(folder), "--layers", "block2_pool", "--runtime", runtime,
                     "--out", str(out)])
        assert code == 0
        feats, names, _ = read_features(out)
        assert list(feats) == ["block2_pool/avg"] and len(names) == 3
        if suffix == ".npz":
            npz = np.load(out)
            assert (str(npz["runtime"]), str(npz["precision"])) == (runtime, "float32")
        else:
            import pyarrow.parquet as pq

            meta = json.loads(pq.read_schema(io.BytesIO(out.read_bytes())).metadata[b"layer_explorer"])
            assert (meta["runtime"], meta["precision"]) == (runtime, "float32")


# ------------------------------------------------------------------ retracing (issue 10, item 10)
class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_forward_traces_once_across_batch_sizes_image_sets_and_extractors():
    """One trace per extractor, and no "triggered tf.function retracing" warning however it is called.

    The warning came from building several extractors (a sweep builds one per layer; the app one per
    configuration): tf.function counts traces per *code object*, and every extractor's forward
    shares one. Calling each extractor's concrete function directly never consults that counter.
    """
    backbone = load_backbone("demo-shapes")
    records = _Records()  # on TensorFlow's own logger: it does not propagate to the root one
    logging.getLogger("tensorflow").addHandler(records)
    try:
        _trace_everything(backbone)
    finally:
        logging.getLogger("tensorflow").removeHandler(records)
    retraced = [m for m in records.messages if "retracing" in m]
    assert not retraced, retraced[0]


def _trace_everything(backbone):
    extractors = [FeatureExtractor(backbone, [layer], ["avg"], runtime="tensorflow")
                  for layer in ["block1_conv1", "block1_pool", "block2_conv1", "block2_pool", "block3_conv1",
                                "block3_pool"]]
    for fx in extractors:
        for n in (1, 3, 5, 2):
            fx.run_batch(_batch(n, (64, 64), seed=n))
        fx.extract([_batch(1, (64, 64), seed=9)[0]] * 7, batch_size=4)  # another image set, 4 + 3
        fx.extract(list(_batch(2, (64, 64), seed=10)))
        assert fx.traces == 1
    native = FeatureExtractor(backbone, ["block2_pool"], ["avg"], resize="native", runtime="tensorflow")
    native.extract([np.zeros((40, 50, 3), np.uint8), np.zeros((64, 64, 3), np.uint8), np.zeros((33, 71, 3), np.uint8)])
    assert native.traces == 1
