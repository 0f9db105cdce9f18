"""Exports: exact round-trips, CSV limits, the Embedding Projector bundle, the reproduce script."""

from __future__ import annotations

import io
import json
import math
import sys
import types
import zipfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from extractor.errors import LayerExplorerError
from extractor.export import (
    CSV_MAX_CELLS,
    SPRITE_MAX_PIXELS,
    ExportError,
    coords_to_csv,
    features_to_csv,
    features_to_npz,
    features_to_parquet,
    features_to_table,
    projector_bundle,
    read_features,
    reproduce_config,
    reproduce_script,
)
from extractor.sources import ImageSource


@pytest.fixture()
def data():
    rng = np.random.default_rng(0)
    features = {
        "block3_conv2/avg": rng.normal(size=(5, 8)).astype(np.float32),
        "block5_pool/gem": (rng.normal(size=(5, 3)) * 1e-30).astype(np.float32),  # tiny values survive too
        "outer/inner/max": np.array([[np.float32(np.pi)] * 2] * 5, np.float32),
    }
    names = ["a.jpg", "b c.png", "ünïcode.jpg", "comma,name.jpg", 'quote"name.jpg']
    labels = ["cat", "dog", "cat", "", "dog"]
    return features, names, labels


def assert_same(features, back):
    assert list(back) == list(features)
    for key, arr in features.items():
        assert back[key].dtype == np.float32 and back[key].shape == arr.shape
        np.testing.assert_array_equal(back[key], arr)


# --------------------------------------------------------------------------- npz / parquet


def test_npz_round_trip_without_pickle(data):
    features, names, labels = data
    blob = features_to_npz(features, names, labels)
    with np.load(io.BytesIO(blob)) as npz:  # allow_pickle defaults to False
        assert npz["paths"].dtype.kind == "U" and npz["labels"].dtype.kind == "U"
        assert npz["paths"].tolist() == names
        np.testing.assert_array_equal(npz["block3_conv2/avg"], features["block3_conv2/avg"])
    back, back_names, back_labels = read_features(blob)
    assert_same(features, back)
    assert back_names == names and back_labels == labels


def test_npz_without_labels(data):
    features, names, _ = data
    with np.load(io.BytesIO(features_to_npz(features, names))) as npz:
        assert "labels" not in npz.files
    assert read_features(features_to_npz(features, names))[2] is None


