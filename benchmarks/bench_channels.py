"""How fast the Channels & layers page and its core answer: measured figures, printed, no assertions.

1. Re-render after switching channel or layer, in the real browser (Chromium via Playwright,
   `streamlit run` on loopback), click → page settled, with the pooled features already cached
   (target < 0.5 s). The page's first crop finds every channel's peak in every block output in one
   pass (sets up to 512 images), so neither a channel nor a block seen for the first time runs the
   network; a first visit still computes that layer's health table. Both visits are reported.
2. CKA between every pair of block outputs for 600 images (demo-shapes on the shapes set: features
   extracted first, not timed), biased and debiased; and the same for 17 layers of ResNet-50-like
   widths (64…2048) on 600 random vectors (target < 2 s).
3. Activation maximisation of one demo-shapes channel, 50 steps, including the graph trace
   (target < 10 s).

Usage:
    python benchmarks/bench_channels.py            # everything
    python benchmarks/bench_channels.py --no-browser
    python benchmarks/bench_channels.py --browser-only --against main   # 1 only, main vs this checkout
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import browser_timing  # noqa: E402
import numpy as np  # noqa: E402

# A person does not click twice within a second or two; a click during the server's post-run
# clean-up (Streamlit's clear_session and GC) would wait for it (see browser_timing.timed).
THINK_MS = 2500


def _pick(page, label: str, option_index: int | None = None, name: str | None = None) -> None:
    page.get_by_label(label, exact=True).click()
    options = page.get_by_role("option")
    (options.nth(option_index) if name is None else page.get_by_role("option", name=name, exact=True)).click()


def browser_session(browser, url: str, repeats: int):
    """The timed switches on one server: yields ``(what, seconds)`` per click (``None`` while warming)."""
    from browser_timing import settle

    page = browser_timing.new_page(browser, viewport={"width": 1400, "height": 3600})
    try:
        page.goto(url, timeout=120_000)
        settle(page)
        page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name="Channels & layers").click()
        settle(page)
        page.locator('img[alt^="Top image for channel"]').first.wait_for(timeout=120_000)
        browser_timing.install(page)
        yield None
        for what in ("channel, first time", "channel seen before"):
            for i in range(repeats):
                yield what, browser_timing.timed(page, lambda i=i: _pick(page, "Channel", 1 + i), THINK_MS)
        for what in ("layer switch, first visit", "layer switch, visited before"):
            for name in ("block2_pool", "block3_pool", "block4_pool"):
                yield what, browser_timing.timed(page, lambda name=name: _pick(page, "Layer", name=name), THINK_MS)
    finally:
        page.close()


def bench_browser(repeats: int, against: str | None = None) -> None:
    from contextlib import ExitStack

    from browser_support import launch
    from playwright.sync_api import sync_playwright

    variants = [("after (this checkout)", None)]
    if against:
        variants.insert(0, (f"before ({against})", against))
    results: dict[str, dict[str, list[float]]] = {name: {} for name, _ in variants}
    loads = [browser_timing.load_average()]
    with ExitStack() as stack, sync_playwright() as p:
        urls = [stack.enter_context(browser_timing.server(Path(stack.enter_context(tempfile.TemporaryDirectory())), ref))
                for _, ref in variants]
        browser = launch(p)
        try:
            sessions = [browser_session(browser, url, repeats) for url in urls]
            for steps in zip(*sessions, strict=True):  # click by click in turn: the same load for both
                for (name, _), step in zip(variants, steps, strict=True):
                    if step is not None:
                        results[name].setdefault(step[0], []).append(step[1])
        finally:
            browser.close()
    loads.append(browser_timing.load_average())
    print("1. channel/layer switch in the browser (click → settled, benchmarks/browser_timing.py), pooled features "
          f"cached; each click after {THINK_MS / 1000:.1f} s of think time; target < 0.5 s")
    print(f"   {loads[0]} at the start, {loads[1]} at the end")
    for name, out in results.items():
        print(f"   {name}:")
        for what, values in out.items():
            print(f"     {what:<30} median {statistics.median(values):.3f} s (max {max(values):.3f}, n={len(values)})")
    if len(variants) == 2:
        (_, b), (_, a) = results.items()
        print("   ratio before / after (medians): " + ", ".join(
            f"{what} {statistics.median(b[what]) / statistics.median(a[what]):.2f}×" for what in a))


def bench_cka(n: int) -> None:
    from extractor import FeatureExtractor, feature_layers, load_backbone, representative_layers
    from extractor.cka import cka_matrix
    from extractor.demo import load_demo_set

    ds = load_demo_set("shapes", per_class=max(1, n // 7) + 1, size=64)
    images = list(ds.images)[:n]
    bb = load_backbone("demo-shapes")
    blocks = [i.name for i in representative_layers(feature_layers(bb.model))]
    feats = FeatureExtractor(bb, blocks, ["avg"]).extract(images).features
    x = {b: feats[f"{b}/avg"] for b in blocks}
    print(f"2. CKA over all block pairs, {len(images)} images:")
    for debiased in (False, True):
        t = time.perf_counter()
        res = cka_matrix(x, debiased=debiased)
        dt = time.perf_counter() - t
        print(f"   demo-shapes, {len(blocks)} blocks ({len(blocks) ** 2} pairs), "
              f"{'debiased' if debiased else 'biased  '}: {dt:.3f} s   target < 2 s "
              f"(CKA first↔last {res.values[0, -1]:.2f}, adjacent min {min(res.values[i, i + 1] for i in range(len(blocks) - 1)):.2f})")
    rng = np.random.default_rng(0)
    widths = [64, 256, 256, 256, 512, 512, 512, 512, 1024, 1024, 1024, 1024, 1024, 1024, 2048, 2048, 2048]
    wide = {f"l{i}": np.maximum(rng.normal(size=(len(images), w)), 0).astype(np.float32) for i, w in enumerate(widths)}
    for debiased in (False, True):
        t = time.perf_counter()
        cka_matrix(wide, debiased=debiased)
        print(f"   ResNet-50-like widths, 17 layers (289 pairs), {'debiased' if debiased else 'biased  '}: "
              f"{time.perf_counter() - t:.3f} s")


def bench_actmax() -> None:
    from extractor import load_backbone
    from extractor.activation_max import activation_maximisation

    bb = load_backbone("demo-shapes")
    for layer, channel in (("block4_pool", 7), ("block2_pool", 0)):
        t = time.perf_counter()
        res = activation_maximisation(bb, layer, channel, steps=50)
        print(f"3. activation maximisation {layer}:{channel}, 50 steps: {time.perf_counter() - t:.2f} s wall "
              f"(loop {res.seconds:.2f} s; activation {res.start_value:.2f} → {res.best_value:.2f})   target < 10 s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-browser", action="store_true")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--images", type=int, default=600)
    ap.add_argument("--browser-only", action="store_true", help="only the real-browser switch timings (1)")
    ap.add_argument("--against", metavar="REV", help="also time git revision REV (e.g. main) side by side")
    args = ap.parse_args()
    print(f"cores: {os.cpu_count()}; figures under load from other work on this machine")
    if not args.browser_only:
        bench_cka(args.images)
        bench_actmax()
    if not args.no_browser:
        bench_browser(args.repeats, args.against)


if __name__ == "__main__":
    main()
