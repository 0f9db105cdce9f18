"""The exported script really reproduces the extraction (run against the real core, not a stand-in)."""

from __future__ import annotations

import runpy
import sys

import numpy as np

from extractor import FeatureExtractor, gather_paths, load_backbone
from extractor.demo import export_demo_set
from extractor.export import reproduce_config, reproduce_script


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
    assert list(got["paths"]) == want.names
    for key, values in want.features.items():
        np.testing.assert_allclose(got[key], values, rtol=1e-6, atol=1e-6)
