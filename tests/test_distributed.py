"""``--engine ray``: the same table as the local engine, resumable after a kill, readable without Ray.

One embedded Ray session (2 CPUs, small object store, loopback only, no dashboard, no usage
statistics) serves the whole module; the killed driver joins it by address, as a job on a
real cluster would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # before Ray is imported: loopback only (see distributed._ray)
pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # Ray's start-up and actor start-up: ~110 s for the module on 2 loaded cores

from extractor import FeatureExtractor, gather_paths, load_backbone  # noqa: E402
from extractor.demo import export_demo_set  # noqa: E402
from extractor.distributed import (  # noqa: E402
    MANIFEST_NAME,
    ExtractionPlan,
    FeatureFolderError,
    RayOptions,
    extract_to_folder,
    read_feature_folder,
)
from extractor.sources import list_image_files  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ["block2_pool", "block4_pool"]
POOLINGS = ["avg", "gem"]
BAD = {"circle/bad.png": b"this is text, not a picture", "square/empty.jpg": b"",
       "star/truncated.png": None}


@pytest.fixture(scope="module")
def ray_session():
    import ray

    context = ray.init(num_cpus=2, object_store_memory=256 * 2**20, include_dashboard=False,
                       _node_ip_address="127.0.0.1", log_to_driver=False, configure_logging=False)
    try:
        assert not context.dashboard_url
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def test_ray_runs_on_loopback_without_dashboard_or_usage_stats(ray_session):
    import ray

    assert ray_session.startswith("127.0.0.1:")
    assert {node["NodeManagerAddress"] for node in ray.nodes()} == {"127.0.0.1"}
    assert os.environ["RAY_USAGE_STATS_ENABLED"] == "0"


def _folder(root: Path, per_class: int) -> Path:
    paths = export_demo_set("shapes", root, per_class=per_class, seed=1)
    good = paths[0].read_bytes()
    for rel, data in BAD.items():
        (root / rel).write_bytes(good[: len(good) // 2] if data is None else data)
    return root


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return _folder(tmp_path_factory.mktemp("shapes") / "shapes", per_class=3)


@pytest.fixture(scope="module")
def plan() -> ExtractionPlan:
    return ExtractionPlan.from_backbone(load_backbone("demo-shapes"), LAYERS, POOLINGS, batch_size=4)


def _bad_names(folder: Path) -> set[str]:
    return {os.path.join(folder, rel) for rel in BAD}


def test_ray_gives_the_local_table_and_the_same_failures(ray_session, shapes, plan, tmp_path):
    files, problems = list_image_files([str(shapes)])
    assert problems == []
    run = extract_to_folder(plan, files, tmp_path / "out", RayOptions(rows_per_shard=8))
    got, manifest = read_feature_folder(tmp_path / "out")

    batch = gather_paths([str(shapes)])
    local = FeatureExtractor(load_backbone("demo-shapes"), LAYERS, POOLINGS).extract(batch.sources, batch_size=4)
    order = np.argsort(local.names, kind="stable")
    assert got.names == [local.names[i] for i in order] == sorted(local.names)
    assert got.labels == [local.labels[i] for i in order]
    assert set(got.labels) == {"checkerboard", "circle", "cross", "square", "star", "stripes", "triangle"}
    assert set(got.features) == set(local.features) == {f"{layer}/{p}" for layer in LAYERS for p in POOLINGS}
    for key, values in local.features.items():
        assert got.features[key].dtype == np.float32
        np.testing.assert_allclose(got.features[key], values[order], atol=1e-5, rtol=1e-5)

    # Every bad file is named, with the reason the local engine gives, and nothing else failed.
    local_failures = sorted((f.name, f.reason) for f in local.failures)
    assert sorted((f.name, f.reason) for f in got.failures) == local_failures
    assert sorted((f.name, f.reason) for f in run.failures) == local_failures
    assert {name for name, _ in local_failures} == _bad_names(shapes)
    assert manifest["counts"] == {"rows": 24, "images": 21, "failures": 3, "shards": manifest["counts"]["shards"]}
    # The manifest carries failures as data: the name, and the reason without the name in front.
    assert sorted((f["name"], f["reason"]) for f in manifest["failures"]) == sorted(
        (f.name, f.reason) for f in local.failures)
    assert manifest["settings"]["backbone"] == "demo-shapes" and manifest["settings"]["layers"] == LAYERS
    assert manifest["complete"] is True

    # The same command again has nothing to do and changes nothing.
    before = sorted(p.name for p in (tmp_path / "out").iterdir())
    again = extract_to_folder(plan, files, tmp_path / "out", RayOptions(rows_per_shard=8))
    assert (again.rows_written, again.already_done, again.rows_total) == (0, 24, 24)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == before


def test_folder_opens_in_plain_pandas_and_pyarrow_without_ray(ray_session, shapes, plan, tmp_path):
    files, _ = list_image_files([str(shapes)])
    out = tmp_path / "out"
    extract_to_folder(plan, files, out, RayOptions(rows_per_shard=8))
    code = f"""
