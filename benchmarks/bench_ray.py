"""``--engine ray`` against ``--engine local``, side by side in one run (compare ratios: the machine is shared).

Writes its own photo-like JPEGs (two class folders), then with MobileNetV2 at 224×224 (random
weights) and its last block pooled with avg, prints:

* images/s end to end from the files for the local engine (one process, decode threads);
* Ray's start-up time (embedded, loopback, no dashboard);
* images/s for Ray with 1 and with 2 workers, each run into a fresh folder, actor start-up and
  model build included (what a user waits for), the fixed cost of a one-batch run, and the rate
  after it (what a long job settles at, and what multiplies by the number of workers);
* a second run over the same images into the same folder, which has nothing to do (resume check);
* ratios to the local engine.

On a 2-core machine, 2 workers at 1 CPU each would hold every CPU and starve reading and decoding,
so the 2-worker run gives each actor half a CPU (one TensorFlow thread each).

Usage:
    python benchmarks/bench_ray.py             # 1,000 images
    python benchmarks/bench_ray.py --quick     # 200 images
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_extraction import rate, write_jpegs  # noqa: E402

BACKBONE, LAYERS, POOLINGS, BATCH = "mobilenetv2", ["out_relu"], ["avg"], 32


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200 images instead of 1,000")
    parser.add_argument("--images", type=int, help="number of images (overrides --quick)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    count = args.images or (200 if args.quick else 1000)

    import ray

    from extractor import FeatureExtractor, gather_paths, load_backbone
    from extractor.distributed import ExtractionPlan, RayOptions, extract_to_folder, start_ray
    from extractor.sources import list_image_files

    figures: dict[str, float] = {"images": count, "cpus": os.cpu_count() or 1}
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        folder = Path(tmp) / "images"
        for label, part in (("a", count // 2), ("b", count - count // 2)):
            (folder / label).mkdir(parents=True)
            write_jpegs(folder / label, part, seed=len(label) + part)
        print(f"{count} JPEGs in {folder}; {BACKBONE} at 224, random weights, {LAYERS[0]}/avg; "
              f"{figures['cpus']} CPUs", flush=True)

        backbone = load_backbone(BACKBONE, weights="none")
        fx = FeatureExtractor(backbone, LAYERS, POOLINGS).warm()
        start = time.perf_counter()
        local = fx.extract(gather_paths([str(folder)]).sources, batch_size=BATCH)
        figures["local_images_per_s"] = rate(len(local.names), time.perf_counter() - start)
        print(f"local engine            {figures['local_images_per_s']:7.1f} images/s", flush=True)

        plan = ExtractionPlan.from_backbone(backbone, LAYERS, POOLINGS, source=BACKBONE, batch_size=BATCH)
        files, _ = list_image_files([str(folder)])
        figures["ray_start_s"] = start_ray(RayOptions())
        print(f"Ray start-up            {figures['ray_start_s']:7.1f} s", flush=True)
        runs = (("ray_1_worker", RayOptions(workers=1)), ("ray_2_workers", RayOptions(workers=2, cpus_per_worker=0.5)))
        for name, options in runs:
            # A run over one batch measures the fixed cost (dataset planning, actor start-up, model
            # build); the full run minus it gives the rate a long job settles at (× workers on a cluster).
            small = extract_to_folder(plan, files[:BATCH], Path(tmp) / f"{name}_fixed", options)
            run = extract_to_folder(plan, files, Path(tmp) / name, options)
            figures[f"{name}_images_per_s"] = rate(run.rows_written, run.seconds)
            figures[f"{name}_fixed_s"] = small.seconds
            figures[f"{name}_steady_images_per_s"] = rate(run.rows_written - BATCH, run.seconds - small.seconds)
            print(f"{name:<24}{figures[f'{name}_images_per_s']:7.1f} images/s "
                  f"({run.rows_written} rows in {run.seconds:.1f} s, start-up included); "
                  f"fixed cost {small.seconds:.1f} s; after it {figures[f'{name}_steady_images_per_s']:.1f} images/s",
                  flush=True)
        again = extract_to_folder(plan, files, Path(tmp) / "ray_1_worker", RayOptions(workers=1))
        assert again.rows_written == 0 and again.rows_total == count, (again.rows_written, again.rows_total)
        figures["second_run_s"] = again.seconds
        figures["second_run_images_per_s"] = rate(again.rows_total, again.seconds)
        print(f"second run (no work)    {figures['second_run_images_per_s']:7.0f} images/s "
              f"({again.rows_total} already written, checked in {again.seconds:.2f} s)", flush=True)
        ray.shutdown()

    local_rate = figures["local_images_per_s"]
    print(f"ratios to local: ray 1 worker {figures['ray_1_worker_images_per_s'] / local_rate:.2f}× "
          f"(after start-up {figures['ray_1_worker_steady_images_per_s'] / local_rate:.2f}×), "
          f"ray 2 workers {figures['ray_2_workers_images_per_s'] / local_rate:.2f}× "
          f"(after start-up {figures['ray_2_workers_steady_images_per_s'] / local_rate:.2f}×)")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
