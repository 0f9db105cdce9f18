"""Downloads: features as .npz / .parquet / .csv, 2-D maps as CSV, an Embedding Projector bundle,
and a script that reproduces the extraction.

Every builder returns ``bytes`` (what ``st.download_button`` and the CLI want) and writes no
file. Inputs are plain data: ``features`` maps ``"<layer>/<pooling>"`` to an (N, C) array,
``names`` holds N display names (file names, never server paths), ``labels`` N labels or None.

Formats, and why:

One naming everywhere: the image names are ``paths`` and the class labels ``labels`` — the same
key in the .npz, the .parquet and .csv columns, the 2-D map CSV, the CLI's files and the exported
reproduce script, so ``np.load(f)["paths"]`` and ``pd.read_parquet(f)["paths"]`` are the same
call. (Earlier versions wrote ``path``/``label`` columns in .parquet and .csv;
:func:`read_features` still reads those.)

* **.npz** (``features_to_npz``): ``paths`` (N unicode strings, not object dtype, so
  ``np.load`` works without ``allow_pickle``), ``labels`` when given, and one (N, C) float32
  array per key. The fastest to write and read back in NumPy.
* **.parquet** (``features_to_parquet``): one row per image; columns ``paths``, ``labels`` (when
  given), then one column per key holding a fixed-size list of float32 (Arrow
  ``fixed_size_list<float>[C]``). Wide columns would mean thousands of columns per key;
  one list column per key keeps the schema readable and round-trips exactly.
* **.csv** (``features_to_csv``): wide, ``paths,labels,<key>_0,<key>_1,...``, for spreadsheets.
  Refused above :data:`CSV_MAX_CELLS` values with a message pointing to .npz/.parquet.

Example:
    >>> feats = {"block3_conv2/avg": np.ones((2, 4), np.float32)}
    >>> blob = features_to_npz(feats, ["a.jpg", "b.jpg"], ["cat", "dog"])
    >>> read_features(blob)[1:]
    (['a.jpg', 'b.jpg'], ['cat', 'dog'])
"""

from __future__ import annotations

import io
import json
import math
import re
import shlex
import zipfile
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd

from extractor.errors import LayerExplorerError, check_int
from extractor.images import RESIZE_POLICIES

__all__ = [
    "ExportError",
    "NAMES_KEY",
    "LABELS_KEY",
    "CSV_MAX_CELLS",
    "SPRITE_MAX_PIXELS",
    "features_to_npz",
    "features_to_table",
    "features_to_parquet",
    "features_to_csv",
    "read_features",
    "coords_to_csv",
    "projector_bundle",
    "reproduce_config",
    "reproduce_script",
]

#: Most feature values a CSV export may hold: 2 M values are ~25 MB of text, already more than
#: a spreadsheet opens comfortably; past that, .npz and .parquet are smaller and exact.
CSV_MAX_CELLS = 2_000_000
#: The Embedding Projector's WebGL texture limit for the sprite image, per side.
SPRITE_MAX_PIXELS = 8192
# Largest thumbnail side in the sprite: 64 px is what the projector shows anyway.
_THUMB_MAX = 64
NAMES_KEY, LABELS_KEY = "paths", "labels"  # the one naming of every format (see the module docstring)
_RESERVED = (NAMES_KEY, LABELS_KEY)
_OLD_COLUMNS = ("path", "label")  # what .parquet/.csv used to say; still read, never written
_PARQUET_META_KEY = b"layer_explorer"


class ExportError(LayerExplorerError):
    """The data can't be exported in the requested form; the message suggests one that works."""


# --------------------------------------------------------------------------- validation


def _validate(features: Mapping[str, np.ndarray], names: Sequence[str], labels: Sequence[str] | None):
    """(features as float32 (N, C) arrays, names as str, labels as str or None), or ExportError."""
    if isinstance(names, (str, bytes)):
        raise ExportError("names must be a list with one name per image, not a single string.")
    names = [str(n) for n in names]
    n = len(names)
    if not features:
        raise ExportError("There are no features to export; extract at least one layer and pooling first.")
    out: dict[str, np.ndarray] = {}
    for key, arr in features.items():
        key = str(key)
        if key in _RESERVED:
            raise ExportError(f"A feature key can't be called {key!r} (reserved); use '<layer>/<pooling>' keys.")
        arr = np.asarray(arr)
        if arr.ndim != 2 or arr.shape[0] != n:
            raise ExportError(
                f"Features {key!r} have shape {arr.shape}; expected ({n}, channels), one row per image."
            )
        out[key] = np.ascontiguousarray(arr, dtype=np.float32)
    if labels is not None:
        if isinstance(labels, (str, bytes)):
            raise ExportError("labels must be a list with one label per image, not a single string.")
        labels = ["" if lab is None else str(lab) for lab in labels]
        if len(labels) != n:
            raise ExportError(f"Got {len(labels)} labels for {n} images; pass one label per image (or none).")
    return out, names, labels


