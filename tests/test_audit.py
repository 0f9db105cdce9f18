"""The model-file audit: real models saved by Keras, hostile variants crafted from them.

Every refusal is checked for its reason text, every acceptance by loading the model back and
comparing its predictions with the original's. Models are tiny (16x16 inputs) so the whole
module runs in seconds.
"""

from __future__ import annotations

import io
import json
import os
import stat
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
from keras import layers

from extractor import audit
from extractor.audit import (
    ALLOW_H5_ENV,
    ALLOW_UPLOAD_ENV,
    AuditReport,
    ModelRefusedError,
    audit_model_bytes,
    audit_model_file,
    h5_enabled,
    load_audited_model,
    load_audited_model_file,
    model_upload_enabled,
)
from extractor.errors import LayerExplorerError


@keras.saving.register_keras_serializable(package="Evil")
class EvilLayer(layers.Layer):
    """Stands in for any custom layer: its code would run at load time."""

    def call(self, x):
        return x


# --- models made once per module ----------------------------------------------------------------


def _cnn() -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            layers.Conv2D(4, 3, activation="relu", name="conv1"),
            layers.MaxPooling2D(name="pool1"),
            layers.Conv2D(8, 3, name="conv2"),
            layers.GlobalAveragePooling2D(name="gap"),
            layers.Dense(3, activation="softmax", name="head"),
        ],
        name="tiny_cnn",
    )
    # A function loss is saved as {"module": "builtins", "class_name": "function"}: allowed.
    model.compile(optimizer="adam", loss=keras.losses.mean_squared_error)
    return model


def _nested() -> keras.Model:
    keras.utils.set_random_seed(1)
    inp = keras.Input((16, 16, 3))
    x = layers.Conv2D(4, 3, padding="same", activation="relu", name="b_conv1")(inp)
    x = layers.BatchNormalization(name="b_bn")(x)
    x = x * 0.5  # saved as an op from keras.src.ops.numpy
    x = layers.Conv2D(8, 3, strides=2, name="b_conv2")(x)
    backbone = keras.Model(inp, x, name="backbone")
    outer = keras.Input((16, 16, 3))
    y = layers.Rescaling(1 / 255.0, name="rescale")(outer)
    y = backbone(y)
    y = layers.GlobalAveragePooling2D(name="gap")(y)
    y = layers.Dense(2, name="head")(y)
    return keras.Model(outer, y, name="transfer")


def _images(n: int = 2) -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 255, size=(n, 16, 16, 3)).astype("float32")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    models = {"cnn": _cnn(), "nested": _nested()}
    models["cnn"].save(d / "cnn.keras")
    models["nested"].save(d / "nested.keras")
    models["cnn"].save(d / "cnn.h5")
    models["cnn"].save_weights(d / "cnn.weights.h5")
    keras.src.saving.saving_lib.save_model(models["cnn"], d / "cnn_npz.keras", weights_format="npz")

    keras.Sequential([keras.Input((16, 16, 3)), layers.Lambda(lambda t: t * 2.0, name="lambda"),
                      layers.GlobalAveragePooling2D(), layers.Dense(2)]).save(d / "lambda.keras")
    keras.Sequential([keras.Input((16, 16, 3)), EvilLayer(name="evil"), layers.GlobalAveragePooling2D(),
                      layers.Dense(2)]).save(d / "custom.keras")

    a, b = keras.Input((16, 16, 3)), keras.Input((16, 16, 3))
    z = layers.GlobalAveragePooling2D()(layers.Concatenate()([a, b]))
    keras.Model([a, b], layers.Dense(2)(z)).save(d / "two_inputs.keras")
    keras.Sequential([keras.Input((8,)), layers.Dense(2)]).save(d / "flat.keras")
    return d, models


