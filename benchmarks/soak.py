"""Soak: a long session in one process, and the memory it leaves behind.

Drives the real app through Streamlit's AppTest (same scripts, caches and session state as a
browser session): switches the Feature-maps layer 50 times, then uploads a batch of images and
clears it again 20 times (a new batch each time, so the caches see new content), and prints the
process's resident memory after warm-up and at the end. Target: growth under 10 %.

Usage:
    python benchmarks/soak.py                  # 50 layer switches, 20 upload/clear cycles
    python benchmarks/soak.py --switches 10 --uploads 5
"""

from __future__ import annotations

import argparse
import gc
import io
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402


def rss_mib() -> float:
    """Current resident set size (not the peak) from /proc."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (72, 96, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--switches", type=int, default=50)
    parser.add_argument("--uploads", type=int, default=20)
    args = parser.parse_args()

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    blocks = list(at.selectbox(key="fm_block").options)

    def layer_values():
        return [v for v in at.selectbox(key="fm_layer").options]

    # Warm-up: visit every block once, one upload/clear cycle, so the steady state is measured.
    for block in at.selectbox(key="fm_block").options:
        at.selectbox(key="fm_block").set_value(block.split(" ")[0]).run()
    gc.collect()
    start_rss = rss_mib()
    start = time.perf_counter()

    block_values = [b.split(" ")[0] for b in blocks]
    for i in range(args.switches):
        at.selectbox(key="fm_block").set_value(block_values[i % len(block_values)]).run()
        assert not at.exception, [e.value for e in at.exception]
    after_switches = rss_mib()

    at.radio(key="sb_source").set_value("upload").run()
    for i in range(args.uploads):
        files = [(f"img_{i}_{j}.png", png(1000 * i + j), "image/png") for j in range(8)]
        at.file_uploader(key="sb_upload").set_value(files).run()
        assert not at.exception, [e.value for e in at.exception]
        at.file_uploader(key="sb_upload").set_value([]).run()
    at.radio(key="sb_source").set_value("demo").run()
    gc.collect()
    end_rss = rss_mib()
    growth = 100.0 * (end_rss - start_rss) / start_rss
    print(f"soak: {args.switches} layer switches and {args.uploads} upload/clear cycles of 8 images "
          f"in {time.perf_counter() - start:.0f} s")
    print(f"resident memory: start {start_rss:.0f} MiB, after switches {after_switches:.0f} MiB, "
          f"end {end_rss:.0f} MiB  (growth {growth:+.1f} %, target < 10 %)")


if __name__ == "__main__":
    main()
