"""``python -m extractor``: the core as a command line, a stable contract for scripts and tests.

Every usage error is one line on stderr (exit 2); every refusal of bad input is one line
(exit 1); a traceback means a bug.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # keep TensorFlow's start-up chatter off stderr

from . import similarity  # noqa: E402
from .errors import LayerExplorerError  # noqa: E402

PROG = "python -m extractor"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REFUSED = 0, 1, 2, 3


class UsageError(Exception):
    """A command line that cannot be run as written."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        raise UsageError(f"{self.prog}: {message} (see --help)")


def _formatter(prog):
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32, width=100)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        formatter_class=_formatter,
        description="Layer Explorer's extraction core: list backbones and layers, extract pooled features, "
        "score layers, train and inspect models.",
        epilog="Examples:\n"
        f"  {PROG} backbones\n"
        f"  {PROG} demo export shapes data/shapes --per-class 20\n"
        f"  {PROG} layers demo-shapes\n"
        f"  {PROG} extract demo-shapes data/shapes --layers block2_pool,block4_pool --pooling avg,gem --out feats.npz\n"
        f"  {PROG} sweep demo-shapes data/shapes --out report.csv",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("backbones", help="list the backbones", formatter_class=_formatter,
                       description="List every backbone: default input size, preprocessing, and whether ImageNet "
                       f"weights are in the local Keras cache.\n\nExample:\n  {PROG} backbones --json")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")

    p = sub.add_parser("layers", help="list a backbone's feature-map layers", formatter_class=_formatter,
                       description="Every layer whose output is a feature map, in depth order.\n\n"
                       f"Example:\n  {PROG} layers resnet50 --weights none --json")
    p.add_argument("backbone", help="registry name (see `backbones`) or a .keras model file, e.g. demo-shapes")
    _weights_arg(p)
    _size_arg(p)
    p.add_argument("--json", action="store_true",
                   help="print a JSON list of {name, shape, kind, block, stride, depth, class_name, "
                   "receptive_field, effective_stride}")

    p = sub.add_parser("extract", help="extract pooled features to .npz or .parquet", formatter_class=_formatter,
                       description="Extract pooled features of several layers in one forward pass.\n\n"
                       f"Example:\n  {PROG} extract demo-shapes data/shapes --layers block2_pool,block4_pool "
                       "--pooling avg,max --out feats.npz\n"
                       f"  {PROG} extract mobilenetv2 photos/ --layers out_relu --engine ray --out feats/")
    p.add_argument("backbone", help="registry name or .keras model file, e.g. resnet50")
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="image files or folders (recursed; a folder per class gives labels), e.g. data/shapes")
    p.add_argument("--layers", required=True,
                   help="comma-separated layer names, or 'blocks' (one per block) or 'all', e.g. block1_pool,block4_pool")
    p.add_argument("--pooling", default="avg",
                   help="comma-separated poolings: avg, max, gem, avgmax, flatten, none (default avg), e.g. avg,gem")
    _weights_arg(p)
    _size_arg(p)
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32), e.g. 64")
    p.add_argument("--precision", choices=["float32", "bfloat16"], default="float32",
                   help="float32 (default) or bfloat16 (faster on CPUs with AVX512-BF16 or AMX, most with OpenVINO)")
    p.add_argument("--resize", choices=["stretch", "center-crop", "pad", "native"], default="stretch",
                   help="stretch (default), center-crop, pad (letterbox) or native (each image at its own size)")
    _runtime_arg(p)
    p.add_argument("--out", required=True,
                   help="output file ending .npz or .parquet, e.g. feats.npz; with --engine ray a folder, e.g. feats/")
    _engine_args(p)

    p = sub.add_parser("sweep", help="score every block-level layer × pooling on a labelled set",
                       formatter_class=_formatter,
                       description="k-NN and linear-probe accuracy (cross-validated), silhouette, dimension and "
                       "time for each block-level layer × pooling, and a recommendation.\n\n"
                       f"Example:\n  {PROG} sweep demo-shapes data/shapes --poolings avg,max,gem --out report.csv")
    p.add_argument("backbone", help="registry name or .keras model file")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders (a folder per class gives labels)")
    p.add_argument("--poolings", default="avg,max,gem,avgmax", help="comma-separated poolings (default avg,max,gem,avgmax)")
    p.add_argument("--layers", default="blocks", help="'blocks' (default), 'all', or comma-separated names")
    _weights_arg(p)
    _size_arg(p)
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    p.add_argument("--resize", choices=["stretch", "center-crop", "pad"], default="stretch", help="resize policy")
    _runtime_arg(p)
    p.add_argument("--out", help="write the table as CSV, e.g. report.csv")
    _engine_args(p)
    p.add_argument("--features-out", metavar="DIR",
                   help="with --engine ray: keep the extracted features in this folder (resumable); default a "
                   "temporary folder")

    p = sub.add_parser("explain", help="Grad-CAM heat maps: where the network looks for a class",
                       formatter_class=_formatter,
                       description="Grad-CAM (or Grad-CAM++) heat maps at the network's input size, with the class "
                       "probabilities, for a backbone with a classifier head.\n\n"
                       f"Example:\n  {PROG} explain demo-shapes data/shapes --method gradcam++ --out cams.npz")
    p.add_argument("backbone", help="registry name or .keras model file with a classifier head, e.g. demo-shapes")
    p.add_argument("paths", nargs="+", metavar="IMAGE", help="image files or folders")
    p.add_argument("--layer", help="feature-map layer to explain (default: the last one before global pooling)")
    p.add_argument("--class", dest="class_", default="top", help="class name to explain, or 'top' (default): "
                   "each image's predicted class")
    p.add_argument("--method", choices=["gradcam", "gradcam++"], default="gradcam", help="default gradcam")
    _weights_arg(p)
    _size_arg(p)
    p.add_argument("--out", required=True, help="output .npz file, e.g. cams.npz")

    p = sub.add_parser("demo", help="the built-in demo: export image sets, retrain the demo CNN",
                       formatter_class=_formatter,
                       description=f"Examples:\n  {PROG} demo export shapes data/shapes --per-class 20\n"
                       f"  {PROG} demo train")
    demo = p.add_subparsers(dest="demo_command", metavar="ACTION", parser_class=_Parser)
    demo.required = True
    q = demo.add_parser("export", help="write a demo set as image files, one folder per class",
                        formatter_class=_formatter,
                        description=f"Example:\n  {PROG} demo export digits data/digits --per-class 10")
    q.add_argument("set", choices=["shapes", "digits", "photos"], help="which demo set")
    q.add_argument("dir", help="output folder, e.g. data/shapes")
    q.add_argument("--per-class", type=int, default=20, help="images per class (default 20)")
    q.add_argument("--seed", type=int, default=0, help="random seed for shapes (default 0)")
    q = demo.add_parser("train", help="retrain the shipped demo CNN on shapes", formatter_class=_formatter,
                        description=f"Example:\n  {PROG} demo train --out my_demo.weights.h5")
    q.add_argument("--out", help="weights file to write (default: the shipped file)")
    q.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    q.add_argument("--epochs", type=int, help="epochs (default: the shipped recipe)")

    p = sub.add_parser("train", help="train a small CNN on your folder-per-class images", formatter_class=_formatter,
                       description="Train the demo architecture on your own images; the result is usable as a "
                       f"backbone by path.\n\nExample:\n  {PROG} train data/shapes --out my_model.keras\n"
                       f"  {PROG} layers my_model.keras")
    p.add_argument("dir", help="a folder with one sub-folder of images per class")
    p.add_argument("--out", required=True, help="model file to write, ending .keras")
    p.add_argument("--epochs", type=int, default=10, help="epochs (default 10)")
    p.add_argument("--input-size", type=int, default=64, help="square input size in pixels (default 64)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")

    p = sub.add_parser("inspect-model", help="audit a .keras file the way the app does before loading it",
                       formatter_class=_formatter,
                       description="Prints the verdict and its reasons without loading the model. Exit 0 when it "
                       f"would be accepted, 3 when refused, 2 on usage errors.\n\nExample:\n  {PROG} inspect-model model.keras")
    p.add_argument("file", help="a .keras file (or .h5 when LAYER_EXPLORER_ALLOW_H5=1)")
    p.add_argument("--json", action="store_true", help="print the verdict as JSON")
    similarity.add_parser(sub, _formatter, PROG)
    return parser