import json, sys
sys.modules["ray"] = None  # importing Ray now fails: nothing below may need it
import pandas as pd, pyarrow.dataset as ds, pyarrow as pa
out = {str(out)!r}
frame = pd.read_parquet(out)
manifest = json.load(open(out + "/{MANIFEST_NAME}"))
assert len(frame) == manifest["counts"]["rows"] == 24, len(frame)
good = frame[frame["error"].isna()]
assert len(good) == 21 and good["block4_pool/gem"].map(len).eq(128).all()
schema = ds.dataset(out, format="parquet").schema
assert pa.types.is_fixed_size_list(schema.field("block4_pool/avg").type), schema
assert sorted(frame.loc[frame["error"].notna(), "path"]) == sorted(f["name"] for f in manifest["failures"])
from extractor.distributed import read_feature_folder
result, _ = read_feature_folder(out)
assert result.features["block2_pool/avg"].shape == (21, 32)
assert "ray" not in sys.modules or sys.modules["ray"] is None
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("ok")


def test_killed_driver_then_rerun_gives_one_row_per_image(ray_session, plan, tmp_path):
    folder = _folder(tmp_path / "shapes", per_class=8)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "extractor", "extract", "demo-shapes", str(folder),
               "--layers", ",".join(LAYERS), "--pooling", ",".join(POOLINGS), "--batch-size", "1",
               "--engine", "ray", "--address", ray_session, "--rows-per-shard", "1", "--out", str(out)]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    driver = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and driver.poll() is None:
            staged = list((out / "_staging").glob("*.parquet")) if (out / "_staging").is_dir() else []
            if any(_complete(p) for p in staged):
                break
            time.sleep(0.05)
        assert driver.poll() is None, "the driver finished before it could be killed midway"
        driver.send_signal(signal.SIGKILL)
    finally:
        if driver.poll() is None:
            driver.kill()
        driver.wait(30)
    staged = list((out / "_staging").glob("*.parquet"))
    assert 1 <= len(staged) < 59, f"{len(staged)} shards before the kill"

    files, _ = list_image_files([str(folder)])
    run = extract_to_folder(plan, files, out, RayOptions(rows_per_shard=8))
    assert run.already_done >= 1 and run.rows_total == 59
    frame = pq.read_table(out).to_pandas()
    assert frame["path"].value_counts().max() == 1
    assert sorted(frame["path"]) == sorted(f.name for f in files)
    result, manifest = read_feature_folder(out)
    assert len(result.names) == 56 and len(result.failures) == 3
    assert {f.name for f in result.failures} == _bad_names(folder)
    assert manifest["counts"]["rows"] == 59 and not (out / "_staging").exists()


def _complete(path: Path) -> bool:
    try:
        return pq.read_metadata(path).num_rows > 0
    except Exception:
        return False


def test_folder_refuses_file_names_and_other_settings(shapes, plan, tmp_path):
    files, _ = list_image_files([str(shapes)])
    with pytest.raises(FeatureFolderError, match="folder"):
        extract_to_folder(plan, files, tmp_path / "feats.parquet")
    out = tmp_path / "out"
    out.mkdir()
    (out / MANIFEST_NAME).write_text(json.dumps({"settings": {**plan.identity(), "poolings": ["max"]}}))
    with pytest.raises(FeatureFolderError, match="poolings"):
        extract_to_folder(plan, files, out)


def test_sweep_on_ray_scores_locally(ray_session, shapes, tmp_path, capsys):
    from extractor.__main__ import main

    code = main(["sweep", "demo-shapes", str(shapes), "--poolings", "avg", "--layers", ",".join(LAYERS),
                 "--engine", "ray", "--features-out", str(tmp_path / "feats"), "--out", str(tmp_path / "r.csv")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Recommendation:" in captured.out
    for name in _bad_names(shapes):
        assert f"skipped {name}:" in captured.err
    table = (tmp_path / "r.csv").read_text().splitlines()
    assert len(table) == 1 + len(LAYERS)


def test_without_ray_the_engine_says_how_to_install_it(shapes, tmp_path):
    code = f"""
import sys
sys.modules["ray"] = None
from extractor.__main__ import main
sys.exit(main(["extract", "demo-shapes", {str(shapes)!r}, "--layers", "block4_pool", "--engine", "ray",
               "--out", {str(tmp_path / "out")!r}]))
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert "pip install -r requirements-ray.txt" in lines[-1] and "layer-explorer[ray]" in lines[-1]


def test_reproduce_script_shows_the_same_extraction_on_ray():
    import shlex

    from extractor.__main__ import _parser
    from extractor.export import reproduce_config, reproduce_script

    def config(layers):
        return reproduce_config(backbone="demo-shapes", weights="none", layers=layers, poolings=["avg", "gem"],
                                resize="pad", precision="float32", input_size=(64, 64), batch_size=16)

    def statements(text):  # the script's own top-level imports (it imports os itself)
        return [line for line in text.splitlines() if line.startswith(("import ", "from "))]

    script = reproduce_script(config(["block2_pool", "odd\nimport os"]))
    compile(script, "extract_features.py", "exec")
    lines = [line for line in script.splitlines() if "--engine ray" in line]
    assert len(lines) == 1 and lines[0].startswith("# python -m extractor extract ")
    # the newline stayed in the comment: no statement more than with a harmless layer name
    assert statements(script) == statements(reproduce_script(config(["block2_pool", "odd"])))
    args = _parser().parse_args(shlex.split(lines[0][2:])[3:])
    assert (args.backbone, args.layers, args.pooling, args.weights) == ("demo-shapes", "block2_pool,odd import os",
                                                                        "avg,gem", "none")
    assert (args.input_size, args.resize, args.batch_size, args.engine, args.out) == (64, "pad", 16, "ray", "features/")