# --------------------------------------------------------------------------- features


def features_to_npz(features, names, labels=None, *, provenance: Mapping[str, str] | None = None) -> bytes:
    """An uncompressed .npz: ``paths``, optional ``labels``, and one (N, C) float32 array per key.

    Strings are stored as fixed-width unicode, so ``np.load(f)`` needs no ``allow_pickle``.
    Uncompressed because pooled float features barely compress and zlib would cost seconds.
    ``provenance`` (e.g. ``{"runtime": "openvino", "precision": "float32"}``) adds one string entry each.

    Example:
        >>> blob = features_to_npz({"b5/avg": np.zeros((1, 3))}, ["x.png"])
        >>> sorted(np.load(io.BytesIO(blob)).files)
        ['b5/avg', 'paths']
    """
    feats, names, labels = _validate(features, names, labels)
    arrays: dict[str, np.ndarray] = {NAMES_KEY: np.array(names, dtype=str)}
    if labels is not None:
        arrays[LABELS_KEY] = np.array(labels, dtype=str)
    for key, value in (provenance or {}).items():
        if key in feats or key in _RESERVED:
            raise ExportError(f"A provenance entry can't be called {key!r}: a feature or column has that name.")
        arrays[key] = np.array(str(value))
    arrays.update(feats)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def features_to_table(features, names, labels=None, *, wide: bool = False) -> pd.DataFrame:
    """One row per image: ``paths``, ``labels`` (when given), then the features.

    ``wide=False`` (for parquet): one column per key, each cell a float32 array of length C.
    ``wide=True`` (for CSV): one float32 column per dimension, named ``<key>_<i>``.

    Example:
        >>> t = features_to_table({"b/avg": np.arange(4.).reshape(2, 2)}, ["a", "b"], wide=True)
        >>> list(t.columns)
        ['paths', 'b/avg_0', 'b/avg_1']
    """
    feats, names, labels = _validate(features, names, labels)
    columns: dict[str, object] = {NAMES_KEY: names}
    if labels is not None:
        columns[LABELS_KEY] = labels
    if wide:
        blocks = [pd.DataFrame(columns)]
        for key, arr in feats.items():
            blocks.append(pd.DataFrame(arr, columns=[f"{key}_{i}" for i in range(arr.shape[1])]))
        return pd.concat(blocks, axis=1)
    for key, arr in feats.items():
        columns[key] = list(arr)  # row views into arr: no copy
    return pd.DataFrame(columns)