def _rewrite(src: Path, mutate=None, *, add=(), drop=(), replace=None) -> bytes:
    """Copy a .keras archive in memory, optionally editing config.json and its member list."""
    out = io.BytesIO()
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out, "w") as zout, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are the point of some tests
        for info in zin.infolist():
            if info.filename in drop:
                continue
            data = zin.read(info.filename)
            if info.filename == "config.json" and mutate is not None:
                config = json.loads(data)
                mutate(config)
                data = json.dumps(config).encode()
            if replace and info.filename in replace:
                data = replace[info.filename]
            zout.writestr(info.filename, data)
        for item in add:
            name, data = item[0], item[1]
            zout.writestr(name, data, compress_type=item[2] if len(item) > 2 else zipfile.ZIP_STORED)
    return out.getvalue()


def _layer(config: dict, name: str) -> dict:
    """The object dict of the layer called `name`, anywhere in a config."""
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "class_name" in node and isinstance(node.get("config"), dict) and node["config"].get("name") == name:
                return node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    raise KeyError(name)


def _refused(report: AuditReport, *fragments: str) -> None:
    assert not report.accepted, report
    for fragment in fragments:
        assert any(fragment in r for r in report.reasons), (fragment, report.reasons)


def _predict(model, x) -> np.ndarray:
    return np.asarray(model(x, training=False))


# --- the switches -------------------------------------------------------------------------------


@pytest.mark.parametrize("value, expected", [
    (None, False), ("", False), ("0", False), ("false", False), ("no", False), ("2", False),
    ("1", True), (" 1 ", True), ("true", True), ("TRUE", True), ("yes", True), ("on", True),
])
def test_flags_read_the_environment(value, expected):
    env = {} if value is None else {ALLOW_UPLOAD_ENV: value, ALLOW_H5_ENV: value}
    assert model_upload_enabled(env) is expected
    assert h5_enabled(env) is expected


def test_flags_default_to_os_environ(monkeypatch):
    monkeypatch.delenv(ALLOW_UPLOAD_ENV, raising=False)
    monkeypatch.delenv(ALLOW_H5_ENV, raising=False)
    assert not model_upload_enabled() and not h5_enabled()
    monkeypatch.setenv(ALLOW_UPLOAD_ENV, "1")
    assert model_upload_enabled() and not h5_enabled()


# --- accepted models ----------------------------------------------------------------------------


def test_plain_cnn_is_accepted_and_loads_identically(saved, tmp_path, monkeypatch):
    d, models = saved
    data = (d / "cnn.keras").read_bytes()
    with zipfile.ZipFile(d / "cnn.keras") as zf:
        assert '"module": "builtins"' in zf.read("config.json").decode()  # the function-loss path is covered

    report = audit_model_bytes(data, "cnn.keras")
    assert report.accepted and report.file_kind == "keras" and report.reasons == []
    assert any("5 layers" in n and "Conv2D×2" in n for n in report.notes), report.notes

    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    calls = []
    real_load = keras.saving.load_model

    def spy(path, **kwargs):
        st = os.stat(path)
        calls.append((Path(path), stat.S_IMODE(st.st_mode), kwargs))
        return real_load(path, **kwargs)

    monkeypatch.setattr(keras.saving, "load_model", spy)
    loaded = load_audited_model(data, "../../evil name.keras")

    (path, mode, kwargs), = calls
    assert kwargs == {"safe_mode": True, "compile": False}
    assert path.parent == private and path.suffix == ".keras" and "evil" not in path.name
    assert mode == 0o600
    assert not path.exists() and list(private.iterdir()) == []
    x = _images()
    np.testing.assert_allclose(_predict(loaded, x), _predict(models["cnn"], x), rtol=1e-6, atol=1e-6)


def test_nested_transfer_model_is_accepted_and_loads_identically(saved):
    d, models = saved
    data = (d / "nested.keras").read_bytes()
    report = audit_model_bytes(data, "nested.keras")
    assert report.accepted, report.reasons
    assert "1 nested model(s)" in report.notes
    loaded = load_audited_model(data, "nested.keras")
    assert loaded.get_layer("backbone").get_layer("b_conv2").filters == 8
    x = _images()
    np.testing.assert_allclose(_predict(loaded, x), _predict(models["nested"], x), rtol=1e-5, atol=1e-5)