def test_parquet_round_trip_exact(data, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    features, names, labels = data
    blob = features_to_parquet(features, names, labels)
    table = pq.read_table(io.BytesIO(blob))
    assert table.column_names == ["paths", "labels", *features]
    field_type = table.schema.field("block3_conv2/avg").type
    assert pa.types.is_fixed_size_list(field_type) and field_type.list_size == 8
    assert field_type.value_type == pa.float32()
    back, back_names, back_labels = read_features(blob)
    assert_same(features, back)
    assert back_names == names and back_labels == labels
    path = tmp_path / "f.parquet"
    path.write_bytes(blob)
    assert_same(features, read_features(path)[0])  # and from a path, as the CLI does
    assert_same(features, read_features(str(path))[0])


def test_parquet_readable_with_plain_pandas(data):
    features, names, labels = data
    df = pd.read_parquet(io.BytesIO(features_to_parquet(features, names, labels)))
    assert df["paths"].tolist() == names
    np.testing.assert_array_equal(np.stack(df["block3_conv2/avg"].to_numpy()), features["block3_conv2/avg"])


def test_table_layouts(data):
    features, names, labels = data
    nested = features_to_table(features, names, labels)
    assert list(nested.columns) == ["paths", "labels", *features]
    np.testing.assert_array_equal(nested.loc[1, "block3_conv2/avg"], features["block3_conv2/avg"][1])
    wide = features_to_table(features, names, wide=True)
    assert list(wide.columns[:3]) == ["paths", "block3_conv2/avg_0", "block3_conv2/avg_1"]
    assert wide.shape == (5, 1 + 8 + 3 + 2)


def test_read_features_refuses_other_files(tmp_path):
    with pytest.raises(ExportError, match="neither an .npz nor a .parquet"):
        read_features(b"path,label\n")
    buf = io.BytesIO()
    np.savez(buf, x=np.ones(2))
    with pytest.raises(ExportError, match="no 'paths'"):
        read_features(buf.getvalue())
    buf = io.BytesIO()
    np.savez(buf, paths=np.array([{"evil": 1}], dtype=object))
    with pytest.raises(ExportError):  # object arrays need pickle, which stays off
        read_features(buf.getvalue())


@pytest.mark.parametrize("build", [features_to_npz, features_to_parquet, features_to_csv])
def test_shape_errors(build):
    with pytest.raises(ExportError, match=r"shape \(3, 2\); expected \(2, channels\)"):
        build({"a/avg": np.ones((3, 2))}, ["x", "y"])
    with pytest.raises(ExportError, match="3 labels for 2 images"):
        build({"a/avg": np.ones((2, 2))}, ["x", "y"], ["a", "b", "c"])
    with pytest.raises(ExportError, match="no features"):
        build({}, ["x"])
    with pytest.raises(ExportError, match="reserved"):
        build({"paths": np.ones((1, 2))}, ["x"])
    assert issubclass(ExportError, LayerExplorerError)


# --------------------------------------------------------------------------- CSV


def test_csv_header_and_values_round_trip(data):
    features, names, labels = data
    text = features_to_csv(features, names, labels).decode("utf-8")
    header = text.splitlines()[0].split(",")
    assert header[:4] == ["paths", "labels", "block3_conv2/avg_0", "block3_conv2/avg_1"]
    assert header[-1] == "outer/inner/max_1" and len(header) == 2 + 8 + 3 + 2
    df = pd.read_csv(io.StringIO(text), keep_default_na=False)
    assert df["paths"].tolist() == names and df["labels"].tolist() == labels
    cols = [f"block5_pool/gem_{i}" for i in range(3)]
    np.testing.assert_array_equal(df[cols].to_numpy().astype(np.float32), features["block5_pool/gem"])


def test_csv_refuses_huge_exports_with_a_way_out():
    feats = {"b/flatten": np.zeros((100, 30_000), np.float32)}
    with pytest.raises(ExportError, match=r"3\.0 M values.*\.npz or \.parquet"):
        features_to_csv(feats, [f"{i}.jpg" for i in range(100)])
    assert CSV_MAX_CELLS == 2_000_000
    small = {"b/avg": np.zeros((10, 100), np.float32)}
    with pytest.raises(ExportError, match="0.0 M limit"):
        features_to_csv(small, [f"{i}.jpg" for i in range(10)], max_cells=999)
    assert features_to_csv(small, [f"{i}.jpg" for i in range(10)], max_cells=1000).startswith(b"paths,")


def test_coords_to_csv():
    coords = {"pca": np.array([[0.5, -1.0], [2.0, 3.0]]), "tsne": np.zeros((2, 2))}
    text = coords_to_csv(coords, ["a.jpg", "b.jpg"], ["x", "y"]).decode()
    assert text.splitlines()[0] == "paths,labels,pca_x,pca_y,tsne_x,tsne_y"
    assert text.splitlines()[1] == "a.jpg,x,0.5,-1,0,0"
    with pytest.raises(ExportError, match=r"expected \(images, 2\)"):
        coords_to_csv({"pca": np.zeros((2, 3))}, ["a", "b"])


# --------------------------------------------------------------------------- Embedding Projector


def open_zip(blob):
    zf = zipfile.ZipFile(io.BytesIO(blob))
    return zf, {name: zf.read(name) for name in zf.namelist()}


def test_projector_bundle_contents_with_labels():
    vectors = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    zf, files = open_zip(projector_bundle(vectors, ["a\tb.jpg", "new\nline.jpg", "ok.jpg"], ["cat", "d\tog", ""]))
    assert set(files) == {"vectors.tsv", "metadata.tsv", "projector_config.pbtxt", "projector_config.json", "README.txt"}
    rows = files["vectors.tsv"].decode().splitlines()
    assert len(rows) == 3 and rows[0].split("\t")[0] == "0"  # no header
    np.testing.assert_allclose(np.loadtxt(io.StringIO(files["vectors.tsv"].decode()), delimiter="\t"), vectors, rtol=1e-6)
    meta = files["metadata.tsv"].decode().split("\n")
    assert meta[0] == "name\tlabel"
    assert meta[1] == "a\\tb.jpg\tcat"
    assert meta[2] == "new\\nline.jpg\td\\tog"
    assert meta[3] == "ok.jpg\t(none)"
    assert all(line.count("\t") == 1 for line in meta[:4]) and meta[4:] == [""]
    pb = files["projector_config.pbtxt"].decode()
    assert 'tensor_name: "features"' in pb and 'tensor_path: "vectors.tsv"' in pb
    assert 'metadata_path: "metadata.tsv"' in pb and "sprite" not in pb


def test_projector_single_column_metadata_has_no_header():
    _, files = open_zip(projector_bundle(np.eye(3), ["a.jpg", "b.jpg", "c.jpg"]))
    assert files["metadata.tsv"].decode() == "a.jpg\nb.jpg\nc.jpg\n"


def test_projector_sprite_grid_for_2000_thumbnails():
    rng = np.random.default_rng(0)
    n = 2000
    thumbs = [np.full((40, 30, 3), i % 256, np.uint8) for i in range(n)]
    thumbs[1] = rng.integers(0, 255, (10, 20), dtype=np.uint8)   # greyscale
    thumbs[2] = np.zeros((16, 16, 4), np.uint8)                  # RGBA
    thumbs[3] = np.ones((8, 8, 3), np.float32)                   # float in [0, 1]
    _, files = open_zip(projector_bundle(rng.normal(size=(n, 3)), [f"{i}.jpg" for i in range(n)],
                                         thumbnails=thumbs, tensor_name='my "net"'))
    sprite = Image.open(io.BytesIO(files["sprite.png"]))
    per_side = math.ceil(math.sqrt(n))  # 45
    assert per_side == 45
    assert sprite.size == (45 * 64, 45 * 64) and max(sprite.size) <= SPRITE_MAX_PIXELS
    px = np.asarray(sprite.convert("RGB"))
    # Image 100 sits at row 2, column 10 (row-first); its tile is filled with grey 100 (aspect kept, white padding).
    row, col = divmod(100, per_side)
    tile = px[row * 64:(row + 1) * 64, col * 64:(col + 1) * 64]
    assert (tile[32, 32] == 100).all() and (tile[32, 0] == 255).all()  # 40x30 -> 64x48, padded left/right
    assert (px[row * 64 + 32, (col + 1) * 64 + 32] == 101).all()
    pb = files["projector_config.pbtxt"].decode()
    assert 'image_path: "sprite.png"' in pb and pb.count("single_image_dim: 64") == 2
    assert 'tensor_name: "my \\"net\\""' in pb and "tensor_shape: 2000" in pb
    cfg = json.loads(files["projector_config.json"])["embeddings"][0]
    assert cfg["sprite"] == {"imagePath": "sprite.png", "singleImageDim": [64, 64]}
    assert cfg["tensorShape"] == [2000, 3]


def test_projector_sprite_shrinks_thumbnails_to_stay_under_the_limit(monkeypatch):
    import extractor.export as export

    # 300 images in a 18 x 18 grid with a 512-px limit: tiles of 512 // 18 = 28 px.
    monkeypatch.setattr(export, "SPRITE_MAX_PIXELS", 512)
    thumbs = [np.zeros((64, 64, 3), np.uint8)] * 300
    _, files = open_zip(export.projector_bundle(np.ones((300, 2)), [str(i) for i in range(300)], thumbnails=thumbs))
    assert Image.open(io.BytesIO(files["sprite.png"])).size == (18 * 28, 18 * 28)
    assert "single_image_dim: 28" in files["projector_config.pbtxt"].decode()


def test_projector_errors():
    with pytest.raises(ExportError, match="3 thumbnails for 2 vectors"):
        projector_bundle(np.eye(2), ["a", "b"], thumbnails=[np.zeros((4, 4, 3), np.uint8)] * 3)
    with pytest.raises(ExportError, match="NaN"):
        projector_bundle(np.array([[np.nan, 1.0], [1.0, 2.0]]), ["a", "b"])
    with pytest.raises(ExportError, match="Thumbnail 0"):
        projector_bundle(np.eye(2), ["a", "b"], thumbnails=[np.zeros((4, 4, 5), np.uint8)] * 2)


# --------------------------------------------------------------------------- reproduce


def config():
    return reproduce_config(backbone="vgg16", weights="imagenet", layers=["block3_conv3", "block4_pool"],
                            poolings=["avg", "gem"], resize="pad", precision="float32", input_size=(224, 224),
                            batch_size=16)


def test_reproduce_config_is_plain_json():
    cfg = config()
    assert json.loads(json.dumps(cfg)) == cfg
    assert cfg["input_size"] == [224, 224] and cfg["layers"] == ["block3_conv3", "block4_pool"]
    with pytest.raises(ExportError, match="input_size"):
        reproduce_config(backbone="vgg16", weights=None, layers=["x"], poolings=["avg"], resize="stretch",
                         precision="float32", input_size=(224,))
    with pytest.raises(ExportError, match="layers"):
        reproduce_config(backbone="vgg16", weights=None, layers=[], poolings=["avg"], resize="stretch",
                         precision="float32", input_size=(224, 224))


def test_reproduce_script_compiles_and_quotes_safely():
    script = reproduce_script(config())
    compile(script, "extract_features.py", "exec")
    assert ("from extractor import FeatureExtractor, ImageSource, calibrate_batchnorm, gather_paths, load_backbone,"
            " load_image") in script
    assert "LAYERS = ['block3_conv3', 'block4_pool']" in script and "INPUT_SIZE = (224, 224)" in script
    evil = dict(config(), layers=['x"""\nimport os\n"""', "\\N{oops}"], backbone="it's")
    compile(reproduce_script(evil), "x.py", "exec")  # repr() keeps every value inert
    with pytest.raises(ExportError, match="missing"):
        reproduce_script({"backbone": "vgg16"})


def test_reproduce_script_runs_against_the_documented_api(tmp_path, monkeypatch):
    """Run the script with a stand-in `extractor` that records the calls the script makes."""
    calls = {}

    def load_backbone(name, weights=None, input_size=None):
        calls["load"] = (name, weights, input_size)
        return "BACKBONE"

    class FeatureExtractor:
        def __init__(self, backbone, layers, poolings, resize, precision):
            calls["fx"] = (backbone, layers, poolings, resize, precision)

        def extract(self, sources, batch_size):
            calls["extract"] = ([(s.name, s.label) for s in sources], batch_size)
            return types.SimpleNamespace(
                features={"block3_conv3/avg": np.ones((2, 4), np.float32)}, names=[s.name for s in sources],
                labels=[s.label for s in sources], failures=[])

    def gather_paths(paths):
        calls["paths"] = paths
        return types.SimpleNamespace(sources=[types.SimpleNamespace(name=f"{paths[0]}/b.jpg", data=b"2"),
                                              types.SimpleNamespace(name=f"{paths[0]}/a.jpg", data=b"1")])

    fake = types.ModuleType("extractor")
    fake.load_backbone, fake.FeatureExtractor, fake.gather_paths = load_backbone, FeatureExtractor, gather_paths
    fake.ImageSource = ImageSource

    def not_called(*args, **kwargs):  # an uncalibrated config never recalibrates nor decodes by itself
        raise AssertionError("the script calibrated a network its config did not calibrate")

    fake.calibrate_batchnorm = fake.load_image = not_called
    monkeypatch.setitem(sys.modules, "extractor", fake)
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "reproduce"}
    exec(compile(reproduce_script(config()), "extract_features.py", "exec"), namespace)
    (tmp_path / "imgs").mkdir()
    assert namespace["main"](["imgs"]) == 0  # names relative to the folder, sorted (no row list given)
    assert calls["load"] == ("vgg16", "imagenet", (224, 224))
    assert calls["fx"] == ("BACKBONE", ["block3_conv3", "block4_pool"], ["avg", "gem"], "pad", "float32")
    assert calls["paths"] == ["imgs"] and calls["extract"] == ([("a.jpg", None), ("b.jpg", None)], 16)
    with np.load(tmp_path / "features.npz") as npz:
        assert npz["paths"].tolist() == ["a.jpg", "b.jpg"] and npz["block3_conv3/avg"].shape == (2, 4)
        assert "labels" not in npz.files  # no folders, no labels: as the app writes it
    assert namespace["main"]([]) == 2  # no arguments: usage