def _weights_arg(p):
    p.add_argument("--weights", default="pretrained",
                   help="pretrained (default: ImageNet, or the shipped weights of demo-shapes), imagenet, none "
                   "(random), or a .weights.h5 file, e.g. --weights none")


def _engine_args(p):
    g = p.add_argument_group("engine", "where extraction runs (the app always uses local). On a remote cluster: "
                             f"ray job submit --address http://HEAD:8265 --working-dir . -- {PROG} ... "
                             "--engine ray --address auto --out /shared/feats/")
    g.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local (default: this process) or ray (Ray Data actors; resumable folder output)")
    g.add_argument("--address", help="ray: join a running cluster, 'auto' or HOST:PORT (default: start Ray here)")
    g.add_argument("--workers", type=int,
                   help="ray: actors, each holding one model (default: CPUs - 1, so reading and decoding keep a "
                   "CPU; 1 on 2 cores; with --gpus-per-worker, GPUs / G)")
    g.add_argument("--gpus-per-worker", type=float, default=0.0, metavar="G",
                   help="ray: GPUs per actor, e.g. 1 or 0.5 (default 0: CPU)")
    g.add_argument("--rows-per-shard", type=int, default=1024,
                   help="ray: rows per Parquet shard (default 1024); a killed run redoes only the shards it had "
                   "not finished")


