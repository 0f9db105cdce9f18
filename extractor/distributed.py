"""Extraction on Ray Data: the local engine's features, on one machine or a cluster, resumable.

The pipeline is Ray Data's batch-inference shape, with the core's own pieces in it::

    read_binary_files(paths, include_paths=True)       # bytes, one row per file
      -> map_batches(_decode_batch)                      # extractor.images.load_image: same allow-list,
                                                         #   pixel cap and resize policy; bad file -> `error`
      -> map_batches(_EmbedBatch, compute=ActorPoolStrategy(size=workers))
                                                         # one FeatureExtractor per actor, built once
      -> write_parquet(OUT/_staging)                     # plain Arrow columns, no Ray extension types

A bad file becomes a row with an ``error`` and no features; it never fails or drops the block
it sits in. The output folder holds plain Parquet shards (``path``, ``label``, ``error``, one
``fixed_size_list<float32>[C]`` column per ``layer/pooling``, as :func:`extractor.export.features_to_parquet`
writes) and ``_manifest.json``; pandas and pyarrow read it without Ray (names starting with
``_`` are ignored by both).

Resumable and idempotent: Ray names every file it writes with a fresh UUID, so a rerun cannot
recognise its own output by name. Instead a shard is *committed* when it has been written
completely (its Parquet footer reads back, with every row) and moved from ``_staging/`` into
the folder. A rerun first commits what a killed run left complete, deletes what it left half
written, and then extracts only the paths not yet in a committed shard — so every path is in
exactly one committed shard, however often the command is repeated.

Example:
    >>> plan = ExtractionPlan.from_backbone(load_backbone("demo-shapes"), ["block4_pool"], ["avg"])
    >>> from extractor.sources import list_image_files
    >>> files, problems = list_image_files(["data/shapes"])
    >>> run = extract_to_folder(plan, files, "feats/", RayOptions())  # doctest: +SKIP
    >>> run.rows_total, [f.name for f in run.failures]  # doctest: +SKIP
    (80, [])
    >>> read_feature_folder("feats/")[0].features["block4_pool/avg"].shape  # doctest: +SKIP
    (80, 128)

    (Skipped as doctests: they start an embedded Ray cluster; tests/test_distributed.py runs them.)
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .backbones import Backbone, load_backbone
from .errors import LayerExplorerError
from .features import ExtractionResult, Failure, FeatureExtractor
from .images import InvalidImageError, load_image
from .runtime import THREADS_ENV
from .sources import ImageFile

__all__ = [
    "ExtractionPlan",
    "RayOptions",
    "FolderRun",
    "RayNotInstalledError",
    "FeatureFolderError",
    "RayRunError",
    "MAX_FILE_BYTES",
    "INSTALL_HINT",
    "MANIFEST_NAME",
    "default_workers",
    "start_ray",
    "extract_to_folder",
    "read_feature_folder",
]

INSTALL_HINT = "pip install -r requirements-ray.txt (or pip install 'layer-explorer[ray]')"
MANIFEST_NAME = "_manifest.json"
_STAGING = "_staging"
_FORMAT = 1
_DECODE_MEMORY = 512 * 2**20  # measured: a decode task peaks near 220 MiB on 128-image blocks
MAX_FILE_BYTES = 256 * 2**20  # gather_paths' cap for local files: the same rule on every engine
_META_COLUMNS = ("path", "label", "error")
_LOG = logging.getLogger(__name__)


class RayNotInstalledError(LayerExplorerError):
    """``--engine ray`` was asked for, but Ray Data cannot be imported."""


class FileTooLargeError(LayerExplorerError):
    """An input file over :data:`MAX_FILE_BYTES`; refused before decoding."""


class RayRunError(LayerExplorerError):
    """Ray could not be reached or the run stopped; what was committed is kept for the rerun."""


class FeatureFolderError(LayerExplorerError):
    """The output folder cannot be used: other settings' features, a file where a folder is needed, damage."""


