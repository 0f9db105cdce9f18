"""The exported script really reproduces the extraction (run against the real core, not a stand-in)."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import numpy as np
import pytest

from extractor import FeatureExtractor, gather_paths, load_backbone
from extractor.demo import export_demo_set
from extractor.export import ExportError, reproduce_config, reproduce_script


def test_exported_script_gives_the_same_features(tmp_path, monkeypatch):
    folder = tmp_path / "shapes"
    export_demo_set("shapes", folder, per_class=3, seed=5)
    config = reproduce_config(backbone="demo-shapes", weights="pretrained", layers=["block2_pool", "block4_pool"],
                              poolings=["avg", "gem"], resize="pad", precision="float32", input_size=(64, 64))
    script = tmp_path / "extract_features.py"
    script.write_text(reproduce_script(config))

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(script), str(folder)])
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exit_:  # the script ends with sys.exit(main())
        assert exit_.code in (0, None)
    got = np.load(tmp_path / "features.npz")

    fx = FeatureExtractor(load_backbone("demo-shapes", input_size=(64, 64)), ["block2_pool", "block4_pool"],
                          ["avg", "gem"], resize="pad")
    want = fx.extract(gather_paths([str(folder)]).sources)
    # Names as the app gives them (relative to the folder, like zip members); one level of class folders
    # sorts the same way gather_paths walks it.
    assert list(got["paths"]) == [Path(n).relative_to(folder).as_posix() for n in want.names]
    assert list(got["labels"]) == want.labels
    for key, values in want.features.items():
        np.testing.assert_allclose(got[key], values, rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------------------------
# issue 10, item 3: the script writes the app's rows — same names, same labels, same order


def _app_export(folder, members, backbone, layers, poolings, resize):
    """What the app exports for a zip of ``members`` (in that order): read_zip, extract, features_to_npz."""
    import io
    import zipfile

    from extractor.export import features_to_npz, read_features
    from extractor.sources import read_zip

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for member in members:
            zf.write(folder / member, member)
    batch = read_zip(buf.getvalue(), "set.zip")
    fx = FeatureExtractor(backbone, layers, poolings, resize=resize)
    result = fx.extract(batch.sources)
    labels = ["" if lab is None else lab for lab in result.labels] if result.has_labels else None
    return read_features(features_to_npz(result.features, result.names, labels))


def _run_script(tmp_path, monkeypatch, config, *args):
    from extractor.export import read_features

    script = tmp_path / "extract_features.py"
    script.write_text(reproduce_script(config))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(script), *map(str, args)])
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exit_:
        assert exit_.code in (0, None)
    return read_features(tmp_path / "features.npz")


def test_script_writes_the_apps_names_labels_and_row_order(tmp_path, monkeypatch):
    folder = tmp_path / "unzipped"
    export_demo_set("shapes", folder, per_class=2, seed=3)
    # A zip stores members in the order they were added, which is rarely sorted: interleave the classes.
    members = sorted((p.relative_to(folder).as_posix() for p in folder.rglob("*.png")),
                     key=lambda m: (m.split("/")[-1].rsplit("_", 1)[-1], m))
    assert members != sorted(members)
    layers, poolings = ["block2_pool"], ["avg"]
    backbone = load_backbone("demo-shapes", input_size=(64, 64))
    app_feats, app_names, app_labels = _app_export(folder, members, backbone, layers, poolings, "pad")
    assert app_names == members and app_labels is not None

    config = reproduce_config(backbone="demo-shapes", weights="pretrained", layers=layers, poolings=poolings,
                              resize="pad", precision="float32", input_size=(64, 64), images=app_names)
    feats, names, labels = _run_script(tmp_path, monkeypatch, config, folder)
    assert names == app_names
    assert labels == app_labels
    np.testing.assert_allclose(feats["block2_pool/avg"], app_feats["block2_pool/avg"], rtol=1e-6, atol=1e-6)


def test_script_without_a_row_list_sorts_by_name_and_labels_by_parent_folder(tmp_path, monkeypatch):
    folder = tmp_path / "unzipped"
    export_demo_set("shapes", folder, per_class=1, seed=3)
    config = reproduce_config(backbone="demo-shapes", weights="pretrained", layers=["block2_pool"],
                              poolings=["avg"], resize="pad", precision="float32", input_size=(64, 64))
    _, names, labels = _run_script(tmp_path, monkeypatch, config, folder)
    assert names == sorted(names) and all("/" in n and not n.startswith(str(folder)) for n in names)
    assert labels == [n.split("/")[0] for n in names]  # the zip rule: the image's own folder


def test_reproduce_config_checks_the_row_list():
    with pytest.raises(ExportError, match="images"):
        reproduce_config(backbone="vgg16", weights=None, layers=["b"], poolings=["avg"], resize="pad",
                         precision="float32", input_size=(64, 64), images="a.png")


def test_a_model_file_name_gets_its_comment_and_no_name_can_end_the_line():
    """The script says where the model file goes; a name with a line break stays inside repr."""
    import ast

    from extractor.export import reproduce_config, reproduce_script

    def script(backbone):
        return reproduce_script(reproduce_config(backbone=backbone, weights=None, layers=["conv2"], poolings=["avg"],
                                                 resize="stretch", precision="float32", input_size=(64, 64)))

    assert "BACKBONE = 'net.keras'  # your model file: put net.keras in this script's folder\n" in script("net.keras")
    evil = "x\nimport os; os.system('boom')\n#.keras"
    code = script(evil)
    assert "\nimport os; os.system" not in code and "put that file in this script's folder" in code
    assert [n for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Assign)
            and getattr(n.targets[0], "id", "") == "BACKBONE"][0].value.value == evil


def test_a_bn_calibrated_export_calibrates_again_and_gives_the_apps_features(tmp_path, monkeypatch):
    """Random weights with batch-norm statistics calibrated on the images: the script calibrates on
    the same images first (before, it ran the uncalibrated network and gave other features)."""
    from extractor import calibrate_batchnorm, load_image

    folder = tmp_path / "unzipped"
    export_demo_set("shapes", folder, per_class=2, seed=4)
    sources = gather_paths([str(folder)]).sources
    names = [Path(s.name).relative_to(folder).as_posix() for s in sources]
    chosen = names[::2]  # the app calibrates on an evenly spaced subset of a large set
    by_name = dict(zip(names, sources, strict=True))
    views = np.stack([load_image(by_name[n].data, n, (64, 64), "pad").pixels for n in chosen])
    random = load_backbone("demo-shapes", weights="none", input_size=(64, 64))
    calibrated = calibrate_batchnorm(random, views)
    layers, poolings = ["block3_pool"], ["avg"]
    want = FeatureExtractor(calibrated, layers, poolings, resize="pad").extract(sources).features["block3_pool/avg"]
    plain = FeatureExtractor(random, layers, poolings, resize="pad").extract(sources).features["block3_pool/avg"]
    assert not np.allclose(want, plain, rtol=1e-3)  # calibration changes the numbers: the test can tell

    config = reproduce_config(backbone="demo-shapes", weights="none", layers=layers, poolings=poolings, resize="pad",
                              precision="float32", input_size=(64, 64), images=names, calibration_images=chosen)
    assert config["calibrate_batchnorm"] == {"images": chosen}
    assert "the Ray engine does not calibrate" in reproduce_script(config)
    feats, got_names, _ = _run_script(tmp_path, monkeypatch, config, folder)
    assert got_names == names
    np.testing.assert_allclose(feats["block3_pool/avg"], want, rtol=1e-5, atol=1e-6)


def test_a_calibrated_script_refuses_a_folder_without_its_calibration_images(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "unzipped"
    export_demo_set("shapes", folder, per_class=1, seed=4)
    config = reproduce_config(backbone="demo-shapes", weights="none", layers=["block2_pool"], poolings=["avg"],
                              resize="pad", precision="float32", input_size=(64, 64),
                              calibration_images=["circle/missing_1.png", "square/missing_2.png"])
    script = tmp_path / "extract_features.py"
    script.write_text(reproduce_script(config))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(script), str(folder)])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(script), run_name="__main__")
    assert exit_.value.code == 2
    assert "2 of the 2 images the batch-norm statistics were calibrated on are not among" in capsys.readouterr().err
    assert not (tmp_path / "features.npz").exists()  # never features of the uncalibrated network


def test_reproduce_config_checks_the_calibration_images():
    with pytest.raises(ExportError, match="calibration_images"):
        reproduce_config(backbone="demo-shapes", weights="none", layers=["b"], poolings=["avg"], resize="pad",
                         precision="float32", input_size=(64, 64), calibration_images=["only-one.png"])
