"""The command line is a contract: formats, exit codes, one-line errors, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from extractor.__main__ import main

ROOT = Path(__file__).resolve().parent.parent
FAST = ["vgg16", "--weights", "none", "--input-size", "32"]


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    """Two classes of three images each, plus one broken file."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for label in ("cats", "dogs"):
        (root / label).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(root / label / f"{i}.png")
    (root / "dogs" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_backbones_json(capsys):
    code, out, _ = run(capsys, "backbones", "--json")
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["resnet50"]["preprocessing"] == "caffe"
    assert rows["resnet50"]["input_size"] == [224, 224]
    assert rows["resnet50"]["imagenet_cached"] is False  # the test cache is empty
    assert "demo-shapes" in rows


def test_layers_json_contract(capsys):
    code, out, _ = run(capsys, "layers", *FAST, "--json")
    assert code == 0
    rows = json.loads(out)
    assert rows[0]["name"] == "block1_conv1"
    for row in rows:
        assert {"name", "shape", "kind", "block"} <= set(row)
        assert len(row["shape"]) == 3 and all(isinstance(d, int) for d in row["shape"])


def test_extract_npz(capsys, image_folder, tmp_path):
    out_file = tmp_path / "f.npz"
    code, out, err = run(capsys, "extract", *FAST, str(image_folder), "--layers", "block2_pool,block5_pool",
                         "--pooling", "avg,max", "--batch-size", "4", "--out", str(out_file))
    assert code == 0, err
    assert "broken.jpg" in err and "Traceback" not in err
    data = np.load(out_file)  # no allow_pickle needed
    assert len(data["paths"]) == 6
    assert sorted(set(data["labels"])) == ["cats", "dogs"]
    assert data["block2_pool/avg"].shape == (6, 128) and data["block2_pool/avg"].dtype == np.float32
    assert data["block5_pool/max"].shape == (6, 512)
    assert all(Path(p).exists() for p in data["paths"])


def test_extract_parquet_round_trip(capsys, image_folder, tmp_path):
    from extractor.export import read_features

    npz, parquet = tmp_path / "f.npz", tmp_path / "f.parquet"
    for target in (npz, parquet):
        code, _, err = run(capsys, "extract", *FAST, str(image_folder), "--layers", "block3_pool",
                           "--pooling", "gem", "--out", str(target))
        assert code == 0, err
    a, names_a, labels_a = read_features(npz)
    b, names_b, labels_b = read_features(parquet)
    assert names_a == names_b and labels_a == labels_b
    np.testing.assert_array_equal(a["block3_pool/gem"], b["block3_pool/gem"])


def test_no_good_image_is_a_failure_with_one_line(capsys, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    code, _, err = run(capsys, "extract", *FAST, str(bad), "--layers", "block1_pool", "--out", str(tmp_path / "x.npz"))
    assert code != 0
    assert err.strip().splitlines()[-1].startswith("error:")
    assert not (tmp_path / "x.npz").exists()


@pytest.mark.parametrize("argv,fragment", [
    (["layers", "vgg16", "--weights", "none", "--input-size", "32", "--bogus"], "unrecognized"),
    (["extract", *FAST, "x.png", "--layers", "block1_pool", "--out", "f.txt"], ".npz or .parquet"),
    (["extract", *FAST, "x.png", "--out", "f.npz"], "--layers"),
    (["extract", *FAST, "x.png", "--layers", "block1_pool", "--precision", "half", "--out", "f.npz"], "precision"),
])
def test_usage_errors_are_one_line(capsys, argv, fragment):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and fragment in err


def test_wrong_layer_and_backbone_are_one_line_errors(capsys, image_folder, tmp_path):
    code, _, err = run(capsys, "extract", *FAST, str(image_folder), "--layers", "block2_pol",
                       "--out", str(tmp_path / "f.npz"))
    assert code == 1 and "block2_pool" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "layers", "resnet5")
    assert code == 1 and "resnet50" in err


def test_missing_imagenet_weights_message(capsys, monkeypatch):
    from extractor import backbones

    monkeypatch.setattr(backbones, "_weights_host_reachable", lambda: False)
    code, _, err = run(capsys, "layers", "vgg16", "--weights", "imagenet")
    assert code == 1 and "ImageNet weights for vgg16 are not available" in err


def test_help_documents_each_option_with_an_example(capsys):
    with pytest.raises(SystemExit):
        main(["extract", "--help"])
    out = capsys.readouterr().out
    for option in ("--layers", "--pooling", "--weights", "--batch-size", "--precision", "--resize", "--out"):
        assert option in out
    assert "Example" in out and "e.g." in out


def test_real_entry_point_in_a_fresh_process(tmp_path, image_folder):
    env = {**os.environ, "KERAS_HOME": str(tmp_path / "keras")}
    proc = subprocess.run([sys.executable, "-m", "extractor", "extract", *FAST, str(image_folder / "cats"),
                           "--layers", "block1_pool", "--out", str(tmp_path / "o.npz")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "wrote 3 images" in proc.stdout


def test_inspect_model_exit_codes(capsys, tmp_path):
    import keras

    good = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(2, 3, name="c")])
    good.save(tmp_path / "good.keras")
    evil = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Lambda(lambda x: x + 1, name="evil")])
    evil.save(tmp_path / "evil.keras")

    code, out, _ = run(capsys, "inspect-model", str(tmp_path / "good.keras"))
    assert code == 0 and out.startswith("ACCEPTED")
    code, out, _ = run(capsys, "inspect-model", str(tmp_path / "evil.keras"))
    assert code == 3 and out.startswith("REFUSED") and "Lambda" in out
    code, out, _ = run(capsys, "inspect-model", str(tmp_path / "evil.keras"), "--json")
    assert code == 3 and json.loads(out)["accepted"] is False
    code, _, err = run(capsys, "inspect-model", str(tmp_path / "missing.keras"))
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_sweep_scores_every_layer_and_pooling(capsys, image_folder, tmp_path):
    """The local sweep: one table row per layer × pooling (times included), the skipped file, a recommendation."""
    import pandas as pd

    report = tmp_path / "report.csv"
    code, out, err = run(capsys, "sweep", *FAST, str(image_folder), "--layers", "block1_pool,block2_pool",
                         "--poolings", "avg,max", "--out", str(report))
    assert code == 0, err
    assert "skipped " in err and "broken.jpg" in err
    assert "Recommendation:" in out  # two labelled classes of three images
    table = pd.read_csv(report)
    assert sorted(zip(table["layer"], table["pooling"], strict=True)) == [
        ("block1_pool", "avg"), ("block1_pool", "max"), ("block2_pool", "avg"), ("block2_pool", "max")]
    assert (table["ms_per_image"] > 0).all()
    assert table.loc[table["layer"] == "block1_pool", "depth"].iloc[0] < table.loc[table["layer"] == "block2_pool", "depth"].iloc[0]