@dataclass(frozen=True)
class ExtractionPlan:
    """What to compute, as plain values that travel to every worker (each rebuilds the model from it).

    ``input_size`` is the backbone's as loaded (None: a native-size model). ``runtime`` names the
    inference runtime each worker uses (``auto``, ``tensorflow`` or ``openvino``; see
    :mod:`extractor.runtime`): workers on one machine share the on-disk conversion cache.
    """

    backbone: str
    weights: str
    layers: tuple[str, ...]
    poolings: tuple[str, ...]
    input_size: tuple[int, int] | None
    resize: str = "stretch"
    precision: str = "float32"
    runtime: str = "tensorflow"
    batch_size: int = 32
    weights_description: str = ""

    @classmethod
    def from_backbone(cls, backbone: Backbone, layers: Sequence[str], poolings: Sequence[str], *,
                      source: str | None = None, resize: str = "stretch", precision: str = "float32",
                      runtime: str = "auto", batch_size: int = 32) -> ExtractionPlan:
        """The plan for a backbone loaded on the driver, checked by building its extractor once here.

        ``source`` is what the backbone was loaded from (a registry name or a ``.keras`` path that
        every worker can read; default the registry name). Building the extractor here validates
        layers, poolings and resize before any worker starts.
        """
        # Validation only: TensorFlow here, so the driver never pays for a conversion the workers make.
        fx = FeatureExtractor(backbone, list(layers), list(poolings), precision=precision, resize=resize,
                              runtime="tensorflow")
        size = backbone.input_size
        return cls(backbone=str(source or backbone.name), weights=backbone.weights_request, layers=tuple(fx.layers),
                   poolings=tuple(fx.poolings), input_size=None if size is None else (int(size[0]), int(size[1])),
                   resize=resize, precision=precision, runtime=runtime, batch_size=int(batch_size),
                   weights_description=backbone.weights.description)

    @property
    def decode_size(self) -> tuple[int, int] | None:
        """The size images are resized to before the network (None: each at its own size)."""
        return None if self.resize == "native" else self.input_size

    @property
    def keys(self) -> list[str]:
        from .features import feature_key

        return [feature_key(layer, pooling) for layer in self.layers for pooling in self.poolings]

    def identity(self) -> dict:
        """The settings that decide the features: a rerun into the same folder must match them."""
        return {"backbone": self.backbone, "weights": self.weights, "layers": list(self.layers),
                "poolings": list(self.poolings), "input_size": None if self.input_size is None else list(self.input_size),
                "resize": self.resize, "precision": self.precision, "runtime": self.runtime}


@dataclass(frozen=True)
class RayOptions:
    """How to run: where Ray is, how many workers, what each one holds.

    ``address`` None starts Ray inside this process (no cluster needed); ``"auto"`` or
    ``HOST:PORT`` joins a running cluster. ``workers`` None leaves one CPU for reading and
    decoding (:func:`default_workers`). ``rows_per_shard`` is the unit a killed run can lose.
    """

    address: str | None = None
    workers: int | None = None
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    rows_per_shard: int = 1024
    num_cpus: int | None = None  # embedded Ray only; default: every CPU of this machine
    object_store_memory: int | None = None  # embedded Ray only; bytes

    def __post_init__(self):
        if self.workers is not None and (not isinstance(self.workers, int) or self.workers < 1):
            raise LayerExplorerError(f"--workers must be a positive integer; got {self.workers!r}.")
        if self.gpus_per_worker < 0 or self.cpus_per_worker <= 0:
            raise LayerExplorerError(f"--gpus-per-worker must be 0 or more and CPUs per worker above 0; got "
                                     f"{self.gpus_per_worker!r} GPUs, {self.cpus_per_worker!r} CPUs.")
        if not isinstance(self.rows_per_shard, int) or self.rows_per_shard < 1:
            raise LayerExplorerError(f"rows per shard must be a positive integer; got {self.rows_per_shard!r}.")


@dataclass
class FolderRun:
    """What one run did: rows written now, rows found already committed, every failure so far."""

    out: Path
    rows_written: int
    rows_total: int
    already_done: int
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0
    ray_start_seconds: float = 0.0
    workers: int = 0


