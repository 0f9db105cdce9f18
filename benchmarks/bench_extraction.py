"""Extraction speed and memory, side by side in one run (this machine is noisy: compare ratios).

Writes its own JPEG images, then for each backbone (224×224, random weights) prints:

* images/s of the seed article's method: one model per layer, a ``predict`` call per image,
  pooling afterwards in NumPy;
* images/s of a bare batched compiled forward pass on ready tensors (the ceiling);
* images/s of ``extractor`` end to end from the JPEG files (decode + resize + preprocess +
  forward + pool);
* ratios: end-to-end ÷ ceiling, end-to-end ÷ seed, all feature-map layers ÷ one layer,
  bfloat16 ÷ float32;
* peak resident memory for 200 and for 1,000 images (each in a fresh process).

Usage:
    python benchmarks/bench_extraction.py                 # mobilenetv2 and resnet50
    python benchmarks/bench_extraction.py --quick         # fewer images, for a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

SIZE = (224, 224)
SEED_LAYERS = 3  # the seed method extracts the same three layers, one model each


def write_jpegs(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """Photo-like JPEGs (smooth gradients + noise) at a few realistic sizes."""
    rng = np.random.default_rng(seed)
    sizes = [(480, 640), (375, 500), (512, 512), (333, 500)]
    paths = []
    for i in range(count):
        h, w = sizes[i % len(sizes)]
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        base = np.stack([np.sin(xx / rng.uniform(20, 80) + c) * 80 + np.cos(yy / rng.uniform(20, 80)) * 60 + 110
                         for c in range(3)], axis=-1)
        image = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        path = folder / f"img_{i:04d}.jpg"
        Image.fromarray(image).save(path, quality=90)
        paths.append(path)
    return paths


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def seed_method(backbone, layers, paths, module) -> float:
    """The article's way: a model per layer, a predict per image, NumPy pooling afterwards."""
    import keras

    start = time.perf_counter()
    for layer in layers:
        model = keras.Model(backbone.model.input, backbone.model.get_layer(layer).output)
        for path in paths:
            image = keras.utils.load_img(path, target_size=SIZE)
            x = np.expand_dims(keras.utils.img_to_array(image), 0)
            x = module.preprocess_input(x)
            fmap = model.predict(x, verbose=0)
            np.mean(fmap, axis=(1, 2))
    return rate(len(paths), time.perf_counter() - start)


def ceiling(backbone, layers, batch: np.ndarray, batch_size: int) -> float:
    """A bare compiled forward pass on a ready float32 tensor: what the network alone costs."""
    import keras
    import tensorflow as tf

    model = keras.Model(backbone.model.input, [backbone.model.get_layer(lyr).output for lyr in layers])
    fn = tf.function(lambda x: model(x, training=False), input_signature=[tf.TensorSpec([None, *SIZE, 3], tf.float32)])
    x = tf.constant(backbone.spec.preprocess(batch[:batch_size]))
    fn(x)
    n_batches = max(1, len(batch) // batch_size)
    seconds = best_of(lambda: [fn(x) for _ in range(n_batches)], repeats=2)
    return rate(n_batches * batch_size, seconds)


def end_to_end(fx, paths, batch_size: int) -> float:
    from extractor import gather_paths

    sources = gather_paths([str(p) for p in paths]).sources
    fx.extract(sources[:batch_size], batch_size=batch_size)  # warm
    seconds = best_of(lambda: fx.extract(sources, batch_size=batch_size), repeats=2)
    return rate(len(paths), seconds)


def memory_child(backbone_name: str, folder: str, count: int, batch_size: int) -> None:
    """Run in a fresh process: extract ``count`` images (the JPEGs repeated) and print peak RSS."""
    from extractor import FeatureExtractor, feature_layers, gather_paths, load_backbone

    backbone = load_backbone(backbone_name, weights="none", input_size=SIZE)
    table = feature_layers(backbone.model)
    fx = FeatureExtractor(backbone, [table[len(table) // 2].name, table[-1].name], ["avg", "max"])
    sources = gather_paths([folder]).sources
    items = [sources[i % len(sources)] for i in range(count)]
    fx.warm()
    result = fx.extract(items, batch_size=batch_size)
    assert len(result.names) == count
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"count": count, "peak_mib": peak_mib}))


def peak_memory(backbone_name: str, folder: Path, count: int, batch_size: int) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", backbone_name, str(folder), str(count), str(batch_size)],
        capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]