def test_npz_weights_with_pickled_arrays_are_refused(saved):
    # Keras 3.15 writes npz weights as pickled object arrays (and can't load them without pickle).
    d, _ = saved
    _refused(audit_model_bytes((d / "cnn_npz.keras").read_bytes()),
             "model.weights.npz array '__root__.npy' is a pickled object array, not numbers")


def test_builtin_activation_given_as_a_function_object_is_accepted(saved):
    d, _ = saved

    def mutate(config):
        _layer(config, "head")["config"]["activation"] = {
            "module": "keras.activations", "class_name": "function", "config": "softmax",
            "registered_name": "softmax"}

    assert audit_model_bytes(_rewrite(d / "cnn.keras", mutate)).accepted


def test_local_file_helpers(saved, tmp_path):
    d, models = saved
    assert audit_model_file(d / "cnn.keras").accepted
    x = _images()
    np.testing.assert_allclose(_predict(load_audited_model_file(d / "cnn.keras"), x), _predict(models["cnn"], x),
                               rtol=1e-6)
    _refused(audit_model_file(tmp_path / "missing.keras"), "cannot read the file")
    _refused(audit_model_file(tmp_path), "not a regular file")
    with pytest.raises(ModelRefusedError, match="cannot read the file"):
        load_audited_model_file(tmp_path / "missing.keras")


def test_verdict_is_deterministic(saved):
    d, _ = saved
    for name in ("cnn.keras", "lambda.keras"):
        data = (d / name).read_bytes()
        assert audit_model_bytes(data, name) == audit_model_bytes(data, name)


# --- hostile configs ----------------------------------------------------------------------------


def test_real_lambda_layer_is_refused(saved):
    d, _ = saved
    report = audit_model_bytes((d / "lambda.keras").read_bytes(), "lambda.keras")
    assert report.reasons[0] == "layer 'lambda' is a Lambda layer (runs arbitrary Python)"
    _refused(report, "contains a serialized Python lambda")
    with pytest.raises(ModelRefusedError) as info:
        load_audited_model((d / "lambda.keras").read_bytes(), "lambda.keras")
    assert isinstance(info.value, LayerExplorerError)
    assert info.value.reasons == report.reasons
    assert "'lambda.keras' was refused" in str(info.value)


def test_real_custom_registered_layer_is_refused(saved):
    d, _ = saved
    report = audit_model_bytes((d / "custom.keras").read_bytes())
    assert report.reasons == ["layer 'evil' uses the custom registered object 'Evil>EvilLayer' (custom code is not allowed)"]


@pytest.mark.parametrize("module, class_name", [
    ("os", "system"), ("posix", "system"), ("builtins", "eval"), ("subprocess", "Popen"),
    ("importlib", "import_module"), ("numpy", "load"), ("layer_explorer_probe_module", "Gadget"),
])
def test_module_gadgets_are_refused(saved, module, class_name):
    d, _ = saved

    def mutate(config):
        entry = _layer(config, "head")
        entry.update(module=module, class_name=class_name, config={"name": "head", "command": "id"})

    report = audit_model_bytes(_rewrite(d / "cnn.keras", mutate))
    _refused(report, f"layer 'head' names {module}.{class_name}: module {module!r} is outside Keras")
    assert "layer_explorer_probe_module" not in sys.modules  # the audit imports nothing it reads


@pytest.mark.parametrize("module, class_name, fragment", [
    ("keras.utils", "get_file", "names keras.utils.get_file, which is not an allowed built-in Keras class"),
    ("keras.src.saving.saving_lib", "load_model", "not an allowed built-in Keras class"),
    ("keras.layers", "Input", "names keras.layers.Input, which is not an allowed"),
    ("keras", "Function", "names keras.Function, which is not an allowed"),
    ("keras.src.ops.core", "WhileLoop", "not an allowed built-in Keras class"),
    ("keras.src.layers.core.lambda_layer", "Lambda", "is a Lambda layer (runs arbitrary Python)"),
])
def test_keras_internal_gadgets_are_refused(saved, module, class_name, fragment):
    d, _ = saved

    def mutate(config):
        _layer(config, "head").update(module=module, class_name=class_name)

    _refused(audit_model_bytes(_rewrite(d / "cnn.keras", mutate)), fragment)