def default_workers(cpus: float, cpus_per_worker: float = 1.0, gpus: float = 0.0, gpus_per_worker: float = 0.0) -> int:
    """Actors for a cluster with ``cpus``: every CPU but one, so reading and decoding always get one.

    An actor pool holding every CPU starves the read and decode tasks that feed it, and Ray
    Data then stalls (on 2 cores: 1 worker). With GPUs, one actor per ``gpus_per_worker`` share.

    Example:
        >>> default_workers(2), default_workers(16), default_workers(1)
        (1, 15, 1)
        >>> default_workers(16, gpus=4, gpus_per_worker=1)
        4
    """
    if gpus_per_worker > 0:
        return max(1, int(gpus // gpus_per_worker))
    return max(1, int((cpus - 1) // cpus_per_worker))


# ------------------------------------------------------------------------------------------------
# Ray itself (an optional extra: imported here, only when asked for)

def _ray(embedded: bool = False):
    if embedded and "ray" not in sys.modules:
        # On Linux Ray turns 127.0.0.1 into the machine's outward address (so that other nodes could
        # join); with clustering off, an embedded instance binds and advertises loopback only.
        # Ray reads this when it is first imported.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise RayNotInstalledError(f"--engine ray needs Ray Data, which is not installed ({exc}); "
                                   f"install it with: {INSTALL_HINT}") from None
    return ray


def start_ray(options: RayOptions) -> float:
    """Connect to Ray (or start it in this process); seconds it took, 0 when already connected.

    The embedded instance listens on loopback only (when this call is the first to import Ray),
    with no dashboard and no usage statistics, so a laptop run opens nothing to the network.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray = _ray(embedded=not options.address)
    if ray.is_initialized():
        return 0.0
    start = time.perf_counter()
    common = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR,
              "ignore_reinit_error": True}
    try:
        if options.address:
            ray.init(address=options.address, **common)
        else:
            ray.init(num_cpus=options.num_cpus or os.cpu_count() or 1,
                     object_store_memory=options.object_store_memory, _node_ip_address="127.0.0.1", **common)
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError... for the same user mistake
        where = f"the cluster at {options.address!r}" if options.address else "an embedded Ray instance"
        raise RayRunError(f"could not start or join {where} ({type(exc).__name__}: {_first_line(exc)}). "
                          "For a cluster, check `ray status` on its head node and pass --address auto or "
                          "HOST:PORT; without --address Ray starts here.") from None
    return time.perf_counter() - start


def _user_error(exc: BaseException) -> BaseException | None:
    """The core's own error inside Ray's wrappers (remote tracebacks are for logs, not users)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        cause = getattr(exc, "cause", None)
        if isinstance(cause, LayerExplorerError):
            return cause
        exc = cause if isinstance(cause, BaseException) else exc.__cause__
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else ""


# ------------------------------------------------------------------------------------------------
# the per-batch steps (module-level so Ray can ship them to workers)

def _decode_batch(batch: pa.Table, *, names: dict, size, resize: str) -> pa.Table:
    """Bytes -> resized uint8 pixels with the core's decoder; a refusal goes into ``error``."""
    out = {"path": [], "label": [], "pixels": [], "height": [], "width": [], "error": []}
    for data, key in zip(batch.column("bytes").to_pylist(), batch.column("path").to_pylist(), strict=True):
        name, label = names.get(key, (key, None))
        pixels, error = None, None
        try:
            if len(data) > MAX_FILE_BYTES:
                raise FileTooLargeError(f"{len(data) / 2**20:,.1f} MiB is over the {MAX_FILE_BYTES / 2**20:,.1f} MiB "
                                        "per-file limit; downscale it.")
            decoded = load_image(data, name, None if size is None else tuple(size), resize)
            pixels = np.ascontiguousarray(decoded.pixels)
        except InvalidImageError as exc:  # the decoder carries the name and the reason apart
            error = exc.reason or str(exc)
        except LayerExplorerError as exc:  # e.g. FileTooLargeError: its message is the reason
            error = str(exc)
        out["path"].append(name)
        out["label"].append(label)
        out["pixels"].append(None if pixels is None else pixels.tobytes())
        out["height"].append(0 if pixels is None else pixels.shape[0])
        out["width"].append(0 if pixels is None else pixels.shape[1])
        out["error"].append(error)
    return pa.table({"path": pa.array(out["path"], pa.string()), "label": pa.array(out["label"], pa.string()),
                     "pixels": pa.array(out["pixels"], pa.binary()), "height": pa.array(out["height"], pa.int32()),
                     "width": pa.array(out["width"], pa.int32()), "error": pa.array(out["error"], pa.string())})


def _build_extractor(plan: ExtractionPlan) -> FeatureExtractor:
    """THE one place a worker builds its extractor from the plan."""
    backbone = load_backbone(plan.backbone, weights=plan.weights,
                             input_size="native" if plan.input_size is None else plan.input_size)
    return FeatureExtractor(backbone, list(plan.layers), list(plan.poolings), precision=plan.precision,
                            resize=plan.resize, runtime=plan.runtime)


class _EmbedBatch:
    """The actor: builds the extractor once, then maps decoded batches to feature columns."""

    def __init__(self, plan: ExtractionPlan, threads: int):
        import tensorflow as tf

        # TensorFlow and OpenVINO size their pools to the whole machine; an actor owns only its CPUs.
        threads = max(1, int(threads))
        os.environ[THREADS_ENV] = str(threads)
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))
        except RuntimeError:  # a reused worker process whose TensorFlow already started keeps its pools
            _LOG.warning("TensorFlow was already running in this Ray worker; its thread pools were not resized")
        self.plan = plan
        self.fx = _build_extractor(plan)
        self.keys = list(self.fx.keys)

    def __call__(self, batch: pa.Table) -> pa.Table:
        n = batch.num_rows
        heights = batch.column("height").to_numpy(zero_copy_only=False)
        widths = batch.column("width").to_numpy(zero_copy_only=False)
        pixels = batch.column("pixels").to_pylist()
        errors = batch.column("error").to_pylist()
        rows: dict[str, list] = {key: [None] * n for key in self.keys}
        by_shape: dict[tuple[int, int], list[int]] = {}
        for i in range(n):
            if errors[i] is None:
                by_shape.setdefault((int(heights[i]), int(widths[i])), []).append(i)
        for (h, w), idx in by_shape.items():  # one group unless resize is "native"
            for start in range(0, len(idx), self.plan.batch_size):
                part = idx[start:start + self.plan.batch_size]
                images = np.stack([np.frombuffer(pixels[i], np.uint8).reshape(h, w, 3) for i in part])
                out = self.fx.run_batch(images)
                for key in self.keys:
                    values = out[key].reshape(len(part), -1).astype(np.float32, copy=False)
                    for j, i in enumerate(part):
                        rows[key][i] = values[j]
        cols = {"path": batch.column("path"), "label": batch.column("label"), "error": batch.column("error")}
        for key in self.keys:
            cols[key] = _vectors_column(rows[key])
        return pa.table(cols)


def _vectors_column(vectors: list) -> pa.Array:
    """fixed_size_list<float32>[C], null where the image failed (plain Arrow, readable anywhere)."""
    width = next((len(v) for v in vectors if v is not None), None)
    if width is None:
        return pa.nulls(len(vectors), pa.list_(pa.float32()))
    if any(v is not None and len(v) != width for v in vectors):  # "native" with a size-dependent pooling
        return pa.array([None if v is None else v.tolist() for v in vectors], pa.list_(pa.float32()))
    flat = np.concatenate([np.zeros(width, np.float32) if v is None else v for v in vectors])
    mask = pa.array([v is None for v in vectors])
    return pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), width, mask=mask)