def _size_arg(p):
    p.add_argument("--input-size", type=int, help="square input size in pixels (default: the backbone's), e.g. 160")


def _runtime_arg(p):
    p.add_argument("--runtime", choices=["auto", "tensorflow", "openvino"], default="auto",
                   help="engine: auto (default: OpenVINO on a CPU when installed, else TensorFlow), tensorflow or "
                   "openvino (fails if the model can't be converted, where auto falls back to TensorFlow)")


# ------------------------------------------------------------------------------------------------

def _progress(label: str):
    """A one-line progress bar on a terminal; silent when stderr is a file or pipe."""
    if not sys.stderr.isatty():
        return None
    start = time.perf_counter()

    def show(done, total):
        elapsed = time.perf_counter() - start
        rate = done / elapsed if elapsed > 0 else 0.0
        if total:
            filled = int(30 * done / total)
            bar = "█" * filled + "·" * (30 - filled)
            sys.stderr.write(f"\r{label} {bar} {done}/{total} ({rate:.1f} img/s)")
        else:
            sys.stderr.write(f"\r{label} {done} ({rate:.1f} img/s)")
        if total and done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


def _load(args, input_size=None):
    from .backbones import load_backbone

    size = args.input_size if input_size is None else input_size
    return load_backbone(args.backbone, weights=args.weights, input_size=size)


def _resolve_layers(spec: str, backbone) -> list[str]:
    from .layers import feature_layers, representative_layers

    table = feature_layers(backbone.model)
    if spec.strip().lower() == "all":
        return [lyr.name for lyr in table]
    if spec.strip().lower() == "blocks":
        return [lyr.name for lyr in representative_layers(table, "block")]
    return [name.strip() for name in spec.split(",") if name.strip()]


def _gather(paths):
    from .sources import gather_paths

    batch = gather_paths(paths)
    for problem in batch.problems:
        print(f"skipped {problem.message}", file=sys.stderr)  # the message starts with the file's name
    for note in batch.notes:
        print(f"note: {note}", file=sys.stderr)
    return batch


def cmd_backbones(args) -> int:
    from .backbones import BACKBONES, imagenet_cached

    rows = []
    cached = imagenet_cached()
    for spec in BACKBONES.values():
        rows.append({
            "name": spec.name,
            "input_size": list(spec.input_size),
            "preprocessing": spec.preprocessing,
            "family": spec.family,
            "pretrained": spec.pretrained,
            "imagenet_cached": bool(cached[spec.name]),
        })
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    print(f"{'name':<18}{'input':<10}{'preprocessing':<15}{'pretrained weights':<30}")
    for r in rows:
        if r["pretrained"] == "imagenet":
            weights = "imagenet: cached" if r["imagenet_cached"] else "imagenet: not cached"
        else:
            weights = f"{r['pretrained']} (offline)"
        size = "×".join(map(str, r["input_size"]))
        print(f"{r['name']:<18}{size:<10}{r['preprocessing']:<15}{weights:<30}")
    return EXIT_OK


