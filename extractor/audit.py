"""Audit a user-supplied Keras model file before anything loads it.

Loading a Keras model runs code its author chose: Keras's ``safe_mode`` blocks
serialized lambdas, but a config can still name layers that execute Python
(``Lambda``), unpickle (``TorchModuleWrapper``), load a TensorFlow graph from a
server path (``TFSMLayer``), read server files (lookup layers), or any class that
Keras can import (a string of CVEs through 2026). So model upload is off unless
``LAYER_EXPLORER_ALLOW_MODEL_UPLOAD=1``, and every file is audited first:

* the bytes are read as plain data only (``zipfile``, ``json``, and ``h5py``
  metadata reads): the audit never imports a class the file names and never runs
  model code;
* a ``.keras`` archive may hold exactly what Keras writes (``config.json``,
  ``metadata.json`` and one of ``model.weights.h5`` / ``model.weights.npz``) and
  nothing else; sizes, member counts and compression ratios are capped;
* every object in the config (a dict with ``class_name``) must resolve to a
  built-in Keras class on an allow-list derived from the installed Keras's public
  namespaces (``keras.layers`` and friends), minus the dangerous classes; functions
  must be built-in activations, losses or metrics;
* the weights file may hold only numeric, in-file, non-virtual datasets.

Only then does :func:`load_audited_model` write the bytes to a private temp file
(name chosen here, never the uploaded one), load it with ``safe_mode=True`` and
``compile=False``, delete it, and check that the result is a one-input image model
of bounded size.

Example:
    >>> report = audit_model_bytes(uploaded.getvalue(), uploaded.name)
    >>> report.accepted, report.reasons[:1]
    (False, ["layer 'lambda' is a Lambda layer (runs arbitrary Python)"])
    >>> model = load_audited_model(data, "cnn.keras")   # raises ModelRefusedError if refused
"""

from __future__ import annotations

import functools
import inspect
import io
import json
import math
import os
import re
import struct
import tempfile
import zipfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import LayerExplorerError
from .sources import byte_size as _mib

__all__ = [
    "ALLOW_H5_ENV",
    "ALLOW_UPLOAD_ENV",
    "DEFAULT_MAX_MODEL_BYTES",
    "DEFAULT_MAX_PARAMS",
    "AuditReport",
    "ModelRefusedError",
    "audit_model_bytes",
    "audit_model_file",
    "h5_enabled",
    "load_audited_model",
    "load_audited_model_file",
    "model_upload_enabled",
]

ALLOW_UPLOAD_ENV = "LAYER_EXPLORER_ALLOW_MODEL_UPLOAD"
ALLOW_H5_ENV = "LAYER_EXPLORER_ALLOW_H5"
DEFAULT_MAX_MODEL_BYTES = 300 * 2**20
DEFAULT_MAX_PARAMS = 150_000_000
# Address space for the test load: TensorFlow itself plus 150 M float32 parameters, with room.
DEFAULT_PROBE_MEMORY = 6 * 2**30
_PROBE_TIMEOUT_S = 180

# Values that switch a flag on. Anything else, including "0", "false", "" and unset, is off.
_TRUE_VALUES = frozenset({"1", "true", "yes", "on"})

_ZIP_MAGIC = b"PK\x03\x04"
_ZIP_EOCD = b"PK\x05\x06"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"

# What Keras 3 writes (keras/src/saving/saving_lib.py: _CONFIG_FILENAME, _METADATA_FILENAME,
# _VARS_FNAME_H5 / _VARS_FNAME_NPZ). Keras 3.15's npz weights hold pickled dicts, which the audit
# refuses (Keras can't read them back without pickle either); numeric-only npz would pass. Assets are written only by StringLookup, IntegerLookup and
# TextVectorization, which are refused anyway; an archive with more than three members also
# makes Keras extract the whole archive to disk, so nothing else is allowed.
_CONFIG_MEMBER = "config.json"
_METADATA_MEMBER = "metadata.json"
_WEIGHTS_MEMBERS = ("model.weights.h5", "model.weights.npz")
_EXPECTED_MEMBERS = frozenset({_CONFIG_MEMBER, _METADATA_MEMBER, *_WEIGHTS_MEMBERS})

_MAX_ZIP_MEMBERS = 16  # declared in the end-of-central-directory record, checked before parsing it
_MAX_CONFIG_BYTES = 64 * 2**20
_MAX_METADATA_BYTES = 2**20
_BOMB_FLOOR_BYTES = 2**20  # below this, any compression ratio is fine
_MAX_EXPANSION = 100  # Keras stores members uncompressed; DEFLATE of real weights is ~1:1
_MAX_CONFIG_DEPTH = 256
_MAX_CONFIG_NODES = 5_000_000
_MAX_H5_OBJECTS = 200_000
_MAX_H5_DEPTH = 64
_MAX_NPZ_MEMBERS = 200_000
_MAX_REASONS = 25
_MAX_SHOWN_NAME = 80