# ------------------------------------------------------------------------------------------------
# the output folder

def _committed_files(out: Path) -> list[Path]:
    return sorted(p for p in out.glob("*.parquet") if p.is_file())


def _read_index(path: Path) -> pa.Table | None:
    """``path`` and ``error`` of a shard, or None when it is incomplete (a killed writer leaves no footer)."""
    try:
        meta = pq.read_metadata(path)
        table = pq.read_table(path, columns=["path", "error"])
    except (OSError, pa.ArrowInvalid):
        return None
    return table if table.num_rows == meta.num_rows else None


def _commit_staged(out: Path) -> None:
    """Move every complete shard from ``_staging`` into the folder; delete the incomplete ones."""
    staging = out / _STAGING
    if not staging.is_dir():
        return
    for path in sorted(staging.rglob("*")):
        if not path.is_file():
            continue
        if path.suffix == ".parquet" and _read_index(path) is not None:
            os.replace(path, out / path.name)  # same file system: atomic
        else:
            path.unlink()
    shutil.rmtree(staging, ignore_errors=True)


def _load_manifest(out: Path) -> dict | None:
    path = out / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise FeatureFolderError(f"{path} cannot be read ({type(exc).__name__}); delete the folder or pick "
                                 "another --out folder.") from None


def _write_manifest(out: Path, manifest: dict) -> None:
    tmp = out / (MANIFEST_NAME + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2))
    os.replace(tmp, out / MANIFEST_NAME)