def cmd_layers(args) -> int:
    from .layers import feature_layers

    backbone = _load(args)
    table = feature_layers(backbone.model)
    if args.json:
        print(json.dumps([info.as_dict() for info in table], indent=1))
        return EXIT_OK
    print(f"# {backbone.name}: {len(table)} feature-map layers; weights: {backbone.weights.description}")
    print(f"{'name':<44}{'shape (H, W, C)':<18}{'kind':<12}{'block':<20}{'stride':>6}{'RF px':>11}{'RF stride':>10}")
    for info in table:
        shape = "×".join("?" if d is None else str(d) for d in info.shape)
        rf, rf_stride = _side(info.receptive_field), _side(info.effective_stride)
        print(f"{info.name:<44}{shape:<18}{info.kind:<12}{info.block:<20}{info.stride or '?':>6}{rf:>11}{rf_stride:>10}")
    return EXIT_OK


def _side(pair) -> str:
    """212 for a square (212, 212), 211×215 otherwise, ? when unknown."""
    if pair is None:
        return "?"
    h, w = (f"{v:g}" for v in pair)
    return h if h == w else f"{h}×{w}"


def cmd_extract(args) -> int:
    from .features import FeatureExtractor

    if _check_engine_args(args) == "ray":
        return _extract_on_ray(args)
    out = Path(args.out)
    if out.suffix not in (".npz", ".parquet"):
        raise UsageError(f"{PROG} extract: --out must end with .npz or .parquet; got {out.name!r}")
    backbone = _load(args)
    layers = _resolve_layers(args.layers, backbone)
    fx = FeatureExtractor(backbone, layers, args.pooling, precision=args.precision, resize=args.resize,
                          runtime=args.runtime)
    batch = _gather(args.paths)
    if not batch.sources:
        print(f"error: no images found in {', '.join(args.paths)}", file=sys.stderr)
        return EXIT_FAILED
    result = fx.extract(batch.sources, batch_size=args.batch_size, progress=_progress("extracting"))
    for failure in result.failures:
        print(f"skipped {failure.message}", file=sys.stderr)
    for note in result.notes:
        print(f"note: {note.message}", file=sys.stderr)
    _write_features(out, result)
    dims = ", ".join(f"{k} ({v.shape[1]})" for k, v in result.features.items())
    print(f"wrote {len(result.names)} images × [{dims}] to {out} "
          f"({len(result.names) / max(result.seconds, 1e-9):.1f} images/s; weights: {backbone.weights.description}; "
          f"runtime: {result.runtime} {result.precision})")
    return EXIT_OK


def _write_features(out: Path, result) -> None:
    from .export import features_to_npz, features_to_parquet

    labels = result.labels if result.has_labels else None
    labels = None if labels is None else ["" if lyr is None else lyr for lyr in labels]
    writer = features_to_npz if out.suffix == ".npz" else features_to_parquet
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(writer(result.features, result.names, labels,
                           provenance={"runtime": result.runtime, "precision": result.precision}))


def _check_engine_args(args) -> str:
    if args.engine == "local":
        given = [flag for flag, value in (("--address", args.address), ("--workers", args.workers),
                                          ("--gpus-per-worker", args.gpus_per_worker),
                                          ("--features-out", getattr(args, "features_out", None))) if value]
        if given:
            raise UsageError(f"{PROG} {args.command}: {given[0]} needs --engine ray")
    return args.engine