@pytest.mark.parametrize("class_name, fragment", [
    ("Lambda", "is a Lambda layer (runs arbitrary Python)"),
    ("TFSMLayer", "is a TFSMLayer (loads a TensorFlow SavedModel"),
    ("TorchModuleWrapper", "is a TorchModuleWrapper (unpickles a PyTorch module"),
    ("JaxLayer", "is a JaxLayer (wraps arbitrary JAX functions)"),
    ("FlaxLayer", "is a FlaxLayer"),
    ("StringLookup", "is a StringLookup layer (can read a vocabulary file from the server"),
    ("IntegerLookup", "is an IntegerLookup layer"),
    ("TextVectorization", "is a TextVectorization layer"),
    ("TFOpLambda", "is a Keras 2 TFOpLambda layer"),
])
def test_dangerous_layer_classes_are_refused_by_name(saved, class_name, fragment):
    d, _ = saved

    def mutate(config):
        entry = _layer(config, "head")
        entry["class_name"] = class_name
        entry["config"]["vocabulary"] = "/etc/passwd"

    _refused(audit_model_bytes(_rewrite(d / "cnn.keras", mutate)), f"layer 'head' {fragment}")


def test_enable_unsafe_deserialization_is_refused_in_every_form(saved):
    d, _ = saved
    forms = [
        {"module": "keras.config", "class_name": "enable_unsafe_deserialization", "config": {},
         "registered_name": None},
        {"module": "keras.config", "class_name": "function", "config": "enable_unsafe_deserialization",
         "registered_name": "enable_unsafe_deserialization"},
        {"module": "builtins", "class_name": "function", "config": "enable_unsafe_deserialization",
         "registered_name": "function"},
        "keras.config.enable_unsafe_deserialization",
    ]
    for form in forms:
        def mutate(config, form=form):
            _layer(config, "head")["config"]["activation"] = form

        _refused(audit_model_bytes(_rewrite(d / "cnn.keras", mutate)),
                 "layer 'head' mentions 'enable_unsafe_deserialization', which would turn off Keras safe mode")


@pytest.mark.parametrize("activation, fragment", [
    ({"module": "keras.activations", "class_name": "function", "config": "deserialize"},
     "names the function keras.activations.deserialize, which is not a built-in Keras activation"),
    ({"module": "os", "class_name": "function", "config": "system"}, "names os.system: module 'os' is outside Keras"),
    ({"class_name": "function", "config": "relu"}, "names the function relu"),
    ({"module": "keras.activations", "class_name": "function", "config": "relu", "registered_name": "Evil>relu"},
     "uses the custom registered object 'Evil>relu'"),
    ({"class_name": "__lambda__", "config": {"code": "AAAA", "defaults": None, "closure": None}},
     "contains a serialized Python lambda (runs arbitrary Python)"),
    ({"class_name": "__typespec__", "spec_name": "TensorSpec", "module": "tensorflow", "config": [],
      "registered_name": None}, "contains the special object '__typespec__'"),
    ({"class_name": "__numpy__", "config": {"value": [1], "dtype": "object"}}, "has a __numpy__ with dtype 'object', which is not a plain numeric dtype"),
    ({"module": "keras.src.utils.torch_utils", "class_name": "Layer", "config": {}},
     "names keras.src.utils.torch_utils.Layer, which is not an allowed"),
])
def test_hostile_nested_objects_are_refused(saved, activation, fragment):
    d, _ = saved

    def mutate(config):
        _layer(config, "head")["config"]["activation"] = activation

    _refused(audit_model_bytes(_rewrite(d / "cnn.keras", mutate)), f"layer 'head' {fragment}")