# Classes refused by name (whatever module they claim) and by subclass, with why.
_DENIED_WHY = {
    "Lambda": "is a Lambda layer (runs arbitrary Python)",
    "TFSMLayer": "is a TFSMLayer (loads a TensorFlow SavedModel from a server path and runs its graph)",
    "TorchModuleWrapper": "is a TorchModuleWrapper (unpickles a PyTorch module: arbitrary code)",
    "JaxLayer": "is a JaxLayer (wraps arbitrary JAX functions)",
    "FlaxLayer": "is a FlaxLayer (wraps an arbitrary Flax module)",
    "StringLookup": "is a StringLookup layer (can read a vocabulary file from the server; not an image layer)",
    "IntegerLookup": "is an IntegerLookup layer (can read a vocabulary file from the server; not an image layer)",
    "TextVectorization": "is a TextVectorization layer (can read vocabulary files from the server; not an image layer)",
    # Keras 2 wrappers that call a TensorFlow function named in the config.
    "TFOpLambda": "is a Keras 2 TFOpLambda layer (calls a TensorFlow function named in the file)",
    "SlicingOpLambda": "is a Keras 2 SlicingOpLambda layer (calls a TensorFlow function named in the file)",
}

# Strings with no place in a model config, wherever they appear (keys or values).
_FORBIDDEN_TOKENS = {
    "enable_unsafe_deserialization": "would turn off Keras safe mode",
    "func_load": "names Keras's lambda decoder",
    "marshal.loads": "names a bytecode loader",
    "pickle.loads": "names an unpickler",
    "__import__": "names Python's import hook",
}

# Special `class_name`s that serialization_lib decodes without importing anything.
_HARMLESS_SPECIALS = frozenset({"__keras_tensor__", "__bytes__", "__ellipsis__", "__slice__"})
_ARRAY_SPECIALS = frozenset({"__tensor__", "__numpy__"})
# Decoded by the legacy .h5 JSON hook (keras/src/legacy/saving/json_utils.py) without imports;
# its other specials ("TypeSpec", "CompositeTensor") look classes up in TensorFlow's registries.
_LEGACY_H5_SPECIALS = frozenset({"__tuple__", "TensorShape"})
_TF_REGISTRY_SPECIALS = frozenset({"TypeSpec", "CompositeTensor"})
_ARRAY_DTYPES = frozenset(
    {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
     "float16", "bfloat16", "float32", "float64", "complex64", "complex128", "string"}
)

# Keras's own list for functions saved with module "builtins" (serialization_lib.BUILTIN_MODULES).
_BUILTIN_FUNCTION_MODULES = (
    "activations", "constraints", "initializers", "losses", "metrics", "optimizers", "regularizers",
)

# Public namespaces whose classes may appear in a config (filtered by base class below), and
# the Keras-internal modules Keras itself writes for non-exported classes.
_PUBLIC_NAMESPACES = (
    "keras", "keras.layers", "keras.models", "keras.initializers", "keras.regularizers",
    "keras.constraints", "keras.dtype_policies", "keras.quantizers", "keras.optimizers",
    "keras.optimizers.schedules", "keras.losses", "keras.metrics",
)
_MODEL_MODULES = ("keras.src.models.functional", "keras.src.models.sequential", "keras.src.models.model")
# `x / 255.0` or `x + y` on symbolic tensors is saved as an op from these modules.
_OP_MODULES = ("keras.src.ops.numpy", "keras.src.ops.nn", "keras.src.ops.math", "keras.src.ops.image",
               "keras.src.ops.core")
# Ops that take Python callables, and classes that need data or code objects to work.
_EXCLUDED_CLASS_NAMES = frozenset(
    {"Map", "Scan", "AssociativeScan", "Switch", "WhileLoop", "ForiLoop", "Cond", "VectorizedMap",
     "Function", "GPTQConfig", "AWQConfig"}
)
_FUNCTION_NAMESPACES = ("keras.activations", "keras.losses", "keras.metrics")
_NON_MATH_FUNCTIONS = frozenset({"serialize", "deserialize", "get"})