def _scan(out: Path) -> tuple[dict[str, str | None], int]:
    """Every committed path with its error (None when it has features), and the number of rows."""
    done: dict[str, str | None] = {}
    rows = 0
    for path in _committed_files(out):
        index = _read_index(path)
        if index is None:
            raise FeatureFolderError(f"shard {path.name} in {out} is damaged; delete it and rerun the same command "
                                     "(its images are extracted again).")
        for name, error in zip(index.column("path").to_pylist(), index.column("error").to_pylist(), strict=True):
            if name in done:
                raise FeatureFolderError(f"{name} is in more than one shard of {out}; the folder was written by "
                                         "something else. Use a new --out folder.")
            done[name] = error
        rows += index.num_rows
    return done, rows


def _prepare_folder(out: Path, plan: ExtractionPlan) -> None:
    if out.suffix.lower() in (".npz", ".parquet") or (out.exists() and not out.is_dir()):
        raise FeatureFolderError(f"--engine ray writes a folder of Parquet shards, but --out {out} is a file name; "
                                 f"give a folder, e.g. --out {out.with_suffix('')}/ (or use --engine local for one file).")
    out.mkdir(parents=True, exist_ok=True)
    manifest = _load_manifest(out)
    if manifest is None:
        if any(p.name not in (_STAGING,) for p in out.iterdir()):
            raise FeatureFolderError(f"--out {out} is a folder with other files in it and no {MANIFEST_NAME}; "
                                     "give an empty or new folder.")
        return
    if manifest.get("settings") != plan.identity():
        theirs = manifest.get("settings", {})
        diff = [k for k, v in plan.identity().items() if theirs.get(k) != v]
        raise FeatureFolderError(f"--out {out} holds features made with other settings ({', '.join(diff)} differ); "
                                 "rerun with the same settings to resume, or give a new --out folder.")


def _manifest(plan: ExtractionPlan, out: Path, done: dict, rows: int, complete: bool, extra: dict) -> dict:
    failures = [{"name": name, "reason": error} for name, error in sorted(done.items()) if error is not None]
    return {
        "format": _FORMAT,
        "engine": "ray",
        "settings": plan.identity(),
        "weights_description": plan.weights_description,
        "keys": plan.keys,
        "columns": {"path": "the image file, as given or found", "label": "its class folder (null: none)",
                    "error": "why it has no features (null: it has them)",
                    "features": "one fixed_size_list<float32> column per layer/pooling"},
        "row_order": "shards are unordered; sort by path (read_feature_folder does)",
        "complete": complete,
        "counts": {"rows": rows, "images": rows - len(failures), "failures": len(failures),
                   "shards": len(_committed_files(out))},
        "failures": failures,
        "shards": [p.name for p in _committed_files(out)],
        **extra,
    }


def extract_to_folder(plan: ExtractionPlan, files: Sequence[ImageFile], out: str | os.PathLike,
                      options: RayOptions = RayOptions(),
                      progress: Callable[[int, int | None], None] | None = None) -> FolderRun:
    """Extract ``files`` into the folder ``out`` on Ray; resumes a previous run of the same settings.

    Raises :class:`FeatureFolderError` for a file name, a foreign folder or other settings,
    :class:`RayNotInstalledError` without Ray.
    """
    start = time.perf_counter()
    out = Path(out)
    _prepare_folder(out, plan)
    ray = _ray(embedded=not options.address)
    _commit_staged(out)  # what a killed run left complete counts; the rest is deleted
    done, rows_before = _scan(out)
    by_key: dict[str, tuple[str, str | None]] = {}
    for f in files:
        if f.name not in done:
            by_key[os.path.abspath(f.path)] = (f.name, f.label)
    extra = {"ray_version": ray.__version__}
    _write_manifest(out, _manifest(plan, out, done, rows_before, complete=not by_key, extra=extra))
    ray_seconds, workers = 0.0, 0
    if by_key:
        ray_seconds = start_ray(options)
        try:
            workers = _run_pipeline(ray, plan, by_key, out / _STAGING, options, progress)
        except Exception as exc:  # a worker died, a file vanished, the cluster went away
            _commit_staged(out)
            cause = _user_error(exc)
            if cause is not None:  # e.g. a worker could not load the weights: the core's own message
                raise RayRunError(f"a Ray worker refused the job: {' '.join(str(cause).split())}") from None
            raise RayRunError(f"the Ray run stopped ({type(exc).__name__}: {_first_line(exc)}); the shards "
                              f"written so far are kept in {out}. Rerun the same command to finish.") from None
        _commit_staged(out)
    done_after, rows_after = _scan(out)
    missing = [name for name, _ in by_key.values() if name not in done_after]
    if missing:
        raise FeatureFolderError(f"{len(missing)} images were not written (first: {missing[0]}); rerun the same "
                                 "command to extract them.")
    extra.update({"workers": workers, "address": options.address or "embedded"})
    _write_manifest(out, _manifest(plan, out, done_after, rows_after, complete=True, extra=extra))
    failures = [Failure(name, error) for name, error in sorted(done_after.items()) if error is not None]
    return FolderRun(out=out, rows_written=rows_after - rows_before, rows_total=rows_after,
                     already_done=rows_before, failures=failures, seconds=time.perf_counter() - start,
                     ray_start_seconds=ray_seconds, workers=workers)


