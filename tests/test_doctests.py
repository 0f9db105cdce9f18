"""The docstring examples of the core run as doctests (``--doctest-modules`` style, one test per module).

Examples stay small: tiny arrays, ``weights="none"``, the shipped demo-shapes network. The few
names an example takes as given (``png_bytes``, ``zip_bytes``, ``images``, ...) come from
:func:`_namespace`, as pytest's ``doctest_namespace`` would provide them. An example that truly
needs ImageNet weights or the internet carries ``# doctest: +SKIP``.
"""

from __future__ import annotations

import doctest
import importlib
import io
import os
import zipfile

import numpy as np
import pytest
from PIL import Image

MODULES = [
    "extractor.errors",
    "extractor.runtime",
    "extractor.pooling",
    "extractor.images",
    "extractor.sources",
    "extractor.export",
    "extractor.reduce",
    "extractor.scoring",
    "extractor.demo",
    "extractor.demo_cnn",
    "extractor.layers",
    "extractor.features",
    "extractor.receptive_field",
    "extractor.channels",
    "extractor.cka",
    "extractor.activation_max",
    "extractor.explain",
    "extractor.feature_health",
    "extractor.calibration",
    "extractor.distributed",
    "extractor.similarity",
    "ui.config",
    "ui.calibrated",
    "ui.image_set",
    "ui.inference_slot",
    "ui.cache",
    "ui.state",
    "ui.embedding_maps",
    "ui.reclaim",
    "ui.private_cache",
    "ui.rendered",
    "ui.native_threads",
    "ui.session_watch",
]


def _encoded(pixels: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt)
    return buf.getvalue()


def _namespace(tmp_path) -> dict:
    import extractor
    from extractor.demo import load_demo_set

    rng = np.random.default_rng(0)
    picture = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    png_bytes, jpeg_bytes = _encoded(picture, "PNG"), _encoded(picture, "JPEG")
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("cats/a.png", png_bytes)
        zf.writestr("cats/b.png", _encoded(picture[::-1].copy(), "PNG"))
        zf.writestr("notes.txt", b"not an image")
    (tmp_path / "cat.jpg").write_bytes(jpeg_bytes)
    data = tmp_path / "data"
    for rel, pixels in (("top.png", picture), ("cats/a.png", picture[::-1]), ("dogs/b.png", picture[:, ::-1])):
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_bytes(_encoded(np.ascontiguousarray(pixels), "PNG"))
    return {
        **{name: getattr(extractor, name) for name in extractor.__all__},  # the public API, as examples use it
        "np": np,
        "load_demo_set": load_demo_set,
        "png_bytes": png_bytes,
        "png": png_bytes,
        "jpeg_bytes": jpeg_bytes,
        "jpg_bytes": jpeg_bytes,
        "zip_bytes": zipped.getvalue(),
        "tmp_path": tmp_path,
        "images": load_demo_set("shapes", per_class=3, size=64).images[:20],
    }


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that read "cat.jpg" or "data/" find the files made here
    module = importlib.import_module(name)
    # The module's own names win over the shared namespace: reduce.check_features is not the
    # public extractor.check_features (feature_health), and an example means its own module's.
    globs = {**_namespace(tmp_path), **vars(module)}
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = [t for t in finder.find(module, name, globs=globs) if t.examples]
    assert tests, f"{name} has no examples left: take it out of MODULES"
    out = io.StringIO()
    for test in tests:
        runner.run(test, out=out.write)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, out.getvalue()


def test_every_core_module_with_examples_is_listed():
    root = os.path.join(os.path.dirname(__file__), "..", "extractor")
    with_examples = {f"extractor.{f[:-3]}" for f in os.listdir(root)
                     if f.endswith(".py") and ">>>" in open(os.path.join(root, f), encoding="utf-8").read()}
    # Modules whose examples build ImageNet-sized networks or train: run by their own tests instead.
    heavy = {"extractor.backbones", "extractor.training", "extractor.sweep", "extractor.audit", "extractor.__init__"}
    assert with_examples - heavy <= set(MODULES)
