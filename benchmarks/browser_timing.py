"""Click → settled, as a user waits for it in the real browser: the one observer every browser benchmark uses.

"Settled" means all of these hold (the time reported is that of the page's last change, so the
quiet window is not counted):

* the rerun the click caused has started and ended (a ``MutationObserver`` on the app's
  ``data-test-script-state``, so no run is missed however short), and Streamlit's running
  indicator is gone;
* no element is stale (``data-stale="true"``: left over from the previous run, drawn faded);
* every Vega chart has drawn its marks (Vega renders after the script's last message);
* every image in view has loaded (lazy images below the fold wait for a scroll, as for the user);
* the page's content (``stMain``; not dropdowns or tooltips, which live outside it) has not changed
  for ``QUIET_MS``.

Also here: :func:`server`, a ``streamlit run`` of this checkout or of any git revision
(``git archive`` into a temporary folder, nothing written to the repository), so a benchmark can
time the old and the new code side by side, click by click, under the same load.

Example (inside a benchmark)::

    with server(tmp) as url:
        page.goto(url); install(page)
        seconds = timed(page, lambda: page.get_by_label("Layer").click(), think_ms=1000)
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

# The observer is the real-browser tests' own (tests/browser_support.py): one definition of "settled".
from browser_support import DIAGNOSE, QUIET_MS, READY, SETTLED, install, marks, new_page  # noqa: E402,F401

CHART = '[data-testid="stVegaLiteChart"]'


def settle(page, timeout_ms: int = 600_000) -> None:
    """Wait until the app's script has finished its run (a first run builds a network: minutes under load)."""
    page.wait_for_selector(READY, timeout=timeout_ms)


def timed(page, action: Callable[[], object], think_ms: int = 1000, quiet_ms: int = QUIET_MS) -> float:
    """Seconds from ``action()`` (a click, a drag's release) until the page settled (see the module docstring).

    ``think_ms`` first: a person looks at the page before the next click, and work the server does
    after a run (Streamlit's post-run clean-up) would otherwise delay a click made during it.
    """
    page.bring_to_front()  # pages of two servers take turns; a background page gets no animation frames
    if think_ms:
        page.wait_for_timeout(think_ms)
    before = marks(page)
    start = time.perf_counter()
    action()
    try:
        quiet = page.wait_for_function(SETTLED, arg=[*before, quiet_ms], timeout=120_000, polling=20).json_value()
    except Exception as exc:
        shot = Path(tempfile.gettempdir()) / f"not-settled-{int(time.time())}.png"
        page.screenshot(path=str(shot), full_page=True)
        raise RuntimeError(f"the page did not settle (screenshot {shot}): {page.evaluate(DIAGNOSE, before)}") from exc
    return time.perf_counter() - start - float(quiet) / 1000.0


@contextmanager
def checkout(ref: str | None) -> Iterator[Path]:
    """This working tree (``ref`` None), or git revision ``ref`` unpacked into a temporary folder."""
    if ref is None:
        yield ROOT
        return
    with tempfile.TemporaryDirectory(prefix="le-bench-") as tmp:
        data = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", ref],
                              check=True, capture_output=True).stdout
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(tmp, filter="data")
        yield Path(tmp)


@contextmanager
def server(tmp: Path, ref: str | None = None, env_extra: dict | None = None) -> Iterator[str]:
    """``streamlit run app.py`` of this checkout or of revision ``ref`` on a free loopback port; yields its URL."""
    from browser_support import streamlit_server

    with checkout(ref) as root, streamlit_server(tmp, root=root, env_extra=env_extra) as url:
        yield url


def load_average() -> str:
    """The 1/5/15-minute load average and core count, for the printout (figures depend on it)."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "load average unknown"
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} on {os.cpu_count()} cores"