def test_csv_cells_that_look_like_formulas_are_defused():
    import numpy as np

    from extractor.export import coords_to_csv, features_to_csv

    names = ["=HYPERLINK(\"http://x\")", "+1.png", "ok.png"]
    text = features_to_csv({"b/avg": np.ones((3, 2), np.float32)}, names, ["@cat", "dog", "-x"]).decode()
    assert "'=HYPERLINK" in text and "'+1.png" in text and "'@cat" in text and "'-x" in text
    assert "\nok.png," in text
    coords = coords_to_csv({"pca": np.zeros((3, 2), np.float32)}, names).decode()
    assert "'=HYPERLINK" in coords


def test_one_naming_everywhere_paths_and_labels(data):
    """Issue 10: .npz said paths/labels, .parquet and .csv said path/label. Now every format says the same."""
    import pyarrow.parquet as pq

    features, names, labels = data
    with np.load(io.BytesIO(features_to_npz(features, names, labels))) as npz:
        npz_names = [k for k in npz.files if k not in features]
    parquet_names = [c for c in pq.read_table(io.BytesIO(features_to_parquet(features, names, labels))).column_names
                     if c not in features]
    csv_names = features_to_csv(features, names, labels).decode().splitlines()[0].split(",")[:2]
    coords_names = coords_to_csv({"pca": np.zeros((5, 2))}, names, labels).decode().splitlines()[0].split(",")[:2]
    assert npz_names == parquet_names == csv_names == coords_names == ["paths", "labels"]


def test_read_features_still_reads_the_old_singular_parquet_columns(data):
    import pyarrow as pa
    import pyarrow.parquet as pq

    features, names, labels = data
    table = pq.read_table(io.BytesIO(features_to_parquet(features, names, labels)))
    old = table.rename_columns(["path", "label", *table.column_names[2:]])  # what earlier versions wrote
    buf = io.BytesIO()
    pq.write_table(old.replace_schema_metadata(table.schema.metadata), buf)
    back, back_names, back_labels = read_features(buf.getvalue())
    assert_same(features, back)
    assert back_names == names and back_labels == labels
    assert isinstance(old, pa.Table)
