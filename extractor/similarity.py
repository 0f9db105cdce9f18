"""Layer similarity over a set of images: CKA between layers of one or two backbones, and the CLI.

:func:`layer_similarity` runs the images through the backbone(s) once and returns a
:class:`~extractor.cka.CKAResult`. With ``features="avg"`` it compares avg-pooled vectors (one
forward pass, pooling in the graph). With ``features="full"`` it compares the flattened
H·W·C maps through Gram matrices accumulated block by block (:func:`extractor.cka.full_map_grams`),
so memory is n × n per layer plus one block of maps.

``python -m extractor similarity`` is registered by :func:`add_parser`/:func:`run`. Its CSV
starts with one comment line, ``# estimator: …; features: …; images: …; rows: …; columns: …``,
then the matrix with the first column ``layer``. Read it with
``pandas.read_csv("cka.csv", comment="#")``; the comment line carries the provenance.

Example:
    >>> res = layer_similarity(load_backbone("demo-shapes"), images, layers="blocks")
    >>> res.frame().columns[0], res.values.shape
    ('layer', (4, 4))
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .backbones import Backbone
from .cka import CKAError, CKAResult, cka_matrix, estimator_name, full_map_grams
from .errors import LayerExplorerError
from .features import FeatureExtractor, feature_key
from .images import load_image, resize_image
from .layers import feature_layers, representative_layers

__all__ = ["FULL_MAPS_BLOCK_BYTES", "add_parser", "csv_text", "layer_similarity", "resolve_layers", "run"]

FULL_MAPS_BLOCK_BYTES = 256 * 2**20  # one block of full maps (all compared layers) at most this big


def resolve_layers(spec: str | Sequence[str], backbone: Backbone) -> list[str]:
    """``"blocks"`` (one per block), ``"all"``, or names (a comma-separated string or a list)."""
    table = feature_layers(backbone.model)
    if isinstance(spec, str):
        if spec.strip().lower() == "blocks":
            return [info.name for info in representative_layers(table, "block")]
        if spec.strip().lower() == "all":
            return [info.name for info in table]
        spec = [s.strip() for s in spec.split(",") if s.strip()]
    return list(spec)


def _pixels(fx: FeatureExtractor, images: Sequence) -> np.ndarray:
    """Decode and resize every image once, as the network sees it: (n, H, W, 3) uint8."""
    size = fx.input_size
    out = []
    for item in images:
        if isinstance(item, np.ndarray):
            out.append(resize_image(item, size, fx.resize))
        else:
            out.append(load_image(item.data, item.name, size, fx.resize).pixels)
    return np.stack(out)


def _block_size(fx: FeatureExtractor, budget: int) -> int:
    per_image = sum(int(np.prod(fx._shape_at_input(info))) * 8 for info in fx.layer_infos)  # float64 copies
    return max(1, budget // max(1, per_image))


def _full_grams(fx: FeatureExtractor, pixels: np.ndarray, budget: int, progress) -> dict[str, np.ndarray]:
    batch = 32

    def maps_of(indices):
        parts: dict[str, list] = {layer: [] for layer in fx.layers}
        idx = list(indices)
        for s in range(0, len(idx), batch):
            out = fx.run_batch(pixels[idx[s : s + batch]])
            for layer in fx.layers:
                parts[layer].append(out[feature_key(layer, "none")])
        return {layer: np.concatenate(v) for layer, v in parts.items()}

    return full_map_grams(maps_of, len(pixels), _block_size(fx, budget), progress=progress)


def layer_similarity(
    backbone: Backbone,
    images: Sequence,
    layers: str | Sequence[str] = "blocks",
    *,
    other: Backbone | None = None,
    other_layers: str | Sequence[str] | None = None,
    features: str = "avg",
    debiased: bool = False,
    resize: str = "stretch",
    block_bytes: int = FULL_MAPS_BLOCK_BYTES,
    progress: Callable[[int, int], None] | None = None,
) -> CKAResult:
    """CKA between ``layers`` of ``backbone`` and ``other_layers`` of ``other`` (or of itself).

    ``images`` are uint8 arrays or ``ImageSource`` objects that decode (gather them with
    :func:`extractor.gather_paths`; failures there are the caller's to report).
    """
    if features not in ("avg", "full"):
        raise CKAError(f"features must be 'avg' (avg-pooled vectors) or 'full' (whole maps); got {features!r}.")
    if len(images) < 2:
        raise CKAError(f"CKA needs at least 2 images; got {len(images)}.")
    sides = [(backbone, resolve_layers(layers, backbone))]
    if other is not None:
        sides.append((other, resolve_layers(other_layers if other_layers is not None else layers, other)))
    grams = []
    for bb, names in sides:
        pooling = "none" if features == "full" else "avg"
        fx = FeatureExtractor(bb, names, [pooling], resize=resize, max_raw_bytes=2**62)
        pixels = _pixels(fx, images)
        if features == "full":
            g = _full_grams(fx, pixels, block_bytes, progress)
        else:
            out = {k: [] for k in fx.keys}
            for s in range(0, len(pixels), 32):
                batch = fx.run_batch(pixels[s : s + 32])
                for k in fx.keys:
                    out[k].append(batch[k])
            g = {}
            for layer in fx.layers:
                x = np.concatenate(out[feature_key(layer, "avg")]).astype(np.float64)
                g[layer] = x @ x.T
        grams.append(g)
    res = cka_matrix(row_grams=grams[0], column_grams=grams[-1] if other is not None else None,
                     debiased=debiased, features=features)
    return res


def csv_text(result: CKAResult, rows_from: str, columns_from: str) -> str:
    """The matrix as CSV, with a leading ``#`` line naming estimator, features and sources."""
    head = (f"# estimator: {estimator_name(result.debiased)}; features: "
            f"{'avg-pooled vectors' if result.features == 'avg' else 'full maps (flattened H·W·C)'}; "
            f"images: {result.n_images}; rows: {rows_from}; columns: {columns_from}\n")
    return head + result.frame().to_csv(index=False, float_format="%.6f")


def table_text(result: CKAResult) -> str:
    """A fixed-width table for the terminal (n/a where CKA is undefined)."""
    width = max(len(r) for r in result.rows) + 2
    cell = max(7, *(len(c) for c in result.columns)) + 2
    lines = [" " * width + "".join(f"{c:>{cell}}" for c in result.columns)]
    for r, row in zip(result.rows, result.values, strict=True):
        lines.append(f"{r:<{width}}" + "".join(f"{'n/a':>{cell}}" if np.isnan(v) else f"{v:>{cell}.3f}" for v in row))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# command line (registered in extractor/__main__.py)

def add_parser(sub, formatter, prog: str) -> None:
    p = sub.add_parser(
        "similarity", help="linear CKA between the layers of one or two backbones on your images",
        formatter_class=formatter,
        description="How alike the representations of two layers are on the same images (linear CKA, "
        "Kornblith et al. 2019): 1 = the same up to rotation and scale. Compares every block output of a "
        "backbone with every other, or with those of a second backbone (or the same one with other weights).\n\n"
        "The CSV's first line is a comment naming the estimator; read it with pandas.read_csv(path, comment='#').\n\n"
        f"Examples:\n  {prog} similarity demo-shapes data/shapes --out cka.csv\n"
        f"  {prog} similarity demo-shapes data/shapes --other demo-shapes --other-weights none --out trained_vs_random.csv")
    p.add_argument("backbone", help="registry name or .keras model file, e.g. demo-shapes")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders, e.g. data/shapes")
    p.add_argument("--layers", default="blocks",
                   help="'blocks' (default: one per block), 'all', or comma-separated names of the first backbone")
    p.add_argument("--weights", default="pretrained",
                   help="weights of the first backbone: pretrained (default), imagenet, none (random), or a .weights.h5 file")
    p.add_argument("--other", help="second backbone for the columns (default: the first one again)")
    p.add_argument("--other-weights", help="weights of the second backbone (default: the same as --weights)")
    p.add_argument("--other-layers", help="layers of the second backbone (default: 'blocks', or --layers for the same backbone)")
    p.add_argument("--features", choices=["avg", "full"], default="avg",
                   help="avg: avg-pooled vectors (default, fast); full: whole maps through accumulated Gram matrices")
    p.add_argument("--debiased", action="store_true",
                   help="the debiased estimator (unbiased HSIC); better below ~100 images")
    p.add_argument("--input-size", type=int, help="square input size in pixels (default: the backbone's)")
    p.add_argument("--out", required=True, help="CSV file to write, e.g. cka.csv")


def run(args, gather: Callable, usage_error: type[Exception]) -> int:
    from .backbones import load_backbone

    if not args.out.endswith(".csv"):
        raise usage_error(f"similarity: --out must end with .csv; got {args.out!r}")
    backbone = load_backbone(args.backbone, weights=args.weights, input_size=args.input_size)
    other = None
    if args.other or args.other_weights:
        other = load_backbone(args.other or args.backbone, weights=args.other_weights or args.weights,
                              input_size=args.input_size)
    batch = gather(args.paths)
    if not batch.sources:
        print(f"error: no images found in {', '.join(args.paths)}", file=sys.stderr)
        return 1
    good, bad = [], []
    size = backbone.input_size or backbone.spec.input_size
    for src in batch.sources:  # find the files that do not decode before any forward pass
        try:
            load_image(src.data, src.name, size)
            good.append(src)
        except LayerExplorerError as exc:
            bad.append(str(exc))
    for message in bad:
        print(f"skipped {message}", file=sys.stderr)
    other_layers = args.other_layers or ("blocks" if args.other and args.other != args.backbone else args.layers)
    res = layer_similarity(backbone, good, args.layers, other=other, other_layers=other_layers,
                           features=args.features, debiased=args.debiased)
    describe = f"{backbone.name} ({backbone.weights.description})"
    describe_other = describe if other is None else f"{other.name} ({other.weights.description})"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(csv_text(res, describe, describe_other))
    print(f"# {res.estimator}; {res.n_images} images; rows: {describe}; columns: {describe_other}")
    print(table_text(res))
    print(f"wrote {args.out}")
    return 0