def bench_backbone(name: str, module, paths, folder: Path, batch_size: int, seed_images: int, memory_counts) -> dict:
    from extractor import FeatureExtractor, feature_layers, load_backbone

    backbone = load_backbone(name, weights="none", input_size=SIZE)
    table = feature_layers(backbone.model)
    layers = [table[len(table) // 4].name, table[len(table) // 2].name, table[-1].name][:SEED_LAYERS]
    batch = np.stack([np.asarray(Image.open(p).convert("RGB").resize(SIZE[::-1])) for p in paths])

    row = {"backbone": name, "images": len(paths), "batch_size": batch_size, "layers": layers}
    row["seed_ips"] = seed_method(backbone, layers, paths[:seed_images], module)
    row["ceiling_ips"] = ceiling(backbone, layers, batch, batch_size)
    fx = FeatureExtractor(backbone, layers, ["avg", "max", "gem"])
    row["e2e_ips"] = end_to_end(fx, paths, batch_size)

    one = FeatureExtractor(backbone, [table[-1].name], ["avg"])
    every = FeatureExtractor(backbone, [lyr.name for lyr in table], ["avg"])
    one.run_batch(batch[:batch_size]), every.run_batch(batch[:batch_size])
    t_one = best_of(lambda: one.run_batch(batch[:batch_size]))
    t_all = best_of(lambda: every.run_batch(batch[:batch_size]))
    row["all_layers"] = len(table)
    row["all_over_one"] = t_all / t_one

    f32 = FeatureExtractor(backbone, layers, ["avg"])
    bf16 = FeatureExtractor(backbone, layers, ["avg"], precision="bfloat16")
    f32.run_batch(batch[:batch_size]), bf16.run_batch(batch[:batch_size])
    t32 = best_of(lambda: f32.run_batch(batch[:batch_size]))
    t16 = best_of(lambda: bf16.run_batch(batch[:batch_size]))
    row["bf16_speedup"] = t32 / t16
    # Drift on the middle layer: with random weights the deepest MobileNetV2 maps are ~1e-12,
    # where a cosine says nothing about precision.
    a = f32.run_batch(batch)[f"{layers[1]}/avg"].astype(np.float64)
    b = bf16.run_batch(batch)[f"{layers[1]}/avg"].astype(np.float64)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    row["bf16_cosine_min"] = float(cos.min())
    row["bf16_cosine_mean"] = float(cos.mean())
    row["peak_mib"] = {n: peak_memory(name, folder, n, batch_size) for n in memory_counts}
    return row


def cpu_bf16_support() -> str:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    found = [f for f in ("amx_bf16", "avx512_bf16") if f in flags]
    return ", ".join(found) or "none"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer images (smoke run)")
    parser.add_argument("--backbones", default="mobilenetv2,resnet50")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--memory-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        name, folder, count, batch_size = args.memory_child
        memory_child(name, folder, int(count), int(batch_size))
        return

    import keras

    modules = {"mobilenetv2": keras.applications.mobilenet_v2, "resnet50": keras.applications.resnet50,
               "vgg16": keras.applications.vgg16, "efficientnetb0": keras.applications.efficientnet}
    n_images = 64 if args.quick else 128
    seed_images = 8 if args.quick else 16
    memory_counts = (200, 1000) if not args.quick else (50, 150)
    print(f"# CPU cores: {os.cpu_count()}; bfloat16 instructions: {cpu_bf16_support()}; "
          f"{n_images} JPEGs; batch {args.batch_size}; 224×224; random weights")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = write_jpegs(folder, n_images)
        for name in args.backbones.split(","):
            row = bench_backbone(name, modules[name], paths, folder, args.batch_size, seed_images, memory_counts)
            print(f"\n## {name}  (layers {', '.join(row['layers'])})")
            print(f"seed method (predict per image, model per layer): {row['seed_ips']:8.1f} images/s")
            print(f"ceiling (bare batched compiled forward)         : {row['ceiling_ips']:8.1f} images/s")
            print(f"extractor end to end from JPEG files            : {row['e2e_ips']:8.1f} images/s")
            print(f"end-to-end ÷ ceiling                            : {row['e2e_ips'] / row['ceiling_ips']:8.2f}   (target ≥ 0.9)")
            print(f"end-to-end ÷ seed method                        : {row['e2e_ips'] / row['seed_ips']:8.1f}×  (target ≥ 10)")
            print(f"all {row['all_layers']} feature-map layers ÷ one layer        : {row['all_over_one']:8.2f}   (target ≤ 2)")
            print(f"bfloat16 speed-up over float32                  : {row['bf16_speedup']:8.2f}×  (target ≥ 1.8 where supported)")
            print(f"bfloat16 vs float32 cosine similarity           : min {row['bf16_cosine_min']:.6f}, mean {row['bf16_cosine_mean']:.6f}")
            mem = ", ".join(f"{n} images: {mib:.0f} MiB" for n, mib in row["peak_mib"].items())
            print(f"peak resident memory                            : {mem}")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