def _run_pipeline(ray, plan: ExtractionPlan, by_key: dict, staging: Path, options: RayOptions, progress) -> int:
    """read_binary_files -> decode -> actor pool -> write_parquet; the number of workers used."""
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    resources = ray.cluster_resources()
    workers = options.workers or default_workers(resources.get("CPU", 1), options.cpus_per_worker,
                                                 resources.get("GPU", 0), options.gpus_per_worker)
    paths = sorted(by_key)
    block_rows = max(1, min(options.rows_per_shard, plan.batch_size * 4))
    # Blocks of a few batches each, and at least two per worker so that none of them idles.
    blocks = min(len(paths), max(math.ceil(len(paths) / block_rows), 2 * workers))
    ds = ray.data.read_binary_files(paths, include_paths=True, override_num_blocks=blocks)
    # The memory hint (a block, plus one image at the pixel cap decoded and resized) also keeps Ray
    # from fusing decoding into the actors: decoding then runs as tasks on the CPU the pool leaves
    # free, in parallel with the forward passes, instead of in turn with them.
    ds = ds.map_batches(_decode_batch, batch_format="pyarrow", batch_size=None, memory=_DECODE_MEMORY,
                        fn_kwargs={"names": by_key, "size": plan.decode_size, "resize": plan.resize})
    ds = ds.map_batches(_EmbedBatch, batch_format="pyarrow", batch_size=plan.batch_size,
                        compute=ray.data.ActorPoolStrategy(size=workers),
                        fn_constructor_kwargs={"plan": plan, "threads": options.cpus_per_worker},
                        num_cpus=options.cpus_per_worker, num_gpus=options.gpus_per_worker or None)
    staging.mkdir(parents=True, exist_ok=True)
    ds.write_parquet(str(staging), min_rows_per_file=options.rows_per_shard, max_rows_per_file=options.rows_per_shard)
    if progress is not None:
        progress(len(paths), len(paths))
    return workers


# ------------------------------------------------------------------------------------------------
# reading it back (plain pyarrow; no Ray needed)

def read_feature_folder(out: str | os.PathLike) -> tuple[ExtractionResult, dict]:
    """The folder's features sorted by path, as the local engine's result, and its manifest.

    Rows with an ``error`` become ``failures``; the others are the features, ``(N, C)`` float32.

    Example:
        >>> result, manifest = read_feature_folder("feats/")  # doctest: +SKIP
        >>> manifest["counts"]["failures"] == len(result.failures)  # doctest: +SKIP
        True
    """
    out = Path(out)
    manifest = _load_manifest(out)
    if manifest is None:
        raise FeatureFolderError(f"{out} has no {MANIFEST_NAME}; it is not a folder written by --engine ray.")
    files = _committed_files(out)
    keys = list(manifest["keys"])
    table = pa.concat_tables([pq.read_table(p) for p in files], promote_options="permissive") if files else None
    if table is None or table.num_rows == 0:
        raise FeatureFolderError(f"{out} holds no rows yet; run the extraction into it.")
    table = table.sort_by("path")
    errors = table.column("error").to_pylist()
    good = [i for i, e in enumerate(errors) if e is None]
    good_table = table.take(pa.array(good, pa.int64()))
    features = {}
    for key in keys:
        column = good_table.column(key).combine_chunks()
        if pa.types.is_fixed_size_list(column.type):
            features[key] = column.flatten().to_numpy().reshape(len(good), column.type.list_size).astype(np.float32)
        else:
            features[key] = np.array(column.to_pylist(), dtype=object)
    names = good_table.column("path").to_pylist()
    failures = [Failure(n, e) for n, e in zip(table.column("path").to_pylist(), errors, strict=True) if e is not None]
    result = ExtractionResult(features=features, names=names, labels=good_table.column("label").to_pylist(),
                              indices=list(range(len(names))), failures=failures)
    return result, manifest

