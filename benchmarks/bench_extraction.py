"""Extraction speed and memory, side by side in one run (this machine is noisy: compare ratios).

Writes its own JPEG images (256 by default), then for each backbone (224×224, random weights;
demo-shapes at its own size) prints, on the same files and the same three layers:

* images/s of the seed article's method: one model per layer, a ``predict`` call per image;
* images/s of the peer — what a Keras user writes today: ``image_dataset_from_directory`` →
  ``map(preprocess_input)`` → ``prefetch`` → ``keras.Model(base.input, outputs).predict(ds)`` →
  NumPy pooling;
* the ceilings: each engine alone (TensorFlow, OpenVINO × float32, bfloat16) on ready batches;
* ``extractor`` end to end from the JPEG files with each runtime and precision;
* on MobileNetV2: where the time per image goes (read, decode, resize, copy, forward+pool) and
  peak resident memory for 200 and 1,000 images with each runtime (each in a fresh process);
* first, the resize of two large photo-like images: extractor's (a whole-factor reduce first) against
  Pillow's full resample.

The timed methods run in interleaved rounds (``--rounds``, default 5): each round times every
method once, back to back, so a swing in the machine's load hits all of them alike. Rates are
medians over the rounds, and each ratio is the median of the per-round ratios, printed with its
range: on a shared 2-core machine one pass can be 10 % off the next.

Usage:
    python benchmarks/bench_extraction.py            # mobilenetv2, resnet50, efficientnetb0, demo-shapes
    python benchmarks/bench_extraction.py --quick    # mobilenetv2 and resnet50 only
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
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


def photo_like(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """An (h, w, 3) uint8 picture with a photo's statistics: smooth gradients and sensor-like noise."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([np.sin(xx / rng.uniform(20, 80) + c) * 80 + np.cos(yy / rng.uniform(20, 80)) * 60 + 110
                     for c in range(3)], axis=-1)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def write_jpegs(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """Photo-like JPEGs at a few realistic sizes."""
    rng = np.random.default_rng(seed)
    sizes = [(480, 640), (375, 500), (512, 512), (333, 500)]
    paths = []
    for i in range(count):
        image = photo_like(*sizes[i % len(sizes)], rng)
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


def seed_method(backbone, layers, paths, module, size=SIZE) -> float:
    """The article's way: a model per layer, a predict per image, NumPy pooling afterwards."""
    import keras

    start = time.perf_counter()
    for layer in layers:
        model = keras.Model(backbone.model.input, backbone.model.get_layer(layer).output)
        for path in paths:
            image = keras.utils.load_img(path, target_size=tuple(size))
            x = np.expand_dims(keras.utils.img_to_array(image), 0)
            x = module.preprocess_input(x)
            fmap = model.predict(x, verbose=0)
            np.mean(fmap, axis=(1, 2))
    return rate(len(paths), time.perf_counter() - start)


def end_to_end(fx, sources, batch_size: int) -> float:
    """``extractor`` from the JPEG files (read, decode, resize, forward, pool): one timed pass."""
    start = time.perf_counter()
    fx.extract(sources, batch_size=batch_size)
    return rate(len(sources), time.perf_counter() - start)


def peer_method(backbone, layers, folder: Path, module, poolings, batch_size: int):
    """What a Keras user writes today: a tf.data pipeline from the folder, one predict, NumPy pooling.

    Warms it up and returns a function that times one pass (images/s)."""
    import keras
    import tensorflow as tf

    h, w = backbone.input_size or backbone.spec.input_size
    model = keras.Model(backbone.model.input, [backbone.model.get_layer(name).output for name in layers])

    def run():
        ds = keras.utils.image_dataset_from_directory(str(folder), labels=None, image_size=(h, w),
                                                      batch_size=batch_size, shuffle=False, verbose=False)
        ds = ds.map(lambda x: module.preprocess_input(x) if module else x).prefetch(tf.data.AUTOTUNE)
        maps = model.predict(ds, verbose=0)
        maps = maps if isinstance(maps, list) else [maps]
        for fmap in maps:
            for pooling in poolings:
                pool_numpy(fmap, pooling)

    run()  # warm (graph building, file listing)
    n = len(list(folder.glob("*.jpg")))
    return lambda: rate(n, best_of(run, repeats=1))


def pool_numpy(x, pooling):
    from extractor.pooling import pool_numpy as pn

    return pn(x, pooling)


def ready_forward(fx, batch: np.ndarray, batch_size: int) -> float:
    """Ceiling: the engine alone on ready, resized uint8 batches (preprocess and pooling are in the graph);
    one timed pass over as many images as ``batch`` holds."""
    chunk = batch[:batch_size]
    n_batches = max(1, len(batch) // batch_size)
    start = time.perf_counter()
    for _ in range(n_batches):
        fx.run_batch(chunk)
    return rate(n_batches * batch_size, time.perf_counter() - start)


def memory_child(backbone_name: str, folder: str, count: int, batch_size: int, runtime: str) -> None:
    """Run in a fresh process: extract ``count`` images (the JPEGs repeated) and print peak RSS."""
    from extractor import FeatureExtractor, feature_layers, gather_paths, load_backbone

    backbone = load_backbone(backbone_name, weights="none", input_size=SIZE)
    table = feature_layers(backbone.model)
    fx = FeatureExtractor(backbone, [table[len(table) // 2].name, table[-1].name], ["avg", "max"], runtime=runtime)
    sources = gather_paths([folder]).sources
    items = [sources[i % len(sources)] for i in range(count)]
    fx.warm()
    result = fx.extract(items, batch_size=batch_size)
    assert len(result.names) == count
    print(json.dumps({"count": count, "peak_mib": peak_rss_mib(), "runtime": result.runtime}))


def peak_rss_mib() -> float:
    """This process's own peak resident memory.

    Not ``getrusage().ru_maxrss``: Linux keeps it across ``execve``, so a child started by a big parent
    (this benchmark, at 2+ GiB after its TensorFlow runs) reports the parent's peak — every child read
    the same 2,238 MiB here, and that inherited figure is what "extraction peaks at 3.3 GiB" measured.
    ``VmHWM`` belongs to the new address space and starts again at exec.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_memory(backbone_name: str, folder: Path, count: int, batch_size: int, runtime: str) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", backbone_name, str(folder), str(count), str(batch_size), runtime],
        capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]


def profile_split(fx, paths, batch_size: int) -> dict[str, float]:
    """Milliseconds per image in each stage, run one after the other on one thread (no overlap)."""
    from extractor import images as img

    size = fx.input_size
    t = dict.fromkeys(("read", "decode", "resize", "copy", "forward"), 0.0)
    pixels = []
    for path in paths:
        t0 = time.perf_counter()
        data = Path(path).read_bytes()
        t1 = time.perf_counter()
        decoded = img.decode_image(data, path.name, draft_size=size)
        t2 = time.perf_counter()
        pixels.append(img.resize_image(decoded.pixels, size, "stretch"))
        t3 = time.perf_counter()
        t["read"] += t1 - t0
        t["decode"] += t2 - t1
        t["resize"] += t3 - t2
    for start in range(0, len(pixels), batch_size):
        t0 = time.perf_counter()
        batch = np.stack(pixels[start:start + batch_size])
        t1 = time.perf_counter()
        fx.run_batch(batch)
        t["copy"] += t1 - t0
        t["forward"] += time.perf_counter() - t1
    return {k: 1000 * v / len(paths) for k, v in t.items()}


def resize_split(repeats: int = 5) -> list[str]:
    """Large images shrunk to 224×224: extractor's resize (a whole-factor reduce first, ``reducing_gap=3``)
    against Pillow's full bilinear resample, side by side on the same photo-like image, with the difference.

    The benchmark's own JPEGs never take this path (draft decoding leaves them under 2× the target);
    a large PNG, or any non-JPEG upload, does."""
    from extractor import images as img

    lines, rng = [], np.random.default_rng(1)
    for h, w in ((1500, 2000), (3024, 4032)):
        im = Image.fromarray(photo_like(h, w, rng))
        # The step load_image runs on the decoded Pillow image (resize_image adds an array round trip).
        fair = best_of(lambda im=im: im.resize(SIZE[::-1], Image.Resampling.BILINEAR), repeats)
        ours = best_of(lambda im=im: img._resize_pil(im, SIZE, "stretch"), repeats)
        diff = np.abs(np.asarray(img._resize_pil(im, SIZE, "stretch")).astype(int)
                      - np.asarray(im.resize(SIZE[::-1], Image.Resampling.BILINEAR)).astype(int))
        lines.append(f"resize {w}×{h} → 224×224: full resample {1000 * fair:.1f} ms, extractor {1000 * ours:.1f} ms "
                     f"({fair / ours:.1f}×; differs by at most {diff.max()}, mean {diff.mean():.2f} grey levels)")
    return lines


def bench_backbone(name: str, module, paths, folder: Path, batch_size: int, seed_images: int, memory_counts,
                   profile: bool, rounds: int) -> dict:
    """Every method on the same files and layers, in ``rounds`` interleaved rounds.

    A round times each method once, one right after the other, so a change of load on the machine
    hits every method of that round alike. Rates are the median over rounds; each ratio is the
    median of its per-round ratios (both sides measured minutes apart at most), with its range.
    """
    from extractor import FeatureExtractor, feature_layers, gather_paths, load_backbone

    backbone = load_backbone(name, weights="none" if name != "demo-shapes" else "pretrained",
                             input_size=None if name == "demo-shapes" else SIZE)
    size = backbone.input_size or backbone.spec.input_size
    table = feature_layers(backbone.model)
    layers = [table[len(table) // 4].name, table[len(table) // 2].name, table[-1].name][:SEED_LAYERS]
    poolings = ["avg", "max", "gem"]
    batch = np.stack([np.asarray(Image.open(p).convert("RGB").resize(size[::-1])) for p in paths[:4 * batch_size]])
    sources = gather_paths([str(p) for p in paths]).sources

    row = {"backbone": name, "images": len(paths), "batch_size": batch_size, "layers": layers, "size": size,
           "rounds": rounds}
    if module is not None:
        row["seed_ips"] = seed_method(backbone, layers, paths[:seed_images], module, size)
    peer = peer_method(backbone, layers, folder, module, poolings, batch_size)
    extractors = {}
    for runtime in ("tensorflow", "openvino"):
        for precision in ("float32", "bfloat16"):
            start = time.perf_counter()
            fx = FeatureExtractor(backbone, layers, poolings, runtime=runtime, precision=precision)
            tag = f"{runtime[:2]}_{precision[:4]}"
            row[f"build_s_{tag}"] = time.perf_counter() - start
            fx.run_batch(batch[:batch_size])  # warm: the first call compiles
            fx.extract(sources[:batch_size], batch_size=batch_size)
            extractors[tag] = fx
            if profile and precision == "float32":
                row[f"profile_{tag}"] = profile_split(fx, paths[:4 * batch_size], batch_size)
    measured: dict[str, list[float]] = {}
    for _ in range(rounds):
        measured.setdefault("peer_ips", []).append(peer())
        for tag, fx in extractors.items():
            measured.setdefault(f"ceiling_{tag}", []).append(ready_forward(fx, batch, batch_size))
            measured.setdefault(f"e2e_{tag}", []).append(end_to_end(fx, sources, batch_size))
    row["per_round"] = measured
    for key, values in measured.items():
        row[key] = statistics.median(values)
    del extractors
    gc.collect()
    if memory_counts:
        row["peak_mib"] = {(rt, n): peak_memory(name, folder, n, batch_size, rt)
                           for rt in ("tensorflow", "openvino") for n in memory_counts}
    return row


def ratio(row: dict, top: str, bottom: str) -> tuple[float, float, float]:
    """Median, lowest and highest over the rounds of ``top`` ÷ ``bottom`` (each round's own pair)."""
    pairs = [a / b for a, b in zip(row["per_round"][top], row["per_round"][bottom], strict=True)]
    return statistics.median(pairs), min(pairs), max(pairs)


def report(row: dict) -> None:
    g = row.get
    print(f"\n## {row['backbone']} at {row['size'][0]}×{row['size'][1]}  (layers {', '.join(row['layers'])}; "
          f"avg, max, gem; medians of {row['rounds']} interleaved rounds)")
    if "seed_ips" in row:
        print(f"seed method (predict per image, model per layer)   : {row['seed_ips']:8.1f} images/s")
    print(f"peer (image_dataset_from_directory → predict)      : {row['peer_ips']:8.1f} images/s")
    for tag, label in (("te_floa", "TensorFlow float32"), ("te_bflo", "TensorFlow bfloat16"),
                       ("op_floa", "OpenVINO float32"), ("op_bflo", "OpenVINO bfloat16")):
        print(f"{label:<20} ceiling {g('ceiling_' + tag):7.1f}  end to end {g('e2e_' + tag):7.1f} images/s"
              f"   (e2e ÷ ceiling {g('e2e_' + tag) / g('ceiling_' + tag):.2f}; build {g('build_s_' + tag):.1f} s)")
    def line(label: str, top: str, bottom: str, target: str = "") -> None:
        mid, low, high = ratio(row, top, bottom)
        spread = f"(rounds {low:.2f}–{high:.2f})" if row["rounds"] > 1 else ""
        print(f"{label:<51}: {mid:8.2f}×  {spread}{'  ' + target if target else ''}")

    line("OV f32 end to end ÷ peer", "e2e_op_floa", "peer_ips", "(target ≥ 2 MobileNetV2, ≥ 1.3 ResNet50)")
    line("TF f32 end to end ÷ peer", "e2e_te_floa", "peer_ips")
    line("OV f32 end to end ÷ OV f32 ceiling", "e2e_op_floa", "ceiling_op_floa", "(target ≥ 0.85 ResNet50)")
    line("OV bf16 ÷ OV f32, end to end", "e2e_op_bflo", "e2e_op_floa", "(target ≥ 1.8 ResNet50)")
    line("OV bf16 ÷ OV f32, ceiling (bare forward)", "ceiling_op_bflo", "ceiling_op_floa")
    line("OV f32 ÷ TF f32, end to end", "e2e_op_floa", "e2e_te_floa")
    if "seed_ips" in row:
        print(f"OV f32 end to end ÷ seed method                    : {g('e2e_op_floa') / row['seed_ips']:8.1f}×")
    for tag in ("te_floa", "op_floa"):
        if f"profile_{tag}" in row:
            split = ", ".join(f"{k} {v:.2f}" for k, v in row[f"profile_{tag}"].items())
            print(f"ms per image, stages in series ({tag[:2]} f32)         : {split}")
    if "peak_mib" in row:
        mem = ", ".join(f"{rt} {n}: {mib:.0f} MiB" for (rt, n), mib in row["peak_mib"].items())
        print(f"peak resident memory (fresh process each)          : {mem}")
    sys.stdout.flush()


def cpu_bf16_support() -> str:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    found = [f for f in ("amx_bf16", "avx512_bf16") if f in flags]
    return ", ".join(found) or "none"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="mobilenetv2 and resnet50, fewer repeats (smoke run)")
    parser.add_argument("--backbones", default=None, help="default mobilenetv2,resnet50,efficientnetb0,demo-shapes")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--images", type=int, default=256, help="JPEGs to write (at least 256 for the targets)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds per backbone (default 5; --quick 2)")
    parser.add_argument("--memory-child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        name, folder, count, batch_size, runtime = args.memory_child
        memory_child(name, folder, int(count), int(batch_size), runtime)
        return

    import keras

    from extractor import runtime as rt

    modules = {"mobilenetv2": keras.applications.mobilenet_v2, "resnet50": keras.applications.resnet50,
               "vgg16": keras.applications.vgg16, "efficientnetb0": keras.applications.efficientnet,
               "demo-shapes": None}
    names = (args.backbones or ("mobilenetv2,resnet50" if args.quick else
                                "mobilenetv2,resnet50,efficientnetb0,demo-shapes")).split(",")
    seed_images = 8 if args.quick else 16
    print(f"# CPU cores: {os.cpu_count()}; bfloat16 instructions: {cpu_bf16_support()}; {args.images} JPEGs; "
          f"batch {args.batch_size}; random weights (demo-shapes: its own); OpenVINO threads {rt.openvino_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = write_jpegs(folder, args.images)
        for line in resize_split():
            print(line)
        for name in names:
            memory_counts = (200, 1000) if name == "mobilenetv2" else ()
            row = bench_backbone(name, modules[name], paths, folder, args.batch_size, seed_images, memory_counts,
                                 profile=name == "mobilenetv2", rounds=args.rounds or (2 if args.quick else 5))
            report(row)


if __name__ == "__main__":
    main()