def test_registered_name_must_match_a_builtin(saved):
    d, _ = saved

    def custom(config):
        _layer(config, "head")["registered_name"] = "Evil>Dense"

    def mismatch(config):
        _layer(config, "head")["registered_name"] = "Conv2D"

    _refused(audit_model_bytes(_rewrite(d / "cnn.keras", custom)), "uses the custom registered object 'Evil>Dense'")
    _refused(audit_model_bytes(_rewrite(d / "cnn.keras", mismatch)),
             "has registered_name 'Conv2D', which does not match class_name 'Dense'")


def test_compile_config_is_audited_too(saved):
    d, _ = saved

    def mutate(config):
        config["compile_config"]["loss"] = {"module": "evil_losses", "class_name": "Boom", "config": {}}

    _refused(audit_model_bytes(_rewrite(d / "cnn.keras", mutate)), "module 'evil_losses' is outside Keras")


def test_a_single_layer_is_not_a_model(saved):
    d, _ = saved

    def mutate(config):
        head = _layer(config, "head")
        config.clear()
        config.update(head)

    _refused(audit_model_bytes(_rewrite(d / "cnn.keras", mutate)), "holds a single Dense, not a model")


def test_config_json_must_be_json(saved):
    d, _ = saved
    report = audit_model_bytes(_rewrite(d / "cnn.keras", replace={"config.json": b"{not json"}))
    _refused(report, "config.json is not valid JSON")
    deep = b"[" * 100_000 + b"]" * 100_000
    _refused(audit_model_bytes(_rewrite(d / "cnn.keras", replace={"config.json": deep})), "config.json is nested")


def test_allow_list_is_derived_from_keras_layers():
    tables = audit._tables()
    denied = set(audit._DENIED_WHY)
    for name, obj in vars(keras.layers).items():
        if isinstance(obj, type) and issubclass(obj, keras.Layer):
            assert (obj in tables.allowed_classes) == (name not in denied and obj.__name__ not in denied), name
    assert keras.layers.Conv2D in tables.allowed_classes
    assert keras.activations.relu in tables.allowed_functions
    assert keras.activations.deserialize not in tables.allowed_functions


# --- hostile archives ---------------------------------------------------------------------------


@pytest.mark.parametrize("member, fragment", [
    ("../evil.py", "member '../evil.py' escapes the archive (path traversal)"),
    ("assets/../../evil.py", "escapes the archive (path traversal)"),
    ("/etc/cron.d/evil", "member '/etc/cron.d/evil' is an absolute path"),
    ("C:/Windows/evil.dll", "is an absolute path"),
    ("a\\b.txt", "has a backslash or control character"),
    ("assets/vocabulary.txt", "is an asset file"),
    ("evil.py", "unexpected member 'evil.py' (a Keras archive holds only config.json"),
    ("config.json", "member 'config.json' appears 2 times"),
])
def test_unexpected_archive_members_are_refused(saved, member, fragment):
    d, _ = saved
    _refused(audit_model_bytes(_rewrite(d / "cnn.keras", add=[(member, b"x")])), fragment)


def test_archive_without_config_or_weights_is_refused(saved):
    d, _ = saved
    _refused(audit_model_bytes(_rewrite(d / "cnn.keras", drop={"config.json"})), "config.json is missing")
    _refused(audit_model_bytes(_rewrite(d / "cnn.keras", drop={"model.weights.h5"})),
             "the weights file (model.weights.h5) is missing")


def test_zip_bombs_and_member_floods_are_refused(saved):
    d, _ = saved
    bomb = _rewrite(d / "cnn.keras", drop={"model.weights.h5"},
                    add=[("model.weights.h5", bytes(8 * 2**20), zipfile.ZIP_DEFLATED)])
    assert len(bomb) < 2**20
    _refused(audit_model_bytes(bomb), "member 'model.weights.h5' expands from", "(a zip bomb)")
    flood = _rewrite(d / "cnn.keras", add=[(f"f{i}", b"") for i in range(20)])
    _refused(audit_model_bytes(flood), "the archive declares 23 members; a Keras archive holds 3")