def features_to_parquet(features, names, labels=None, *, provenance: Mapping[str, str] | None = None) -> bytes:
    """Parquet bytes: ``paths``, ``labels`` (when given), one ``fixed_size_list<float32>[C]`` column per key.

    :func:`read_features` gives back exactly the same arrays. ``provenance`` entries (runtime,
    precision) go into the schema metadata, beside the keys.

    Example:
        >>> blob = features_to_parquet({"b/avg": np.eye(2)}, ["a", "b"])
        >>> read_features(blob)[0]["b/avg"].dtype
        dtype('float32')
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    feats, names, labels = _validate(features, names, labels)
    cols = {NAMES_KEY: pa.array(names, type=pa.string())}
    if labels is not None:
        cols[LABELS_KEY] = pa.array(labels, type=pa.string())
    for key, arr in feats.items():
        if key in _OLD_COLUMNS:  # the reader takes these for the old names/labels columns
            raise ExportError(f"A feature key can't be called {key!r} in parquet (it is a metadata column).")
        cols[key] = pa.FixedSizeListArray.from_arrays(pa.array(arr.reshape(-1), type=pa.float32()), arr.shape[1])
    info = {"format": 1, "keys": list(feats)}
    info.update({str(k): str(v) for k, v in (provenance or {}).items() if k not in info})
    meta = {_PARQUET_META_KEY: json.dumps(info).encode()}
    table = pa.table(cols).replace_schema_metadata(meta)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def features_to_csv(features, names, labels=None, *, max_cells: int = CSV_MAX_CELLS) -> bytes:
    """Wide CSV bytes, header ``paths,labels,<key>_0,<key>_1,...``; floats written to round-trip float32.

    Refused with :class:`ExportError` when N × total dims exceeds ``max_cells``.

    Example:
        >>> features_to_csv({"b/avg": np.array([[0.5, 1.0]])}, ["a.jpg"], ["cat"]).decode().splitlines()
        ['paths,labels,b/avg_0,b/avg_1', 'a.jpg,cat,0.5,1']
    """
    feats, names, labels = _validate(features, names, labels)
    total = sum(a.shape[1] for a in feats.values())
    cells = len(names) * total
    if cells > max_cells:
        raise ExportError(
            f"CSV export would hold {len(names):,} images × {total:,} feature columns = {cells / 1e6:.1f} M values, "
            f"over the {max_cells / 1e6:.1f} M limit for CSV (tens of MB of text no spreadsheet opens well). "
            "Download .npz or .parquet instead (exact and smaller), or export fewer layers/poolings."
        )
    table = features_to_table(feats, _csv_safe(names), _csv_safe(labels), wide=True)
    # %.9g is the shortest format that always reads back to the same float32.
    return table.to_csv(index=False, float_format="%.9g", lineterminator="\n").encode("utf-8")


def read_features(path_or_bytes) -> tuple[dict[str, np.ndarray], list[str], list[str] | None]:
    """Read an .npz or .parquet written by this module: ``(features, names, labels or None)``.

    Accepts bytes, a binary file object, or a path (for the CLI and tests); the format is
    recognised by its first bytes, not its name. .npz files load without pickle. Parquet files
    written before the naming was unified (``path``/``label`` columns) are read too.

    Example:
        >>> feats, names, labels = read_features(features_to_npz({"b/max": np.ones((1, 2))}, ["a"]))
        >>> feats["b/max"].shape, names, labels
        ((1, 2), ['a'], None)
    """
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        data = bytes(path_or_bytes)
    elif isinstance(path_or_bytes, (str, PathLike)):
        data = Path(path_or_bytes).read_bytes()
    elif hasattr(path_or_bytes, "read"):
        data = path_or_bytes.read()
    else:
        raise ExportError(f"Expected bytes, a file object or a path; got {type(path_or_bytes).__name__}.")
    if data[:4] == b"PK\x03\x04" or data[:4] == b"PK\x05\x06":
        return _read_npz(data)
    if data[:4] == b"PAR1":
        return _read_parquet(data)
    raise ExportError("This is neither an .npz nor a .parquet file; read_features reads the .npz/.parquet "
                      "exports of Layer Explorer.")


def _read_npz(data: bytes):
    try:
        npz = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:  # zip/format errors from NumPy, reported as bad input
        raise ExportError(f"Could not read the .npz file: {exc}") from None
    with npz:
        if "paths" not in npz.files:
            raise ExportError("The .npz file has no 'paths' array; it was not written by Layer Explorer.")
        try:
            names = [str(s) for s in npz["paths"]]
            labels = [str(s) for s in npz["labels"]] if "labels" in npz.files else None
            arrays = {key: np.asarray(npz[key]) for key in npz.files if key not in _RESERVED}
            feats = {key: a for key, a in arrays.items() if a.ndim}  # 0-d strings are provenance (runtime, ...)
        except ValueError as exc:  # e.g. object arrays, which would need pickle: never loaded
            raise ExportError(f"Could not read the .npz file: {exc}") from None
    return feats, names, labels


def _read_parquet(data: bytes):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(data))
    except Exception as exc:  # Arrow errors on a damaged file, reported as bad input
        raise ExportError(f"Could not read the .parquet file: {exc}") from None
    names_col, labels_col = _RESERVED if NAMES_KEY in table.column_names else _OLD_COLUMNS
    if names_col not in table.column_names:
        raise ExportError(f"The .parquet file has no {NAMES_KEY!r} column; it was not written by Layer Explorer.")
    names = [str(s) for s in table.column(names_col).to_pylist()]
    labels = [str(s) for s in table.column(labels_col).to_pylist()] if labels_col in table.column_names else None
    meta = (table.schema.metadata or {}).get(_PARQUET_META_KEY)
    keys = json.loads(meta)["keys"] if meta else [c for c in table.column_names if c not in (names_col, labels_col)]
    feats = {}
    for key in keys:
        col = table.column(key).combine_chunks()
        if not pa.types.is_fixed_size_list(col.type):
            raise ExportError(f"Column {key!r} is not a fixed-size list of floats.")
        width = col.type.list_size
        feats[key] = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(-1, width)
    return feats, names, labels


# --------------------------------------------------------------------------- 2-D maps


def _csv_safe(texts):
    """Defuse spreadsheet formulas: a file name like ``=HYPERLINK(...)`` is user-controlled text.

    Cells starting with ``= + - @`` (or a tab / carriage return) get a leading apostrophe, the
    usual OWASP guard; spreadsheets then show the text instead of evaluating it.
    """
    if texts is None:
        return None
    return [("'" + t) if isinstance(t, str) and t[:1] in ("=", "+", "-", "@", "\t", "\r") else t for t in texts]


def coords_to_csv(coords: Mapping[str, np.ndarray], names, labels=None) -> bytes:
    """CSV of 2-D maps: ``paths,labels,<key>_x,<key>_y`` per map (e.g. ``"block4/avg pca_x"``).

    Example:
        >>> coords_to_csv({"pca": np.array([[0.25, -1.0]])}, ["a.jpg"]).decode().splitlines()
        ['paths,pca_x,pca_y', 'a.jpg,0.25,-1']
    """
    if not coords:
        raise ExportError("There are no 2-D maps to export; compute PCA or t-SNE first.")
    for key, arr in coords.items():
        if np.ndim(arr) != 2 or np.shape(arr)[1] != 2:
            raise ExportError(f"Map {key!r} has shape {np.shape(arr)}; expected (images, 2).")
    _, names, labels = _validate(coords, names, labels)
    columns: dict[str, object] = {NAMES_KEY: _csv_safe(names)}
    if labels is not None:
        columns[LABELS_KEY] = _csv_safe(labels)
    for key, arr in coords.items():
        arr = np.asarray(arr, dtype=np.float32)
        columns[f"{key}_x"] = arr[:, 0]
        columns[f"{key}_y"] = arr[:, 1]
    return pd.DataFrame(columns).to_csv(index=False, float_format="%.9g", lineterminator="\n").encode("utf-8")


# --------------------------------------------------------------------------- Embedding Projector


def _tsv_cell(text: str) -> str:
    """A metadata cell: tabs and line breaks would split the row, so they are written as \\t, \\n, \\r
    (and a backslash as \\\\, so the escapes stay unambiguous); an empty cell becomes "(none)"."""
    text = str(text).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return text if text.strip() else "(none)"  # a blank line would be skipped, shifting every row after it


def _thumb_rgb(img, size: int, index: int):
    """A size x size RGB tile with the image fitted inside it (aspect kept, white padding)."""
    from PIL import Image

    a = np.asarray(img)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)) or a.size == 0:
        raise ExportError(f"Thumbnail {index} has shape {a.shape}; expected (H, W), (H, W, 3) or (H, W, 4).")
    if a.dtype != np.uint8:
        a = a.astype(np.float64)
        if a.size and np.nanmax(a) <= 1.0:  # floats in [0, 1]
            a = a * 255.0
        a = np.clip(np.nan_to_num(a), 0, 255).astype(np.uint8)
    im = Image.fromarray(a)
    if im.mode == "RGBA":
        bg = Image.new("RGB", im.size, (255, 255, 255))
        bg.paste(im, mask=im.getchannel("A"))
        im = bg
    im = im.convert("RGB")
    im.thumbnail((size, size), Image.Resampling.LANCZOS)
    tile = Image.new("RGB", (size, size), (255, 255, 255))
    tile.paste(im, ((size - im.width) // 2, (size - im.height) // 2))
    return tile


def _sprite(thumbnails: Sequence[np.ndarray]) -> tuple[bytes, int]:
    """PNG sprite in a square grid (ceil(sqrt(N)) per side, row-first) and the tile size."""
    from PIL import Image

    n = len(thumbnails)
    per_side = math.ceil(math.sqrt(n))
    size = min(_THUMB_MAX, SPRITE_MAX_PIXELS // per_side)
    if size < 1:
        raise ExportError(f"{n:,} thumbnails don't fit in an {SPRITE_MAX_PIXELS}-pixel sprite; export without thumbnails.")
    sheet = Image.new("RGB", (per_side * size, per_side * size), (255, 255, 255))
    for i, img in enumerate(thumbnails):
        row, col = divmod(i, per_side)
        sheet.paste(_thumb_rgb(img, size, i), (col * size, row * size))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG", optimize=False)
    return buf.getvalue(), size


def _pb_string(text: str) -> str:
    return json.dumps(str(text))  # a JSON string literal is a valid protobuf text-format string


def projector_bundle(
    vectors: np.ndarray,
    names,
    labels=None,
    thumbnails: Sequence[np.ndarray] | None = None,
    *,
    tensor_name: str = "features",
) -> bytes:
    """A zip for the TensorFlow Embedding Projector (projector.tensorflow.org → "Load").

    Contents:

    * ``vectors.tsv``: N rows of tab-separated floats, no header.
    * ``metadata.tsv``: header ``name<TAB>label`` and N rows when labels are given; otherwise
      one name per line and no header (the projector's rule for single-column metadata).
      Tabs and line breaks inside names/labels are written as ``\\t``/``\\n``; empty cells as ``(none)``.
    * ``sprite.png`` (with ``thumbnails``): a square grid of ceil(√N) tiles per side, row-first,
      tiles of min(64, 8192 // ceil(√N)) px so the sheet stays within 8192 × 8192.
    * ``projector_config.pbtxt`` (TensorBoard's format) and ``projector_config.json`` (the
      standalone projector's ``?config=`` format), both pointing at the files above.
    * ``README.txt``: how to load it.

    Example:
        >>> blob = projector_bundle(np.eye(3), ["a", "b", "c"])
        >>> sorted(zipfile.ZipFile(io.BytesIO(blob)).namelist())
        ['README.txt', 'metadata.tsv', 'projector_config.json', 'projector_config.pbtxt', 'vectors.tsv']
    """
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or vectors.shape[0] == 0 or vectors.shape[1] == 0:
        raise ExportError(f"Vectors have shape {vectors.shape}; expected (images, dims) with at least one of each.")
    _, names, labels = _validate({"vectors": vectors}, names, labels)
    if not np.isfinite(vectors).all():
        raise ExportError("Some vectors contain NaN or infinite values; the projector can't show them. "
                          "Re-extract with float32 precision or pick another layer.")
    n, dim = vectors.shape

    vec_buf = io.StringIO()
    np.savetxt(vec_buf, vectors.astype(np.float32), fmt="%.7g", delimiter="\t")
    if labels is not None:
        meta_lines = ["name\tlabel"] + [f"{_tsv_cell(a)}\t{_tsv_cell(b)}" for a, b in zip(names, labels, strict=False)]
    else:
        meta_lines = [_tsv_cell(a) for a in names]
    metadata = "\n".join(meta_lines) + "\n"

    sprite = None
    if thumbnails is not None:
        if len(thumbnails) != n:
            raise ExportError(f"Got {len(thumbnails)} thumbnails for {n} vectors; pass one per image (or none).")
        sprite, tile = _sprite(thumbnails)

    pb = [
        "embeddings {",
        f"  tensor_name: {_pb_string(tensor_name)}",
        f"  tensor_shape: {n}",
        f"  tensor_shape: {dim}",
        '  tensor_path: "vectors.tsv"',
        '  metadata_path: "metadata.tsv"',
    ]
    js: dict[str, object] = {
        "tensorName": str(tensor_name),
        "tensorShape": [n, dim],
        "tensorPath": "vectors.tsv",
        "metadataPath": "metadata.tsv",
    }
    if sprite is not None:
        pb += ["  sprite {", '    image_path: "sprite.png"', f"    single_image_dim: {tile}",
               f"    single_image_dim: {tile}", "  }"]
        js["sprite"] = {"imagePath": "sprite.png", "singleImageDim": [tile, tile]}
    pb.append("}")

    readme = (
        "Embedding Projector bundle from Layer Explorer\n\n"
        "1. Open https://projector.tensorflow.org and click 'Load'.\n"
        "2. Step 1: choose vectors.tsv. Step 2 (optional): choose metadata.tsv.\n"
        "To see the thumbnails (sprite.png), serve this folder and open the projector with\n"
        "?config=<url of projector_config.json>, or copy projector_config.pbtxt into a\n"
        "TensorBoard log directory next to the other files.\n"
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("vectors.tsv", vec_buf.getvalue())
        zf.writestr("metadata.tsv", metadata)
        if sprite is not None:
            zf.writestr("sprite.png", sprite, compress_type=zipfile.ZIP_STORED)  # PNG is compressed already
        zf.writestr("projector_config.pbtxt", "\n".join(pb) + "\n")
        zf.writestr("projector_config.json", json.dumps({"embeddings": [js]}, indent=2) + "\n")
        zf.writestr("README.txt", readme)
    return out.getvalue()


# --------------------------------------------------------------------------- reproduce


def reproduce_config(*, backbone, weights, layers, poolings, resize, precision, input_size, batch_size=32,
                     images=None, calibration_images=None) -> dict:
    """The extraction settings as plain JSON-able data (for a download and :func:`reproduce_script`).

    ``images`` (optional) is the app's export's ``paths``, in its row order: the script then writes
    its rows in that order, so its ``features.npz`` matches the app's row for row. Without it the
    script sorts by name.

    ``calibration_images`` (optional) names the images, in order, whose batch-norm statistics the
    random network was calibrated on (:func:`extractor.calibrate_batchnorm`); the script then
    calibrates on the same images before it extracts, so its features are the app's, not those of
    the uncalibrated network. It goes into the config as ``"calibrate_batchnorm": {"images": [...]}``.

    Example:
        >>> cfg = reproduce_config(backbone="vgg16", weights="imagenet", layers=["block4_pool"], poolings=["avg"],
        ...                        resize="stretch", precision="float32", input_size=(224, 224))
        >>> cfg["input_size"], cfg["batch_size"]
        ([224, 224], 32)
    """
    def str_list(value, what):
        items = [value] if isinstance(value, str) else list(value)
        if not items or not all(isinstance(v, str) and v for v in items):
            raise ExportError(f"{what} must be a non-empty list of names; got {value!r}.")
        return items

    if not isinstance(backbone, str) or not backbone:
        raise ExportError(f"backbone must be a backbone name such as 'resnet50'; got {backbone!r}.")
    if weights is not None and not isinstance(weights, str):
        raise ExportError(f"weights must be a name such as 'imagenet', or None; got {weights!r}.")
    try:
        size = [int(v) for v in input_size]
    except (TypeError, ValueError):
        size = []
    if len(size) != 2 or min(size) < 1:
        raise ExportError(f"input_size must be (height, width) in pixels; got {input_size!r}.")
    check_int(batch_size, "batch_size", 1, error=ExportError)
    if resize not in RESIZE_POLICIES:
        raise ExportError(f"resize must be one of {', '.join(RESIZE_POLICIES)}; got {resize!r}.")
    if images is not None and (isinstance(images, (str, bytes))
                               or not all(isinstance(v, str) and v for v in images)):
        raise ExportError(f"images must be a list of the exported image names (the 'paths'); got {images!r}.")
    if calibration_images is not None and (isinstance(calibration_images, (str, bytes)) or len(calibration_images) < 2
                                           or not all(isinstance(v, str) and v for v in calibration_images)):
        raise ExportError("calibration_images must list the names of at least 2 images the batch-norm statistics were "
                          f"calibrated on; got {calibration_images!r}.")
    config = {
        "layer_explorer_config": 1,
        "backbone": backbone,
        "weights": weights,
        "input_size": size,
        "layers": str_list(layers, "layers"),
        "poolings": str_list(poolings, "poolings"),
        "resize": str(resize),
        "precision": str(precision),
        "batch_size": int(batch_size),
    }
    if images is not None:
        config["images"] = list(images)
    if calibration_images is not None:
        config["calibrate_batchnorm"] = {"images": list(calibration_images)}
    json.dumps(config)  # guarantee: plain JSON
    return config


_SCRIPT = '''\
#!/usr/bin/env python
"""Re-extract the features chosen in Layer Explorer.

Usage:  python {script_name} IMAGE_OR_FOLDER [IMAGE_OR_FOLDER ...]

Give it the folder you unzipped your upload into (or the image files themselves). It writes
features.npz exactly as the app's export does: "paths" (each image's name inside the folder,
as the app names the members of a zip), "labels" (the image's own folder, when there are
folders) and one (N, C) float32 array per "layer/pooling" key, rows in the app's order.
Readable with np.load("features.npz") (no pickle needed).
Needs Layer Explorer installed (`pip install .` in its folder); runs from any directory.
A model or weights *file* named below is read from this script's own folder: put the
.keras / .weights.h5 file beside the script.{calibration_doc}

Settings (as JSON):
{config_json}
"""

import os
import sys
from pathlib import Path

import numpy as np

from extractor import FeatureExtractor, ImageSource, calibrate_batchnorm, gather_paths, load_backbone, load_image

# The same extraction on Ray Data (a resumable folder of Parquet shards; add --address auto on a cluster):
# {ray_command}

BACKBONE = {backbone!r}{backbone_note}
WEIGHTS = {weights!r}{weights_note}
INPUT_SIZE = {input_size!r}  # (height, width)
LAYERS = {layers!r}
POOLINGS = {poolings!r}
RESIZE = {resize!r}
PRECISION = {precision!r}
BATCH_SIZE = {batch_size!r}
IMAGES = {images!r}  # the app's row order (None: sort by name)
CALIBRATION_IMAGES = {calibration_images!r}  # batch-norm statistics calibrated on these (None: not calibrated)


def named_like_the_app(given):
    """Images under `given`, named and labelled as the app names the members of a zip."""
    batch = gather_paths([given])
    for problem in getattr(batch, "problems", []):
        print(f"skipped {{problem.message}}", file=sys.stderr)
    for source in batch.sources:
        if os.path.isdir(given):
            name = os.path.relpath(source.name, given).replace(os.sep, "/")
        else:
            name = os.path.basename(source.name)
        folder = name.rpartition("/")[0]
        yield ImageSource.from_bytes(name, source.data, folder.rpartition("/")[2] or None)


def beside_script(value):
    """A .keras model or .h5 weights file is looked up next to this script; names stay names."""
    if isinstance(value, str) and value.lower().endswith((".keras", ".h5")):
        return str(Path(__file__).resolve().parent / value)
    return value


def main(argv):
    if not argv:
        print(__doc__)
        return 2
    sources = [source for given in argv for source in named_like_the_app(given)]
    if IMAGES is None:
        sources.sort(key=lambda source: source.name)
    else:
        order = {{name: i for i, name in enumerate(IMAGES)}}
        extra = sorted(source.name for source in sources if source.name not in order)
        missing = len(set(IMAGES) - {{source.name for source in sources}})
        if extra or missing:
            print(f"note: {{missing}} of the app's images not found, {{len(extra)}} not in the app's export "
                  f"(put last); run this on the folder the upload was unzipped into", file=sys.stderr)
        sources.sort(key=lambda source: (order.get(source.name, len(order)), source.name))
    backbone = load_backbone(beside_script(BACKBONE), weights=beside_script(WEIGHTS), input_size=INPUT_SIZE)
    if CALIBRATION_IMAGES:
        # The app calibrated the random network's batch-norm statistics on these images (not
        # training: the weights stay random); without this step the features would differ.
        by_name = {{source.name: source for source in sources}}
        absent = [name for name in CALIBRATION_IMAGES if name not in by_name]
        if absent:
            print(f"error: {{len(absent)}} of the {{len(CALIBRATION_IMAGES)}} images the batch-norm statistics were "
                  f"calibrated on are not among the given images (first: {{absent[0]}}); run this on the folder "
                  "the upload was unzipped into", file=sys.stderr)
            return 2
        views = np.stack([load_image(by_name[name].data, name, tuple(INPUT_SIZE), RESIZE).pixels
                          for name in CALIBRATION_IMAGES])
        backbone = calibrate_batchnorm(backbone, views, max_images=len(views))
        print(f"calibrated batch-norm statistics on {{len(views)}} images (not training)", file=sys.stderr)
    fx = FeatureExtractor(backbone, layers=LAYERS, poolings=POOLINGS, resize=RESIZE, precision=PRECISION)
    result = fx.extract(sources, batch_size=BATCH_SIZE)
    for failure in result.failures:
        print(f"skipped {{failure.message}}", file=sys.stderr)
    columns = {{"paths": np.array(result.names, dtype=str)}}
    if any(label is not None for label in result.labels):
        columns["labels"] = np.array(["" if label is None else label for label in result.labels], dtype=str)
    np.savez("features.npz", **columns, **result.features)
    shapes = ", ".join(f"{{key}} {{value.shape}}" for key, value in result.features.items())
    print(f"wrote features.npz: {{len(result.names)}} images; {{shapes}}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
'''


def reproduce_script(config: dict, *, script_name: str = "extract_features.py") -> str:
    """A runnable Python script that repeats the extraction described by ``config``.

    ``config`` is what :func:`reproduce_config` returns (it is validated again here, so a
    hand-edited dict fails with a clear message). Values are written with ``repr``, so no
    setting can inject code.

    Example:
        >>> cfg = reproduce_config(backbone="vgg16", weights=None, layers=["block4_pool"], poolings=["avg"],
        ...                        resize="stretch", precision="float32", input_size=(64, 64))
        >>> compile(reproduce_script(cfg), "extract_features.py", "exec") is not None
        True
    """
    if not isinstance(config, Mapping):
        raise ExportError(f"config must be the dict reproduce_config returns; got {type(config).__name__}.")
    missing = [k for k in ("backbone", "weights", "layers", "poolings", "resize", "precision", "input_size")
               if k not in config]
    if missing:
        raise ExportError(f"config is missing {', '.join(missing)}; build it with reproduce_config(...).")
    cfg = reproduce_config(
        backbone=config["backbone"],
        weights=config["weights"],
        layers=config["layers"],
        poolings=config["poolings"],
        resize=config["resize"],
        precision=config["precision"],
        input_size=config["input_size"],
        batch_size=config.get("batch_size", 32),
        images=config.get("images"),
        calibration_images=(config.get("calibrate_batchnorm") or {}).get("images"),
    )
    calibration = cfg.get("calibrate_batchnorm", {}).get("images")
    # The row list can be thousands of names: written once, as IMAGES, not again in the docstring.
    shown = {k: v for k, v in cfg.items() if k not in ("images", "calibrate_batchnorm")}
    if "images" in cfg:
        shown["images"] = f"{len(cfg['images'])} names, in the app's row order (IMAGES below)"
    if calibration:
        shown["calibrate_batchnorm"] = f"on {len(calibration)} images (CALIBRATION_IMAGES below)"
    config_json = "\n".join("    " + line for line in json.dumps(shown, indent=2).splitlines())
    # The docstring is a plain (non-raw) triple-quoted string: keep JSON escapes and quotes inert.
    config_json = config_json.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    def beside(value, what: str) -> str:
        if not (isinstance(value, str) and value.lower().endswith((".keras", ".h5"))):
            return ""
        # Only a plain file name goes into the comment; anything else could end the comment line.
        named = value if re.fullmatch(r"[\w.-]{1,200}", value) else "that file"
        return f"  # {what}: put {named} in this script's folder"

    return _SCRIPT.format(
        backbone_note=beside(cfg["backbone"], "your model file"),
        weights_note=beside(cfg["weights"], "your weights file"),
        script_name=script_name if re.fullmatch(r"[\w.-]{1,100}", str(script_name)) else "extract_features.py",
        config_json=config_json,
        backbone=cfg["backbone"],
        weights=cfg["weights"],
        input_size=tuple(cfg["input_size"]),
        layers=cfg["layers"],
        poolings=cfg["poolings"],
        resize=cfg["resize"],
        precision=cfg["precision"],
        batch_size=cfg["batch_size"],
        images=cfg.get("images"),
        calibration_images=calibration,
        calibration_doc=("\nThe random network's batch-norm statistics are calibrated first on the "
                         f"{len(calibration)} images in\nCALIBRATION_IMAGES, as the app did (this is not training)."
                         if calibration else ""),
        ray_command=("not available here: the Ray engine does not calibrate batch-norm statistics" if calibration
                     else _ray_command(cfg)),
    )


def _ray_command(cfg: dict) -> str:
    """The command line for the same extraction with ``--engine ray``; one line, shell-quoted."""
    height, width = cfg["input_size"]
    words = ["python", "-m", "extractor", "extract", cfg["backbone"], "IMAGE_OR_FOLDER",
             "--layers", ",".join(cfg["layers"]), "--pooling", ",".join(cfg["poolings"]),
             "--weights", "none" if cfg["weights"] is None else cfg["weights"]]
    if height == width:  # the command line takes square sizes only
        words += ["--input-size", str(height)]
    words += ["--resize", cfg["resize"], "--precision", cfg["precision"], "--batch-size", str(cfg["batch_size"]),
              "--engine", "ray", "--out", "features/"]
    # Quoted for the shell, and kept on one line so no value can end the comment it sits in.
    return " ".join(shlex.quote(w) for w in words).replace("\r", " ").replace("\n", " ")