def model_upload_enabled(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the app may offer custom model upload: ``LAYER_EXPLORER_ALLOW_MODEL_UPLOAD``.

    On for "1", "true", "yes" or "on" (any case, surrounding spaces ignored); off for anything
    else, including unset, "", "0" and "false", so a typo leaves upload off.

    Example:
        >>> model_upload_enabled({"LAYER_EXPLORER_ALLOW_MODEL_UPLOAD": "1"})
        True
        >>> model_upload_enabled({})
        False
    """
    return _flag(environ, ALLOW_UPLOAD_ENV)


def h5_enabled(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether legacy HDF5 (``.h5``) models are accepted: ``LAYER_EXPLORER_ALLOW_H5``, same values.

    Example:
        >>> h5_enabled({"LAYER_EXPLORER_ALLOW_H5": "yes"})
        True
    """
    return _flag(environ, ALLOW_H5_ENV)


def _flag(environ: Mapping[str, str], key: str) -> bool:
    return str(environ.get(key, "")).strip().lower() in _TRUE_VALUES


class ModelRefusedError(LayerExplorerError):
    """A model file was refused by the audit or by the checks after loading; ``.reasons`` says why.

    Example:
        >>> try:
        ...     load_audited_model(b"not a model", "x.keras")
        ... except ModelRefusedError as e:
        ...     e.reasons
        ['not a Keras model file (expected a .keras zip archive)']
    """

    def __init__(self, reasons: list[str] | str, name: str = "model"):
        self.reasons = [reasons] if isinstance(reasons, str) else list(reasons)
        self.name = name
        shown = _shorten(str(name), _MAX_SHOWN_NAME)
        super().__init__(
            f"Model file {shown!r} was refused: " + "; ".join(self.reasons) + ". "
            "Only models made of built-in Keras layers, saved with model.save('name.keras'), can be loaded."
        )


@dataclass
class AuditReport:
    """The verdict on one model file: plain data, deterministic for the same bytes.

    ``reasons`` is empty exactly when ``accepted``; ``notes`` are informational.

    Example:
        >>> r = audit_model_bytes(Path("cnn.keras").read_bytes())
        >>> r.accepted, r.file_kind, r.notes[0]
        (True, 'keras', 'saved with Keras 3.15.1')
    """

    accepted: bool
    file_kind: str  # "keras" | "h5" | "unknown"
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def audit_model_bytes(
    data: bytes,
    name: str = "model.keras",
    *,
    allow_h5: bool = False,
    max_bytes: int = DEFAULT_MAX_MODEL_BYTES,
) -> AuditReport:
    """Audit a model file's bytes without loading anything; the kind comes from the bytes, not ``name``.

    ``name`` is used only in notes. Legacy ``.h5`` files are refused unless ``allow_h5``
    (pass :func:`h5_enabled` ``()``).

    Example:
        >>> audit_model_bytes(b"").reasons
        ['the file is empty']
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"audit_model_bytes expects bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        return AuditReport(False, "unknown", ["the file is empty"], [])
    if len(data) > max_bytes:
        return AuditReport(False, _sniff(data), [
            f"the file is {_mib(len(data))}, over the {_mib(max_bytes)} limit"], [])
    kind = _sniff(data)
    if kind == "keras":
        reasons, notes = _audit_keras_archive(data, max_bytes)
    elif kind == "h5":
        if not allow_h5:
            return AuditReport(False, "h5", [
                "legacy HDF5 (.h5) models are turned off; re-save the model as .keras, or set "
                f"{ALLOW_H5_ENV}=1 to allow audited .h5 files"], [])
        reasons, notes = _audit_h5_model(data)
    else:
        return AuditReport(False, "unknown", [
            "not a Keras model file (expected a .keras zip archive"
            + (" or a legacy .h5 file)" if allow_h5 else ")")], [])
    suffix = Path(str(name)).suffix.lower()
    if suffix and suffix not in ({".keras"} if kind == "keras" else {".h5", ".hdf5"}):
        notes.append(f"the name ends in {_shorten(suffix, 20)!r} but the content is a {kind} file")
    if len(reasons) > _MAX_REASONS:
        reasons = reasons[:_MAX_REASONS] + [f"... and {len(reasons) - _MAX_REASONS} more problems"]
    return AuditReport(not reasons, kind, reasons, notes)


def audit_model_file(
    path: str | os.PathLike,
    *,
    allow_h5: bool = False,
    max_bytes: int = DEFAULT_MAX_MODEL_BYTES,
) -> AuditReport:
    """Audit a local model file (command-line use); a file that can't be read is a refusal.

    Example:
        >>> audit_model_file("cnn.keras").accepted
        True
    """
    data, problem = _read_local(path, max_bytes)
    if problem:
        return AuditReport(False, "unknown", [problem], [])
    return audit_model_bytes(data, Path(path).name, allow_h5=allow_h5, max_bytes=max_bytes)


def load_audited_model(
    data: bytes,
    name: str = "model.keras",
    *,
    allow_h5: bool = False,
    max_bytes: int = DEFAULT_MAX_MODEL_BYTES,
    max_params: int = DEFAULT_MAX_PARAMS,
    probe_memory: int | None = DEFAULT_PROBE_MEMORY,
):
    """Audit, then load with ``safe_mode=True, compile=False`` from a private temp file, then validate.

    Keras allocates every weight a config declares *before* anything can count them, so a tiny
    file naming a huge layer would take the server's memory. The file is therefore first loaded
    in a child process capped at ``probe_memory`` bytes of address space (``None`` skips this),
    which reports the parameter count; only a model that fits is loaded here.

    The temp file is made with :func:`tempfile.mkstemp` (mode 0600, suffix chosen here from the
    audited kind, never from ``name``) and deleted before returning. The loaded model must have
    exactly one input of rank 4 ``(None, H, W, C)`` and at most ``max_params`` parameters; nested
    sub-models are fine. Every refusal raises :class:`ModelRefusedError`.

    Example:
        >>> model = load_audited_model(Path("cnn.keras").read_bytes(), "cnn.keras")
        >>> model.input_shape
        (None, 32, 32, 3)
    """
    report = audit_model_bytes(data, name, allow_h5=allow_h5, max_bytes=max_bytes)
    if not report.accepted:
        raise ModelRefusedError(report.reasons, name)

    import keras  # heavy; only needed once a file passed the audit

    suffix = ".keras" if report.file_kind == "keras" else ".h5"
    fd, tmp_path = tempfile.mkstemp(prefix="layer-explorer-model-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), 0o600)  # mkstemp already does; say so where it matters
            f.write(bytes(data))
        if probe_memory:
            probe_problem = _probe_in_subprocess(tmp_path, max_params, probe_memory)
            if probe_problem:
                raise ModelRefusedError([probe_problem], name)
        try:
            model = keras.saving.load_model(tmp_path, safe_mode=True, compile=False)
        except Exception as exc:  # anything Keras raises on a bad file is the file's fault
            raise ModelRefusedError([f"could not be loaded: {_short_error(exc, tmp_path)}"], name) from exc
    finally:
        try:
            os.unlink(tmp_path)
        except FileNotFoundError:
            pass

    problems = _validate_loaded(model, max_params)
    if problems:
        raise ModelRefusedError(problems, name)
    return model


_PROBE = r"""
import json, os, resource, sys
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
try:
    import keras
    model = keras.saving.load_model(sys.argv[1], safe_mode=True, compile=False)
    print(json.dumps({"params": int(model.count_params())}))
except MemoryError:
    print(json.dumps({"error": "memory"}))
except Exception as exc:
    memory = "OOM" in str(exc) or "ResourceExhausted" in type(exc).__name__
    print(json.dumps({"error": "memory" if memory else type(exc).__name__}))
"""


def _too_many_params(params: int, max_params: int) -> str:
    return f"the model has {params:,} parameters, over the {max_params:,} limit"


def _probe_in_subprocess(path: str, max_params: int, memory_limit: int) -> str | None:
    """Load the file in a memory-capped child process; a reason to refuse, or None."""
    import subprocess
    import sys

    limit_text = _mib(memory_limit)
    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE, path, str(int(memory_limit))], capture_output=True,
                              text=True, timeout=_PROBE_TIMEOUT_S, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    except subprocess.TimeoutExpired:
        return f"loading took longer than {_PROBE_TIMEOUT_S} s in a test load; refused"
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    result = json.loads(lines[-1]) if lines else {"error": "memory" if proc.returncode < 0 else "crash"}
    if result.get("error") == "memory":
        return f"building it needs more than {limit_text} of memory (its layers are too large); refused"
    if "error" in result:
        return None  # not a size problem: the in-process load reports the real error
    if result["params"] > max_params:
        return _too_many_params(result["params"], max_params)
    return None


def load_audited_model_file(path: str | os.PathLike, **kw):
    """:func:`load_audited_model` for a local file (command-line use).

    The file is read once; the bytes that were audited are the bytes that get loaded (from a
    private copy), so the file cannot change between audit and load, and its name never matters.

    Example:
        >>> load_audited_model_file("cnn.keras", max_params=10_000_000).name
        'functional'
    """
    data, problem = _read_local(path, kw.get("max_bytes", DEFAULT_MAX_MODEL_BYTES))
    if problem:
        raise ModelRefusedError([problem], Path(path).name)
    return load_audited_model(data, Path(path).name, **kw)


# --- reading -----------------------------------------------------------------------------------


def _read_local(path, max_bytes: int) -> tuple[bytes, str | None]:
    p = Path(path)
    try:
        st = p.stat()
        if not p.is_file():
            return b"", "not a regular file"
        if st.st_size > max_bytes:
            return b"", f"the file is {_mib(st.st_size)}, over the {_mib(max_bytes)} limit"
        with p.open("rb") as f:
            return f.read(max_bytes + 1), None
    except OSError as exc:
        return b"", f"cannot read the file ({exc.strerror or type(exc).__name__})"


def _sniff(data: bytes) -> str:
    if data.startswith(_ZIP_MAGIC):
        return "keras"
    if data.startswith(_HDF5_MAGIC):
        return "h5"
    return "unknown"


# --- .keras archives ---------------------------------------------------------------------------


def _audit_keras_archive(data: bytes, max_bytes: int) -> tuple[list[str], list[str]]:
    reasons: list[str] = []
    notes: list[str] = []

    # Count entries from the end record before zipfile builds one object per entry.
    end = data.rfind(_ZIP_EOCD, max(0, len(data) - (22 + 65535)))
    if end < 0 or len(data) - end < 22:
        return ["not a readable zip archive (no end-of-archive record)"], notes
    declared = struct.unpack_from("<H", data, end + 10)[0]
    if declared > _MAX_ZIP_MEMBERS:
        return [f"the archive declares {declared} members; a Keras archive holds 3"], notes

    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except Exception as exc:  # zipfile raises several types on corrupt input
        return [f"not a readable zip archive ({type(exc).__name__})"], notes
    with zf:
        infos = zf.infolist()
        if len(infos) > _MAX_ZIP_MEMBERS:
            return [f"the archive has {len(infos)} members; a Keras archive holds 3"], notes
        counts = Counter(i.filename for i in infos)
        for member, n in counts.items():
            if n > 1:
                reasons.append(f"member {_shown(member)} appears {n} times")
        total = 0
        for info in infos:
            member = info.filename
            problem = _member_name_problem(member)
            if problem:
                reasons.append(problem)
                continue
            if info.flag_bits & 0x1:
                reasons.append(f"member {_shown(member)} is encrypted")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                reasons.append(f"member {_shown(member)} uses an unexpected compression method")
            if info.file_size > _BOMB_FLOOR_BYTES and info.file_size > _MAX_EXPANSION * max(info.compress_size, 1):
                reasons.append(f"member {_shown(member)} expands from {_mib(info.compress_size)} to "
                               f"{_mib(info.file_size)} (a zip bomb)")
            total += info.file_size
        if total > 2 * max_bytes:
            reasons.append(f"the archive expands to {_mib(total)}, over the {_mib(2 * max_bytes)} limit")
        names = set(counts)
        if _CONFIG_MEMBER not in names:
            reasons.append("config.json is missing (not a Keras model archive)")
        weights = [w for w in _WEIGHTS_MEMBERS if w in names]
        if not weights:
            reasons.append("the weights file (model.weights.h5) is missing")
        elif len(weights) > 1:
            reasons.append("the archive holds both model.weights.h5 and model.weights.npz")
        if reasons:
            return reasons, notes

        if _METADATA_MEMBER in names:
            meta_info = zf.getinfo(_METADATA_MEMBER)
            if meta_info.file_size > _MAX_METADATA_BYTES:
                return [f"metadata.json is {_mib(meta_info.file_size)}, over the limit"], notes
            meta, problem = _parse_json(zf.read(_METADATA_MEMBER), "metadata.json")
            if problem or not isinstance(meta, dict):
                return [problem or "metadata.json is not a JSON object"], notes
            version = meta.get("keras_version")
            if isinstance(version, str):
                notes.append(f"saved with Keras {_shorten(version, 40)}")
        else:
            notes.append("no metadata.json (Keras always writes one)")

        config_info = zf.getinfo(_CONFIG_MEMBER)
        if config_info.file_size > _MAX_CONFIG_BYTES:
            return [f"config.json is {_mib(config_info.file_size)}, over the {_mib(_MAX_CONFIG_BYTES)} limit"], notes
        config, problem = _parse_json(zf.read(_CONFIG_MEMBER), "config.json")
        if problem:
            return [problem], notes
        walk_reasons, walk_notes = _audit_config(config, legacy_h5=False)
        reasons += walk_reasons
        notes += walk_notes

        weights_name = weights[0]
        weights_bytes = zf.read(weights_name)
    if weights_name.endswith(".h5"):
        if not weights_bytes.startswith(_HDF5_MAGIC):
            reasons.append(f"{weights_name} is not an HDF5 file")
        else:
            w_reasons, w_notes = _audit_h5_tree(weights_bytes, weights_name)
            reasons += w_reasons
            notes += w_notes
    else:
        w_reasons, w_notes = _audit_npz(weights_bytes, weights_name)
        reasons += w_reasons
        notes += w_notes
    return reasons, notes


_DRIVE = re.compile(r"^[A-Za-z]:")


def _member_name_problem(member: str) -> str | None:
    shown = _shown(member)
    parts = member.replace("\\", "/").split("/")
    if ".." in parts:
        return f"member {shown} escapes the archive (path traversal)"
    if member.startswith(("/", "\\")) or _DRIVE.match(member):
        return f"member {shown} is an absolute path"
    if "\\" in member or any(ord(c) < 32 for c in member):
        return f"member {shown} has a backslash or control character in its name"
    if parts[0] == "assets":
        return (f"member {shown} is an asset file; assets are written only by text/lookup layers, "
                "which are not supported")
    if member not in _EXPECTED_MEMBERS:
        return (f"unexpected member {shown} (a Keras archive holds only config.json, "
                "metadata.json and model.weights.h5)")
    return None


def _parse_json(raw: bytes, what: str) -> tuple[Any, str | None]:
    try:
        return json.loads(raw), None
    except RecursionError:
        return None, f"{what} is nested too deeply"
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"{what} is not valid JSON ({type(exc).__name__})"


# --- legacy .h5 models -------------------------------------------------------------------------


def _audit_h5_model(data: bytes) -> tuple[list[str], list[str]]:
    import h5py
    import numpy as np

    notes: list[str] = []
    try:
        with h5py.File(io.BytesIO(data), "r") as f:
            raw = f.attrs.get("model_config")
            for key in ("keras_version", "backend"):
                value = f.attrs.get(key)
                if isinstance(value, bytes):
                    value = value.decode("utf-8", "replace")
                if isinstance(value, str):
                    notes.append(f"{key}: {_shorten(value, 40)}")
            if "training_config" in f.attrs:
                notes.append("training_config ignored (models are loaded without compiling)")
    except Exception as exc:  # h5py/libhdf5 raise several types on corrupt input
        return [f"not a readable HDF5 file ({type(exc).__name__})"], notes
    if raw is None:
        return ["the .h5 file has no model_config (a weights-only file cannot be loaded as a model)"], notes
    if isinstance(raw, np.ndarray) and raw.size == 1:
        raw = raw.reshape(()).item()
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    if not isinstance(raw, bytes):
        return ["the .h5 model_config is not text"], notes
    if len(raw) > _MAX_CONFIG_BYTES:
        return [f"the .h5 model_config is {_mib(len(raw))}, over the limit"], notes
    config, problem = _parse_json(raw, "the .h5 model_config")
    if problem:
        return [problem], notes
    reasons, walk_notes = _audit_config(config, legacy_h5=True)
    tree_reasons, tree_notes = _audit_h5_tree(data, "the .h5 file")
    return reasons + tree_reasons, notes + walk_notes + tree_notes


def _audit_h5_tree(data: bytes, what: str) -> tuple[list[str], list[str]]:
    """Every link must be a hard link inside the file; every dataset numeric, in-file, not virtual."""
    import h5py

    reasons: list[str] = []
    declared_total = 0
    n_datasets = 0
    visits = 0
    try:
        with h5py.File(io.BytesIO(data), "r") as f:
            stack = [(f, "", 0)]
            while stack and not reasons:
                group, path, depth = stack.pop()
                if depth > _MAX_H5_DEPTH:
                    reasons.append(f"{what} is nested more than {_MAX_H5_DEPTH} groups deep")
                    break
                for key in group:
                    visits += 1
                    if visits > _MAX_H5_OBJECTS:
                        reasons.append(f"{what} has more than {_MAX_H5_OBJECTS} objects (or a link cycle)")
                        break
                    child_path = f"{path}/{key}"
                    link = group.get(key, getlink=True, getclass=True)
                    if link is not h5py.HardLink:
                        kind = getattr(link, "__name__", "link")
                        reasons.append(f"{what} has a {kind} at {_shown(child_path)} (links out of the file are not allowed)")
                        break
                    obj = group[key]
                    if isinstance(obj, h5py.Group):
                        stack.append((obj, child_path, depth + 1))
                    elif isinstance(obj, h5py.Dataset):
                        n_datasets += 1
                        problem = _h5_dataset_problem(obj, child_path, what)
                        if problem:
                            reasons.append(problem)
                            break
                        declared_total += _declared_bytes(obj.shape, obj.dtype.itemsize)
                    else:
                        reasons.append(f"{what} has an unexpected {type(obj).__name__} at {_shown(child_path)}")
                        break
    except Exception as exc:  # h5py/libhdf5 raise several types on corrupt input
        return [f"{what} is not a readable HDF5 file ({type(exc).__name__})"], []
    if not reasons and declared_total > 4 * len(data) + _BOMB_FLOOR_BYTES:
        reasons.append(f"{what} declares {_mib(declared_total)} of weights in {_mib(len(data))} (a shape bomb)")
    return reasons, [f"weights: {n_datasets} arrays, {_mib(declared_total)}"]


def _h5_dataset_problem(ds, path: str, what: str) -> str | None:
    shown = _shown(path)
    if ds.external:
        return f"{what} has a dataset stored in an external file at {shown}"
    if ds.is_virtual:
        return f"{what} has a virtual dataset at {shown}"
    if ds.dtype.kind not in "biufc":
        return f"{what} has a non-numeric dataset at {shown}"
    declared = _declared_bytes(ds.shape, ds.dtype.itemsize)
    stored = ds.id.get_storage_size()
    if declared > _BOMB_FLOOR_BYTES and declared > _MAX_EXPANSION * max(stored, 1):
        return f"{what} dataset {shown} declares {_mib(declared)} but stores {_mib(stored)} (a shape bomb)"
    return None


def _declared_bytes(shape, itemsize: int) -> int:
    return math.prod(shape or ()) * itemsize if shape is not None else 0


def _audit_npz(data: bytes, what: str) -> tuple[list[str], list[str]]:
    import numpy as np

    reasons: list[str] = []
    declared_total = 0
    if not data.startswith(_ZIP_MAGIC) and data:
        return [f"{what} is not an npz archive"], []
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
            if len(infos) > _MAX_NPZ_MEMBERS:
                return [f"{what} has {len(infos)} arrays, over the limit"], []
            for info in infos:
                shown = _shown(info.filename)
                if not info.filename.endswith(".npy") or info.flag_bits & 0x1:
                    reasons.append(f"{what} has an unexpected member {shown}")
                    break
                with zf.open(info) as member:
                    major, _minor = np.lib.format.read_magic(member)
                    read_header = (np.lib.format.read_array_header_1_0 if major == 1
                                   else np.lib.format.read_array_header_2_0)
                    shape, _fortran, dtype = read_header(member)
                if dtype.hasobject or dtype.kind not in "biufc":
                    # Keras 3.15 itself writes dicts here, which only pickle can read back.
                    reasons.append(f"{what} array {shown} is a pickled object array, not numbers; "
                                   "re-save the model with the default .h5 weights")
                    break
                declared = _declared_bytes(shape, dtype.itemsize)
                if declared > _BOMB_FLOOR_BYTES and declared > _MAX_EXPANSION * max(info.compress_size, 1):
                    reasons.append(f"{what} array {shown} declares {_mib(declared)} (a shape bomb)")
                    break
                declared_total += declared
    except Exception as exc:  # zipfile/numpy raise several types on corrupt input
        return [f"{what} is not a readable npz archive ({type(exc).__name__})"], []
    return reasons, [f"weights: {len(infos)} arrays, {_mib(declared_total)}"]


# --- the config walk ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Tables:
    """What the installed Keras allows; derived once from its public namespaces."""

    namespaces: Mapping[str, Any]  # module name -> module object, for class resolution
    canonical: Mapping[str, Any]  # Keras's own "keras.x.Name" -> object registry (a snapshot)
    allowed_classes: frozenset
    allowed_functions: frozenset
    bare: Mapping[str, Any]  # class name without module (legacy .h5) -> allowed class
    denied: Mapping[type, str]  # dangerous class -> why
    layer_base: type
    model_base: type
    legacy_function_names: frozenset  # strings the legacy .h5 loader turns into functions


@functools.lru_cache(maxsize=1)
def _tables() -> _Tables:
    import importlib

    import keras
    from keras.src import api_export

    safe_bases = (
        keras.Operation, keras.DTypePolicy, keras.Initializer, keras.Regularizer,
        keras.constraints.Constraint, keras.Optimizer, keras.optimizers.schedules.LearningRateSchedule,
        keras.Loss, keras.Metric, keras.Quantizer, keras.quantizers.QuantizationConfig,
    )
    denied = {}
    for name, why in _DENIED_WHY.items():
        cls = getattr(keras.layers, name, None)
        if isinstance(cls, type):
            denied[cls] = why

    def acceptable(obj) -> bool:
        return (isinstance(obj, type) and issubclass(obj, safe_bases)
                and obj.__name__ not in _EXCLUDED_CLASS_NAMES
                and not any(issubclass(obj, bad) for bad in denied))

    namespaces: dict[str, Any] = {}
    allowed: set = set()
    bare: dict[str, Any] = {}
    for module_name in _PUBLIC_NAMESPACES:
        module = importlib.import_module(module_name)
        namespaces[module_name] = module
        for attr, obj in vars(module).items():
            if acceptable(obj):
                allowed.add(obj)
                bare.setdefault(attr, obj)
    for module_name in _MODEL_MODULES + _OP_MODULES:
        module = importlib.import_module(module_name)
        namespaces[module_name] = module
        for obj in vars(module).values():
            if acceptable(obj) and (obj in allowed or obj.__module__ == module_name):
                allowed.add(obj)
    for obj in list(allowed):
        bare.setdefault(obj.__name__, obj)

    functions = set()
    for module_name in _FUNCTION_NAMESPACES:
        for attr, obj in vars(importlib.import_module(module_name)).items():
            if inspect.isfunction(obj) and attr not in _NON_MATH_FUNCTIONS:
                functions.add(obj)

    import keras.src.layers as layers_src

    legacy_functions = frozenset(k for k, v in vars(layers_src).items() if inspect.isfunction(v))
    return _Tables(
        namespaces=namespaces,
        canonical=dict(api_export.REGISTERED_NAMES_TO_OBJS),
        allowed_classes=frozenset(allowed),
        allowed_functions=frozenset(functions),
        bare=bare,
        denied=denied,
        layer_base=keras.Layer,
        model_base=keras.Model,
        legacy_function_names=legacy_functions,
    )


def _audit_config(config: Any, *, legacy_h5: bool) -> tuple[list[str], list[str]]:
    """Walk every dict, list and string; check every object dict against the allow-list."""
    t = _tables()
    reasons: list[str] = []
    seen: set[str] = set()

    def refuse(text: str) -> None:
        if text not in seen:
            seen.add(text)
            reasons.append(text)

    if not isinstance(config, dict) or not isinstance(config.get("class_name"), str):
        return ["the config does not describe a Keras model (no top-level class_name)"], []

    layer_counts: Counter = Counter()
    models = 0
    root_cls = None
    stack: list[tuple[Any, str, int]] = [(config, "the model config", 0)]
    nodes = 0
    while stack:
        node, subject, depth = stack.pop()
        nodes += 1
        if nodes > _MAX_CONFIG_NODES:
            refuse(f"the config has more than {_MAX_CONFIG_NODES:,} entries")
            break
        if depth > _MAX_CONFIG_DEPTH:
            refuse(f"the config is nested more than {_MAX_CONFIG_DEPTH} levels deep")
            break
        if isinstance(node, str):
            _check_string(node, subject, refuse)
        elif isinstance(node, list):
            stack.extend((item, subject, depth + 1) for item in reversed(node))
        elif isinstance(node, dict):
            for key in node:
                _check_string(key, subject, refuse)
            if "class_name" in node:
                subject = _subject(node, subject, root=node is config)
                cls = _check_object(node, subject, t, refuse, legacy_h5=legacy_h5)
                if node is config:
                    root_cls = cls
                if isinstance(cls, type) and issubclass(cls, t.layer_base):
                    if issubclass(cls, t.model_base):
                        models += 1
                    elif node.get("class_name") != "InputLayer":
                        layer_counts[node["class_name"]] += 1
            stack.extend((value, subject, depth + 1) for value in reversed(list(node.values())))

    if root_cls is not None and not (isinstance(root_cls, type) and issubclass(root_cls, t.model_base)):
        refuse(f"the file holds a single {root_cls.__name__}, not a model")
    if legacy_h5 and isinstance(config.get("config"), dict):
        # The legacy loader turns top-level string values that name functions in keras.layers
        # (add, concatenate, deserialize, ...) into those functions.
        for key, value in config["config"].items():
            if key != "name" and isinstance(value, str) and value in t.legacy_function_names:
                refuse(f"the model config's {_shorten(key, 40)!r} is {value!r}, which the legacy .h5 "
                       "loader would turn into a Keras function")

    notes = []
    if layer_counts:
        shown = ", ".join(f"{n}×{c}" if c > 1 else n for n, c in layer_counts.most_common(12))
        more = "" if len(layer_counts) <= 12 else f", +{len(layer_counts) - 12} more kinds"
        notes.append(f"{sum(layer_counts.values())} layers: {shown}{more}")
    if models > 1:
        notes.append(f"{models - 1} nested model(s)")
    return reasons, notes


def _check_string(text: str, subject: str, refuse) -> None:
    lowered = text.lower()
    for token, why in _FORBIDDEN_TOKENS.items():
        if token in lowered:
            refuse(f"{subject} mentions {token!r}, which {why}")


_SUBJECT_LABELS = (("keras.optimizers", "optimizer"), ("keras.losses", "loss"), ("keras.metrics", "metric"))


def _subject(node: dict, enclosing: str, *, root: bool = False) -> str:
    """How reasons name this object: "layer 'conv1'", or the enclosing layer for unnamed objects."""
    name = node.get("name")
    if not isinstance(name, str) and isinstance(node.get("config"), dict):
        name = node["config"].get("name")
    if not isinstance(name, str):
        return enclosing
    module = node.get("module") if isinstance(node.get("module"), str) else ""
    label = "model" if root else next((lab for pre, lab in _SUBJECT_LABELS if module.startswith(pre)), "layer")
    return f"{label} {_shorten(name, _MAX_SHOWN_NAME)!r}"


def _check_object(node: dict, subject: str, t: _Tables, refuse, *, legacy_h5: bool = False):
    """Refuse what this object dict could import or run; return the class it names, if allowed."""
    class_name = node["class_name"]
    module = node.get("module")
    registered = node.get("registered_name")
    if not isinstance(class_name, str):
        refuse(f"{subject} has a class_name that is not a string")
        return None
    cn = _shorten(class_name, _MAX_SHOWN_NAME)
    if class_name in _DENIED_WHY:
        refuse(f"{subject} {_DENIED_WHY[class_name]}")
        return None
    if class_name == "__lambda__":
        refuse(f"{subject} contains a serialized Python lambda (runs arbitrary Python)")
        return None
    if class_name in _HARMLESS_SPECIALS or (legacy_h5 and class_name in _LEGACY_H5_SPECIALS):
        return None
    if class_name in _TF_REGISTRY_SPECIALS:
        refuse(f"{subject} contains a TensorFlow {cn} object (looked up in TensorFlow's registries), "
               "which is not allowed")
        return None
    if class_name in _ARRAY_SPECIALS:
        inner = node.get("config")
        dtype = inner.get("dtype") if isinstance(inner, dict) else None
        if dtype not in _ARRAY_DTYPES:
            refuse(f"{subject} has a {cn} with dtype {_shorten(str(dtype), 40)!r}, which is not a plain numeric dtype")
        return None
    if class_name.startswith("__"):
        refuse(f"{subject} contains the special object {cn!r}, which is not allowed")
        return None
    if isinstance(registered, str) and ">" in registered:
        refuse(f"{subject} uses the custom registered object {_shorten(registered, _MAX_SHOWN_NAME)!r} "
               "(custom code is not allowed)")
        return None
    if module is not None and not isinstance(module, str):
        refuse(f"{subject} has a module that is not a string")
        return None
    if isinstance(module, str) and module != "keras" and not module.startswith("keras.") and not (
            class_name == "function" and module == "builtins"):
        what = cn
        if class_name == "function":
            what = _shorten(str(node.get("config")), _MAX_SHOWN_NAME)
        refuse(f"{subject} names {_shorten(module, 60)}.{what}: module {_shorten(module, 60)!r} is outside Keras "
               "(loading would import it)")
        return None
    if class_name == "function":
        _check_function(node, subject, t, refuse)
        return None
    if registered is not None and registered != class_name:
        refuse(f"{subject} has registered_name {_shorten(str(registered), 60)!r}, which does not match "
               f"class_name {cn!r}")
        return None

    if module is None:
        cls = t.bare.get(class_name)
        where = cn
    else:
        namespace = t.namespaces.get(module)
        cls = None
        if namespace is not None:
            # Keras tries its registry of exported names first, then the module's attributes.
            cls = t.canonical.get(f"{module}.{class_name}") or vars(namespace).get(class_name)
        where = f"{_shorten(module, 60)}.{cn}"
    if not isinstance(cls, type) or cls not in t.allowed_classes:
        for bad, why in t.denied.items():
            if isinstance(cls, type) and issubclass(cls, bad):
                refuse(f"{subject} {why}")
                return None
        refuse(f"{subject} names {where}, which is not an allowed built-in Keras class")
        return None
    return cls


def _check_function(node: dict, subject: str, t: _Tables, refuse) -> None:
    module = node.get("module")
    fname = node.get("config")
    if not isinstance(fname, str):
        refuse(f"{subject} has a function object without a name")
        return
    shown = _shorten(fname, 60)
    if module == "builtins":
        # Keras looks the name up in each of these modules, in no fixed order: all must be safe.
        found = [t.canonical.get(f"keras.{m}.{fname}") for m in _BUILTIN_FUNCTION_MODULES]
        found = [f for f in found if f is not None]
        ok = bool(found) and all(_hashable_in(f, t.allowed_functions) for f in found)
        where = shown
    elif isinstance(module, str):
        ok = _hashable_in(t.canonical.get(f"{module}.{fname}"), t.allowed_functions)
        where = f"{_shorten(module, 60)}.{shown}"
    else:
        ok, where = False, shown
    if not ok:
        refuse(f"{subject} names the function {where}, which is not a built-in Keras activation, loss or metric")


def _hashable_in(obj, allowed: frozenset) -> bool:
    try:
        return obj in allowed
    except TypeError:
        return False


# --- after loading -----------------------------------------------------------------------------


def _validate_loaded(model, max_params: int) -> list[str]:
    import keras

    if not isinstance(model, keras.Model):
        return [f"the file holds a {type(model).__name__}, not a model"]
    try:
        inputs = list(model.inputs or [])
    except (AttributeError, ValueError):
        inputs = []
    if not inputs:
        return ["the model has no defined input; build it with keras.Input(shape=(height, width, channels))"]
    if len(inputs) != 1:
        return [f"the model has {len(inputs)} inputs; Layer Explorer needs exactly one image input"]
    shape = tuple(inputs[0].shape)
    problems = []
    if len(shape) != 4:
        problems.append(f"the input shape is {shape}; Layer Explorer needs a batch of images "
                        "(None, height, width, channels)")
    else:
        _batch, height, width, channels = shape
        if channels is None or channels < 1:
            problems.append(f"the input shape is {shape}; the channel count must be fixed")
        if any(d is not None and d < 1 for d in (height, width)):
            problems.append(f"the input shape is {shape}; height and width must be positive")
    params = model.count_params()
    if params > max_params:
        problems.append(_too_many_params(params, max_params))
    return problems


def _short_error(exc: BaseException, tmp_path: str) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    for secret in (tmp_path, os.path.dirname(tmp_path), tempfile.gettempdir()):
        if secret:
            first = first.replace(secret, "<file>")
    first = re.sub(r"(?<![\w.])(?:[A-Za-z]:)?[/\\](?:[\w.\-]+[/\\])+[\w.\-]*", "<path>", first)
    label = type(exc).__name__
    return _shorten(f"{label}: {first}" if first else label, 200)


# --- small helpers -----------------------------------------------------------------------------


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _shown(member: str) -> str:
    return repr(_shorten(member, _MAX_SHOWN_NAME))