def _with_weights_h5(src: Path, edit) -> bytes:
    """Rewrite the archive's model.weights.h5 with h5py, applying `edit(file)`."""
    with zipfile.ZipFile(src) as zf:
        raw = zf.read("model.weights.h5")
    buf = io.BytesIO(raw)
    with h5py.File(buf, "r+") as f:
        edit(f)
    return _rewrite(src, replace={"model.weights.h5": buf.getvalue()})


def test_weights_that_reach_outside_the_file_are_refused(saved):
    d, _ = saved

    def external_link(f):
        f["evil"] = h5py.ExternalLink("/etc/passwd", "/")

    def external_data(f):
        f.create_dataset("evil", shape=(16,), dtype="uint8", external=[("/etc/hostname", 0, 16)])

    def soft_link(f):
        f["evil"] = h5py.SoftLink("/layers")

    def strings(f):
        f.create_dataset("evil", data=np.array([b"a", b"bc"], dtype=h5py.string_dtype()))

    _refused(audit_model_bytes(_with_weights_h5(d / "cnn.keras", external_link)), "has a ExternalLink at '/evil'")
    _refused(audit_model_bytes(_with_weights_h5(d / "cnn.keras", external_data)),
             "has a dataset stored in an external file at '/evil'")
    _refused(audit_model_bytes(_with_weights_h5(d / "cnn.keras", soft_link)), "has a SoftLink at '/evil'")
    _refused(audit_model_bytes(_with_weights_h5(d / "cnn.keras", strings)), "has a non-numeric dataset at '/evil'")


# --- files that are not models at all -----------------------------------------------------------


def test_empty_random_oversized_and_broken_files_are_refused(saved):
    d, _ = saved
    assert audit_model_bytes(b"") == AuditReport(False, "unknown", ["the file is empty"], [])
    report = audit_model_bytes(np.random.default_rng(0).bytes(4096), "model.keras")
    assert report.file_kind == "unknown"
    _refused(report, "not a Keras model file (expected a .keras zip archive)")
    _refused(audit_model_bytes((d / "cnn.keras").read_bytes(), max_bytes=1000), "KiB, over the 1000 bytes limit")
    _refused(audit_model_bytes(b"PK\x03\x04" + bytes(100)), "not a readable zip archive")
    with pytest.raises(ModelRefusedError, match="the file is empty"):
        load_audited_model(b"", "empty.keras")


def test_fake_h5_is_refused_with_and_without_allow_h5():
    fake = b"\x89HDF\r\n\x1a\n" + np.random.default_rng(1).bytes(2048)
    off = audit_model_bytes(fake, "model.h5")
    assert off.file_kind == "h5"
    _refused(off, f"set {ALLOW_H5_ENV}=1")
    _refused(audit_model_bytes(fake, "model.h5", allow_h5=True), "not a readable HDF5 file")


def test_real_h5_is_accepted_only_when_allowed(saved):
    d, models = saved
    data = (d / "cnn.h5").read_bytes()
    _refused(audit_model_bytes(data, "cnn.h5"), "legacy HDF5 (.h5) models are turned off")
    report = audit_model_bytes(data, "cnn.h5", allow_h5=True)
    assert report.accepted and report.file_kind == "h5", report.reasons
    loaded = load_audited_model(data, "cnn.h5", allow_h5=True)
    x = _images()
    np.testing.assert_allclose(_predict(loaded, x), _predict(models["cnn"], x), rtol=1e-6, atol=1e-6)


def test_h5_config_is_walked_the_same_way(saved, tmp_path):
    d, _ = saved
    path = tmp_path / "evil.h5"
    path.write_bytes((d / "cnn.h5").read_bytes())
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        _layer(config, "head")["class_name"] = "Lambda"
        _layer(config, "conv1").update(module="os", class_name="system")
        config["config"]["trainable"] = "deserialize"
        f.attrs["model_config"] = json.dumps(config)
    _refused(audit_model_bytes(path.read_bytes(), "evil.h5", allow_h5=True),
             "layer 'head' is a Lambda layer", "module 'os' is outside Keras", "legacy .h5 loader would turn")
    _refused(audit_model_bytes((d / "cnn.weights.h5").read_bytes(), allow_h5=True), "has no model_config")


