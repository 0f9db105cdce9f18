"""How fast the analysis pages answer: measured figures, printed, no assertions.

1. Re-rendering the Embeddings page (AppTest, the default shapes set through demo-shapes) after
   switching the pooling, the layers, or a display option, once the features are cached, and
   how many forward passes that took (counted by wrapping ``FeatureExtractor._run``; target 0,
   < 0.5 s per rerun).
2. PCA of 2,000 × 2,048 features (target < 1 s).
3. t-SNE of 2,000 points of 2,048 features (PCA to 50 first; target < 20 s).
4. The full layer sweep on 600 shapes images through demo-shapes: extraction (one pass for
   every block layer × avg/max/gem/avgmax), layer timing, scoring; and the best accuracy per block.
5. What a user waits for, in the real browser (`streamlit run` on loopback, headless Chromium via
   Playwright): click → settled (benchmarks/browser_timing.py: the rerun it caused has ended,
   nothing stale, every chart drawn, every image loaded) on the default demo set (72 images,
   3 layers × 2 poolings = 6 maps): a pooling removed / added and a layer removed / added on
   Embeddings, a box dragged on a map, and a block switch on Feature maps (target: median < 0.7 s).
   ``--against REV`` times git revision REV (``git archive``, nothing written to the repository)
   on a second server side by side, click by click, so the ratio holds under load from other
   processes; ``--browser-baseline`` does the same with this checkout and Streamlit's default
   post-run heap handling (``runner.postScriptGC`` on, no ``gc.freeze``).

Usage:
    python benchmarks/bench_analysis.py            # everything
    python benchmarks/bench_analysis.py --quick    # fewer reruns, 1,000 points, 210 images
    python benchmarks/bench_analysis.py --browser-only --against main     # just 5, main vs this checkout
    python benchmarks/bench_analysis.py --browser-only --browser-baseline   # just 5, GC settings compared
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

APP = str(ROOT / "app.py")
sys.path.insert(0, str(ROOT / "tests"))

import browser_timing  # noqa: E402
from browser_timing import CHART  # noqa: E402

THINK_MS = 1000


def features_like_cnn(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """Non-negative, low-rank-plus-noise vectors with a decaying spectrum, like pooled ReLU features."""
    rng = np.random.default_rng(seed)
    rank = 64
    basis = rng.normal(size=(rank, dim)) * (1.0 / np.arange(1, rank + 1))[:, None]
    X = rng.normal(size=(n, rank)) @ basis + 0.05 * rng.normal(size=(n, dim))
    return np.maximum(X, 0).astype(np.float32)


def bench_rerender(repeats: int) -> None:
    from streamlit.testing.v1 import AppTest

    from extractor import FeatureExtractor

    calls = {"n": 0}
    original = FeatureExtractor._run

    def counting(self, batch):
        calls["n"] += 1
        return original(self, batch)

    FeatureExtractor._run = counting
    try:
        at = AppTest.from_file(APP, default_timeout=300)
        start = time.perf_counter()
        at.run()
        at.switch_page("pages/embeddings.py").run()
        first = time.perf_counter() - start
        assert not at.exception, [e.value for e in at.exception]
        print(f"Embeddings page, first open (network build + one forward pass + 6 PCA maps): {first:.2f} s, "
              f"{calls['n']} forward passes")
        # Warm every combination once (PCA maps are cached), then measure switching between them.
        pools = [["avg", "max"], ["gem", "avgmax"], ["max"], ["avg", "gem"]]
        layer_sets = [["block2_pool", "block3_pool", "block4_pool"], ["block1_pool", "block4_pool"], ["block4_pool"]]
        for p in pools:
            at.multiselect(key="emb_poolings").set_value(p).run()
        for layers in layer_sets:
            at.multiselect(key="emb_layers__demo-shapes").set_value(layers).run()
        at.multiselect(key="emb_layers__demo-shapes").set_value(layer_sets[0]).run()
        before = calls["n"]
        timings: dict[str, list[float]] = {"pooling": [], "layers": [], "point size": [], "colour": []}
        for _r in range(repeats):
            for p in pools:
                t = time.perf_counter()
                at.multiselect(key="emb_poolings").set_value(p).run()
                timings["pooling"].append(time.perf_counter() - t)
            at.multiselect(key="emb_poolings").set_value(["avg", "max"]).run()
            for layers in layer_sets:
                t = time.perf_counter()
                at.multiselect(key="emb_layers__demo-shapes").set_value(layers).run()
                timings["layers"].append(time.perf_counter() - t)
            at.multiselect(key="emb_layers__demo-shapes").set_value(layer_sets[0]).run()
            for size in (40, 120):
                t = time.perf_counter()
                at.slider(key="emb_point_size").set_value(size).run()
                timings["point size"].append(time.perf_counter() - t)
            for colour in ("none", "label"):
                t = time.perf_counter()
                at.radio(key="emb_color").set_value(colour).run()
                timings["colour"].append(time.perf_counter() - t)
        assert not at.exception, [e.value for e in at.exception]
        print("Re-render after a switch, features cached (AppTest, whole script incl. sidebar; target < 0.5 s):")
        for what, values in timings.items():
            print(f"  {what:<11} median {statistics.median(values):.3f} s, max {max(values):.3f} s over {len(values)} reruns")
        print(f"  forward passes during all of these: {calls['n'] - before} (target 0)")

        # A new layer × pooling combination that was never drawn: only its PCA is new.
        at.multiselect(key="emb_poolings").set_value(["avgmax"]).run()
        at.multiselect(key="emb_layers__demo-shapes").set_value(["block1_pool", "block2_pool"]).run()
        t = time.perf_counter()
        at.multiselect(key="emb_layers__demo-shapes").set_value(["block1_pool", "block2_pool", "block3_pool"]).run()
        print(f"  first view of a new layer (one new PCA map): {time.perf_counter() - t:.3f} s, "
              f"forward passes so far {calls['n'] - before}")
    finally:
        FeatureExtractor._run = original


def bench_maps(n: int) -> None:
    from extractor.reduce import pca_2d, tsne_2d

    X = features_like_cnn(n, 2048)
    pca_2d(X[:200])  # import sklearn outside the timing
    times = []
    for _ in range(3):
        t = time.perf_counter()
        emb = pca_2d(X)
        times.append(time.perf_counter() - t)
    print(f"PCA of {n:,} × 2,048: best {min(times):.3f} s, median {statistics.median(times):.3f} s (target < 1 s); "
          f"explained {emb.explained_variance[0]:.2f} + {emb.explained_variance[1]:.2f}")
    t = time.perf_counter()
    emb = tsne_2d(X)
    print(f"t-SNE of {n:,} points × 2,048 (PCA to 50 first, 1,000 iterations): {time.perf_counter() - t:.1f} s "
          f"(target < 20 s); notes: {' '.join(emb.notes)}")


def bench_sweep(per_class: int, total: int) -> None:
    from extractor import FeatureExtractor, load_backbone
    from extractor.demo import load_demo_set
    from extractor.scoring import recommend
    from extractor.sweep import layer_costs, score_sweep, sweep_layers

    demo = load_demo_set("shapes", per_class=per_class, size=64)
    order = np.argsort([i % per_class for i in range(len(demo.images))], kind="stable")[:total]  # balanced cut
    images = [demo.images[i] for i in order]
    labels = [demo.labels[i] for i in order]
    backbone = load_backbone("demo-shapes")
    layers = sweep_layers(backbone)
    poolings = ["avg", "max", "gem", "avgmax"]
    start = time.perf_counter()
    fx = FeatureExtractor(backbone, layers, poolings)
    t = time.perf_counter()
    t_build = t - start
    result = fx.extract(images, batch_size=32)
    t_extract = time.perf_counter() - t
    t = time.perf_counter()
    probe = np.random.default_rng(0).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
    costs = layer_costs(backbone, layers, probe)
    t_costs = time.perf_counter() - t
    t = time.perf_counter()
    depths = {name: i for i, name in enumerate(layers)}
    table = score_sweep(result.features, labels, depths=depths, costs_ms=costs)
    t_score = time.perf_counter() - t
    total_s = time.perf_counter() - start
    print(f"Full sweep on {len(images)} shapes images ({len(layers)} layers × {len(poolings)} poolings = "
          f"{len(table)} configurations) through demo-shapes: {total_s:.1f} s in all")
    print(f"  extractor build {t_build:.1f} s · extraction (one pass per batch, all 16 outputs) {t_extract:.1f} s · "
          f"layer timing {t_costs:.1f} s · "
          f"scoring (5-fold k-NN + linear probe + silhouette) {t_score:.1f} s")
    best = table.groupby("layer", sort=False).agg(linear=("linear_acc", "max"), knn=("knn_acc", "max"),
                                                  silhouette=("silhouette", "max"), ms=("ms_per_image", "first"))
    print("  best per block:   linear probe   k-NN   silhouette   ms/image")
    for layer, row in best.iterrows():
        print(f"    {layer:<12} {row['linear']:>12.1%} {row['knn']:>6.1%} {row['silhouette']:>12.2f} {row['ms']:>10.2f}")
    rec = recommend(table)
    print(f"  recommendation: {rec.layer} / {rec.pooling} — {rec.reason}")


def _multiselect(page, label: str):
    return page.locator('[data-testid="stMultiSelect"]').filter(has_text=label)


def _remove_chip(page, label: str, option: str) -> None:
    _multiselect(page, label).get_by_role("button", name=f"Remove {option}").click()


def _add_chip(page, label: str, option: str):
    """Open the multiselect and type ``option`` (no rerun yet); return the Enter that adds it (the timed part).

    The keyboard, not a click on the open list: a click on an option sometimes closed the list
    without choosing it (no rerun, so nothing to time).
    """
    page.bring_to_front()  # before opening: a page brought to the front afterwards closes its open list
    box = _multiselect(page, label).locator("input").first
    box.click()
    box.fill(option)
    page.get_by_role("option", name=option, exact=True).wait_for(timeout=30_000)
    return lambda: box.press("Enter")


def _drag(page, chart_index: int, shift: float):
    page.bring_to_front()  # before the button goes down (see _add_chip)
    chart = page.locator(CHART).nth(chart_index)
    chart.scroll_into_view_if_needed()
    box = chart.bounding_box()
    x0, y0 = box["x"] + 35 + shift * 40, box["y"] + 5
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0 + box["width"] * 0.45, y0 + 230, steps=8)
    return page.mouse.up


def browser_session(browser, url: str, repeats: int, think_ms: int):
    """The timed clicks on one server, one page of ``browser``: yields ``(what, seconds)`` per click.

    A generator, so two servers can be driven click by click in turn (side by side under the same load).
    """
    from browser_timing import settle

    pooling = "max (global max)"
    page = browser_timing.new_page(browser, viewport={"width": 1400, "height": 3600})
    try:
        page.goto(url, timeout=120_000)
        settle(page)
        page.goto(f"{url}/embedding-maps", timeout=120_000)
        page.locator(CHART).nth(6).wait_for(timeout=300_000)
        settle(page)
        browser_timing.install(page)
        # Warm every view once (maps cached on the server), then time the same switches again.
        for timed in (False, True):
            for _ in range(repeats if timed else 1):
                t = browser_timing.timed(page, lambda: _remove_chip(page, "Poolings", pooling), think_ms)
                yield ("Embeddings: pooling switch", t) if timed else None
                page.wait_for_timeout(think_ms)
                t = browser_timing.timed(page, _add_chip(page, "Poolings", pooling), 0)
                page.keyboard.press("Escape")  # close the list it stays open on
                yield ("Embeddings: pooling switch", t) if timed else None
                t = browser_timing.timed(page, lambda: _remove_chip(page, "Layers", "block2_pool"), think_ms)
                yield ("Embeddings: layer switch", t) if timed else None
                page.wait_for_timeout(think_ms)
                t = browser_timing.timed(page, _add_chip(page, "Layers", "block2_pool"), 0)
                page.keyboard.press("Escape")
                yield ("Embeddings: layer switch", t) if timed else None
                for shift in (0.0, 1.0):
                    page.wait_for_timeout(think_ms)
                    t = browser_timing.timed(page, _drag(page, 6, shift), 0)
                    yield ("Embeddings: drag-select", t) if timed else None
        page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name="Feature maps").click()
        settle(page)
        page.get_by_label("Block", exact=True).wait_for(timeout=300_000)
        settle(page)
        browser_timing.install(page)
        blocks = page.get_by_label("Block", exact=True)
        for timed in (False, True):
            for _ in range(repeats if timed else 1):
                for index in (0, 1, 2, 3):
                    def pick(index=index):
                        blocks.click()
                        page.get_by_role("option").nth(index).click()
                    t = browser_timing.timed(page, pick, think_ms)
                    yield ("Feature maps: block switch", t) if timed else None
    finally:
        page.close()


def bench_browser(repeats: int, think_ms: int, baseline: bool, against: str | None = None) -> None:
    """Time the clicks on this checkout, and side by side on a baseline: revision ``against``, or
    (``baseline``) this checkout with Streamlit's default post-run heap handling."""
    import tempfile
    from contextlib import ExitStack

    from browser_support import launch
    from playwright.sync_api import sync_playwright

    variants = [("after (this checkout)", None, {})]
    if against:
        variants.insert(0, (f"before ({against})", against, {}))
    elif baseline:
        # Streamlit's defaults: a full gc.collect after every run, and nothing frozen, so
        # keras.backend.clear_session's own gc.collect walks the whole TensorFlow heap each time.
        variants.insert(0, ("before (runner.postScriptGC on, no gc.freeze)", None,
                            {"STREAMLIT_RUNNER_POST_SCRIPT_GC": "true", "LAYER_EXPLORER_GC_FREEZE": "0"}))
    results: dict[str, dict[str, list[float]]] = {name: {} for name, _, _ in variants}
    loads = [browser_timing.load_average()]
    with ExitStack() as stack, sync_playwright() as p:
        urls = [stack.enter_context(browser_timing.server(Path(stack.enter_context(tempfile.TemporaryDirectory())),
                                                          ref, env)) for _, ref, env in variants]
        browser = launch(p)
        try:
            sessions = [browser_session(browser, url, repeats, think_ms) for url in urls]
            # Click by click in turn: both servers see the same load from the other processes.
            for steps in zip(*sessions, strict=True):
                for (name, _, _), step in zip(variants, steps, strict=True):
                    if step is not None:
                        results[name].setdefault(step[0], []).append(step[1])
        finally:
            browser.close()
    loads.append(browser_timing.load_average())
    print(f"5. click → settled in headless Chromium (benchmarks/browser_timing.py: rerun ended, nothing stale, "
          f"charts drawn, images loaded), {think_ms} ms think time before each click; target median < 0.7 s")
    print(f"   {loads[0]} at the start, {loads[1]} at the end")
    for name, out in results.items():
        print(f"   {name}:")
        for what, values in out.items():
            print(f"     {what:<28} median {statistics.median(values):.3f} s, max {max(values):.3f} s, n={len(values)}")
    if len(variants) == 2:
        (_, b), (_, a) = results.items()
        print("   ratio before / after (medians): " + ", ".join(
            f"{what.split(': ')[1]} {statistics.median(b[what]) / statistics.median(a[what]):.2f}×" for what in a))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer reruns, 1,000 points, 210 images")
    parser.add_argument("--browser-only", action="store_true", help="only the real-browser click timings (5)")
    parser.add_argument("--no-browser", action="store_true", help="skip the real-browser click timings (5)")
    parser.add_argument("--browser-baseline", action="store_true",
                        help="also time a server with Streamlit's default post-run heap handling, for comparison")
    parser.add_argument("--against", metavar="REV",
                        help="also time git revision REV (e.g. main) side by side, click by click")
    parser.add_argument("--think-ms", type=int, default=1000, help="pause before each timed click (default 1000)")
    args = parser.parse_args()
    if args.browser_only:
        bench_browser(2 if args.quick else 4, args.think_ms, args.browser_baseline, args.against)
        return
    bench_rerender(1 if args.quick else 3)
    bench_maps(1000 if args.quick else 2000)
    bench_sweep(30 if args.quick else 86, 210 if args.quick else 600)
    if not args.no_browser:
        bench_browser(2 if args.quick else 4, args.think_ms, args.browser_baseline, args.against)


if __name__ == "__main__":
    main()
