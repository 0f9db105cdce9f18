"""How fast the Channels & layers page and its core answer: measured figures, printed, no assertions.

1. Re-render after switching channel or layer, in the real browser (Chromium via Playwright,
   `streamlit run` on loopback), click → page settled, with the pooled features already cached
   (target < 0.5 s). A channel seen for the first time runs its 2k ranked images through the
   layer once, for the crops; seen again, nothing runs. Both are reported.
2. CKA between every pair of block outputs for 600 images (demo-shapes on the shapes set: features
   extracted first, not timed), biased and debiased; and the same for 17 layers of ResNet-50-like
   widths (64…2048) on 600 random vectors (target < 2 s).
3. Activation maximisation of one demo-shapes channel, 50 steps, including the graph trace
   (target < 10 s).

Usage:
    python benchmarks/bench_channels.py            # everything
    python benchmarks/bench_channels.py --no-browser
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

import numpy as np  # noqa: E402

THINK_MS = 2500


WATCH = """() => {
  window.__runs = [];
  const app = document.querySelector('[data-testid="stApp"]');
  new MutationObserver(() => window.__runs.push(app.getAttribute('data-test-script-state')))
    .observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
}"""
SETTLED_AFTER = "n => window.__runs.slice(n).includes('running') && window.__runs[window.__runs.length - 1] === 'notRunning'"


def _timed_switch(page, action) -> float:
    """Click → the rerun it caused has finished (seen by a MutationObserver, so no run is missed)."""
    # Think time first: after each run Streamlit calls keras.backend.clear_session() (a full
    # gc.collect, over a second with TensorFlow loaded) *after* telling the browser the run ended;
    # a click made during it waits for it. A person does not click twice within two seconds.
    page.wait_for_timeout(THINK_MS)
    n = page.evaluate("() => window.__runs.length")
    start = time.perf_counter()
    action()
    page.wait_for_function(SETTLED_AFTER, arg=n, timeout=120_000, polling="raf")
    return time.perf_counter() - start


def _pick(page, label: str, option_index: int | None = None, name: str | None = None) -> None:
    page.get_by_label(label, exact=True).click()
    options = page.get_by_role("option")
    (options.nth(option_index) if name is None else page.get_by_role("option", name=name, exact=True)).click()


def bench_browser(repeats: int) -> None:
    from browser_support import launch, settle, streamlit_server
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, streamlit_server(Path(tmp)) as url, sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 3600})
            page.goto(url, timeout=120_000)
            settle(page)
            page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name="Channels & layers").click()
            settle(page)
            page.locator('img[alt^="Top image for channel"]').first.wait_for(timeout=120_000)
            page.evaluate(WATCH)
            first, again, layers_first, layers_again = [], [], [], []
            for i in range(repeats):
                first.append(_timed_switch(page, lambda i=i: _pick(page, "Channel", 1 + i)))
            for i in range(repeats):
                again.append(_timed_switch(page, lambda i=i: _pick(page, "Channel", 1 + i)))
            for out in (layers_first, layers_again):
                for name in ("block2_pool", "block3_pool", "block4_pool"):
                    out.append(_timed_switch(page, lambda name=name: _pick(page, "Layer", name=name)))
            print("1. channel/layer switch in the browser (click → settled), pooled features cached:")
            print(f"   (each click after {THINK_MS / 1000:.1f} s of think time; see _timed_switch)")
            print(f"   channel, first time                        median {statistics.median(first):.3f} s "
                  f"(max {max(first):.3f}, n={len(first)})")
            print(f"   channel seen before                        median {statistics.median(again):.3f} s "
                  f"(max {max(again):.3f}, n={len(again)})")
            print(f"   layer switch, first visit                  median {statistics.median(layers_first):.3f} s "
                  f"(max {max(layers_first):.3f})")
            print(f"   layer switch, visited before               median {statistics.median(layers_again):.3f} s "
                  f"(max {max(layers_again):.3f})   target < 0.5 s")
        finally:
            browser.close()


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
    args = ap.parse_args()
    print(f"cores: {os.cpu_count()}; figures under load from other work on this machine")
    bench_cka(args.images)
    bench_actmax()
    if not args.no_browser:
        bench_browser(args.repeats)


if __name__ == "__main__":
    main()