def test_h5_legacy_json_specials(saved, tmp_path):
    d, _ = saved

    def with_kernel_size(value) -> bytes:
        path = tmp_path / "special.h5"
        path.write_bytes((d / "cnn.h5").read_bytes())
        with h5py.File(path, "r+") as f:
            config = json.loads(f.attrs["model_config"])
            _layer(config, "conv1")["config"]["kernel_size"] = value
            f.attrs["model_config"] = json.dumps(config)
        return path.read_bytes()

    # Keras 2 files write tuples this way; the legacy JSON hook decodes them without imports.
    assert audit_model_bytes(with_kernel_size({"class_name": "__tuple__", "items": [3, 3]}), allow_h5=True).accepted
    _refused(audit_model_bytes(with_kernel_size({"class_name": "TypeSpec", "type_spec": "tf.TensorSpec",
                                                 "serialized": []}), allow_h5=True),
             "layer 'conv1' contains a TensorFlow TypeSpec object")


# --- checks after loading -----------------------------------------------------------------------


def test_models_that_are_not_one_image_input_are_refused_after_loading(saved):
    d, _ = saved
    two = (d / "two_inputs.keras").read_bytes()
    assert audit_model_bytes(two).accepted
    with pytest.raises(ModelRefusedError) as info:
        load_audited_model(two, "two.keras")
    assert info.value.reasons == ["the model has 2 inputs; Layer Explorer needs exactly one image input"]
    with pytest.raises(ModelRefusedError) as info:
        load_audited_model((d / "flat.keras").read_bytes(), "flat.keras")
    assert info.value.reasons[0].startswith("the input shape is (None, 8); Layer Explorer needs a batch of images")


def test_parameter_cap(saved):
    d, models = saved
    n = models["cnn"].count_params()
    data = (d / "cnn.keras").read_bytes()
    with pytest.raises(ModelRefusedError) as info:
        load_audited_model(data, max_params=n - 1)
    assert info.value.reasons == [f"the model has {n:,} parameters, over the {n - 1:,} limit"]
    assert load_audited_model(data, max_params=n).count_params() == n


def test_load_failures_are_short_and_show_no_server_paths(saved, tmp_path, monkeypatch):
    d, _ = saved
    private = tmp_path / "secret-server-dir"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))

    def mutate(config):
        _layer(config, "conv2")["config"]["filters"] = 5  # weights no longer fit

    data = _rewrite(d / "cnn.keras", mutate)
    assert audit_model_bytes(data).accepted
    with pytest.raises(ModelRefusedError) as info:
        load_audited_model(data, "cnn.keras")
    (reason,) = info.value.reasons
    assert reason.startswith("could not be loaded: ") and len(reason) < 260
    assert "secret-server-dir" not in str(info.value) and str(tmp_path) not in str(info.value)
    assert list(private.iterdir()) == []


def test_a_small_file_declaring_huge_layers_is_refused_without_the_memory(saved, tmp_path):
    """Keras allocates declared weights before anything counts them: a test load in a capped child
    process refuses the file, and this process never holds the memory."""
    import resource

    d, _ = saved
    big = keras.Sequential([keras.Input((16, 16, 3)), layers.Flatten(name="flat"), layers.Dense(4, name="wide")])
    big.save(tmp_path / "big.keras")

    def inflate(config):
        _layer(config, "wide")["config"]["units"] = 2_500_000  # 768 × 2.5 M ≈ 1.9 G params ≈ 7.7 GB

    data = _rewrite(tmp_path / "big.keras", inflate)
    assert len(data) < 100_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ModelRefusedError) as info:
        load_audited_model(data, "big.keras", probe_memory=3 * 2**30)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert "memory" in " ".join(info.value.reasons)
    assert grown_mib < 500, f"this process grew by {grown_mib:.0f} MiB"