def _ray_run(args, out, poolings):
    """Extraction on Ray into the folder ``out`` (extractor.distributed); prints what was skipped."""
    from .distributed import ExtractionPlan, RayOptions, extract_to_folder, read_feature_folder
    from .sources import list_image_files

    if Path(out).suffix.lower() in (".npz", ".parquet"):
        raise UsageError(f"{PROG} {args.command}: --engine ray writes a folder of Parquet shards, but --out {out} "
                         f"is a file name; give a folder, e.g. --out {Path(out).with_suffix('')}/ "
                         "(or use --engine local for one file)")
    backbone = _load(args)
    layers = _resolve_layers(args.layers, backbone)
    plan = ExtractionPlan.from_backbone(backbone, layers, [p.strip() for p in poolings.split(",") if p.strip()],
                                        source=args.backbone, resize=args.resize,
                                        precision=getattr(args, "precision", "float32"), runtime=args.runtime,
                                        batch_size=args.batch_size)
    files, problems = list_image_files(args.paths)
    for problem in problems:
        print(f"skipped {problem.message}", file=sys.stderr)
    if not files:
        print(f"error: no images found in {', '.join(args.paths)}", file=sys.stderr)
        return None, None, None
    options = RayOptions(address=args.address, workers=args.workers, gpus_per_worker=args.gpus_per_worker,
                         rows_per_shard=args.rows_per_shard)
    run = extract_to_folder(plan, files, out, options, progress=_progress("extracting"))
    result, _ = read_feature_folder(out)
    return backbone, run, result


def _extract_on_ray(args) -> int:
    backbone, run, result = _ray_run(args, Path(args.out), args.pooling)
    if run is None:
        return EXIT_FAILED
    for failure in run.failures:
        print(f"skipped {failure.name}: {failure.message}", file=sys.stderr)
    dims = ", ".join(f"{k} ({v.shape[1] if v.ndim == 2 else '?'})" for k, v in result.features.items())
    print(f"wrote {run.rows_written} rows now ({run.already_done} were already there) to {run.out}: "
          f"{len(result.names)} images × [{dims}], {len(run.failures)} failures "
          f"({run.rows_written / max(run.seconds, 1e-9):.1f} rows/s on {run.workers or 0} Ray workers, "
          f"{run.ray_start_seconds:.0f} s of it starting Ray; "
          f"weights: {backbone.weights.description})")
    return EXIT_OK


def cmd_sweep(args) -> int:
    from .sweep import run_sweep

    if _check_engine_args(args) == "ray":
        return _sweep_on_ray(args)
    backbone = _load(args)
    layers = _resolve_layers(args.layers, backbone)
    batch = _gather(args.paths)
    if not batch.sources:
        print(f"error: no images found in {', '.join(args.paths)}", file=sys.stderr)
        return EXIT_FAILED
    report = run_sweep(backbone, batch.sources, layers=layers, poolings=args.poolings, batch_size=args.batch_size,
                       resize=args.resize, runtime=args.runtime, progress=_progress("extracting"))
    return _print_sweep(args, report)


def _sweep_on_ray(args) -> int:
    """Extract on Ray, score here: scoring is small next to extraction."""
    import tempfile

    from .features import split_key
    from .sweep import run_sweep

    with tempfile.TemporaryDirectory(prefix="layer-explorer-sweep-") as tmp:
        out = Path(args.features_out) if args.features_out else Path(tmp) / "features"
        backbone, run, result = _ray_run(args, out, args.poolings)
        if run is None:
            return EXIT_FAILED
        layers = list(dict.fromkeys(split_key(k)[0] for k in result.features))
        report = run_sweep(backbone, [], layers=layers, poolings=args.poolings, resize=args.resize,
                           extraction=result)
    report.failures = list(run.failures)
    return _print_sweep(args, report)


def _print_sweep(args, report) -> int:
    for failure in report.failures:
        print(f"skipped {failure.message}", file=sys.stderr)
    print(report.table_text())
    print()
    print(report.recommendation_text())
    if args.out:
        Path(args.out).write_text(report.table.to_csv(index=False))
        print(f"wrote {args.out}")
    return EXIT_OK


def cmd_explain(args) -> int:
    from .explain import print_skipped, run_explain

    out = Path(args.out)
    if out.suffix != ".npz":
        raise UsageError(f"{PROG} explain: --out must end with .npz; got {out.name!r}")
    backbone = _load(args)
    result = run_explain(backbone, args.paths, out, layer=args.layer, class_=args.class_, method=args.method)
    print_skipped(result)
    print(f"wrote {result.count} {result.method} heat maps of {result.layer} to {out} "
          f"(weights: {backbone.weights.description})")
    return EXIT_OK


def cmd_demo(args) -> int:
    if args.demo_command == "export":
        from .demo import export_demo_set

        if args.per_class < 1:
            raise UsageError(f"{PROG} demo export: --per-class must be at least 1; got {args.per_class}")
        paths = export_demo_set(args.set, args.dir, per_class=args.per_class, seed=args.seed)
        classes = sorted({p.parent.name for p in paths})
        print(f"wrote {len(paths)} images in {len(classes)} folders under {args.dir}")
        return EXIT_OK
    from . import training

    kwargs = {"seed": args.seed}
    if args.epochs:
        kwargs["epochs"] = args.epochs
    if args.out:
        kwargs["out_weights"] = Path(args.out)
    result = training.train_demo(progress=_epoch_progress(), **kwargs)
    print(f"held-out accuracy {result.heldout_accuracy:.3f} after {result.seconds:.0f} s; "
          f"weights in {kwargs.get('out_weights', training.DEMO_WEIGHTS_PATH)}")
    return EXIT_OK


def _epoch_progress():
    def show(epoch, total, logs):
        acc = logs.get("accuracy")
        val = logs.get("val_accuracy")
        extra = "".join(f" {k} {v:.3f}" for k, v in (("accuracy", acc), ("val_accuracy", val)) if v is not None)
        print(f"epoch {epoch}/{total}{extra}", file=sys.stderr, flush=True)

    return show


def cmd_train(args) -> int:
    from . import training

    if not args.out.endswith(".keras"):
        raise UsageError(f"{PROG} train: --out must end with .keras; got {args.out!r}")
    result = training.train_from_folder(args.dir, args.out, input_size=(args.input_size, args.input_size),
                                        epochs=args.epochs, seed=args.seed, progress=_epoch_progress())
    for _name, message in result.skipped:
        print(f"skipped {message}", file=sys.stderr)  # the message starts with the file's name
    print(f"held-out accuracy {result.heldout_accuracy:.3f} on {len(result.classes)} classes; wrote {args.out}. "
          f"Use it as a backbone: {PROG} layers {args.out}")
    return EXIT_OK


def cmd_inspect_model(args) -> int:
    from .audit import audit_model_file, h5_enabled

    path = Path(args.file)
    if not path.is_file():
        raise UsageError(f"{PROG} inspect-model: no such file {args.file!r}")
    report = audit_model_file(path, allow_h5=h5_enabled())
    if args.json:
        print(json.dumps({"accepted": report.accepted, "file_kind": report.file_kind,
                          "reasons": report.reasons, "notes": report.notes}, indent=2))
    else:
        print(f"{'ACCEPTED' if report.accepted else 'REFUSED'}: {path.name} ({report.file_kind})")
        for reason in report.reasons:
            print(f"  - {reason}")
        for note in report.notes:
            print(f"  · {note}")
    return EXIT_OK if report.accepted else EXIT_REFUSED


COMMANDS = {
    "backbones": cmd_backbones,
    "layers": cmd_layers,
    "extract": cmd_extract,
    "sweep": cmd_sweep,
    "demo": cmd_demo,
    "explain": cmd_explain,
    "train": cmd_train,
    "inspect-model": cmd_inspect_model,
    "similarity": lambda args: similarity.run(args, _gather, UsageError),
}


def _quiet_tensorflow_start() -> None:
    """Import TensorFlow and start its devices with stderr muted.

    TensorFlow's C++ start-up lines (oneDNN, CUDA probes) ignore TF_CPP_MIN_LOG_LEVEL in this
    version; on stderr they would bury the lines this tool prints there (skipped files,
    errors). Python-level errors still surface: they are raised after stderr is restored.
    """
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow as tf

            tf.config.list_logical_devices()
            tf.get_logger().setLevel("ERROR")  # the sweep's per-layer timing traces many small graphs on purpose
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def main(argv=None) -> int:
    try:
        args = _parser().parse_args(argv)
        if args.command not in ("backbones", "inspect-model") and not (args.command == "demo" and args.demo_command == "export"):
            _quiet_tensorflow_start()
        return COMMANDS[args.command](args)
    except BrokenPipeError:  # e.g. `... layers resnet50 | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except UsageError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except LayerExplorerError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
