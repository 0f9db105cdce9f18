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

#: No DOM change for this long (after everything else holds) counts as settled.
QUIET_MS = 150
CHART = '[data-testid="stVegaLiteChart"]'

# Installed once per page (idempotent; re-install after a navigation that reloads the document).
OBSERVER = """() => {
  if (window.__le) return;
  const app = document.querySelector('[data-testid="stApp"]');
  const le = window.__le = {runs: [], last: performance.now()};
  new MutationObserver(() => le.runs.push(app.getAttribute('data-test-script-state')))
    .observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
  // The page's own content only: an open dropdown or a tooltip lives in a portal outside it.
  const main = document.querySelector('[data-testid="stMain"]') || document.body;
  new MutationObserver(() => { le.last = performance.now(); })
    .observe(main, {subtree: true, childList: true, attributes: true, characterData: true});
}"""

# ``false`` until settled; then how long the page has been quiet (ms).
SETTLED = """([n, quietMs]) => {
  const le = window.__le;
  const runs = le.runs.slice(n);
  if (!runs.includes('running') || runs[runs.length - 1] !== 'notRunning') return false;
  if (document.querySelector('[data-testid="stStatusWidgetRunningIcon"], [data-testid="stStatusWidgetRunningManIcon"]'))
    return false;
  if (document.querySelector('[data-stale="true"]')) return false;
  const charts = [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')];
  if (!charts.every(c => c.querySelector('svg .mark-symbol path, svg .mark-rect path, svg .mark-line path, canvas')))
    return false;
  const main = document.querySelector('[data-testid="stMain"]') || document;
  // Images in view (lazy ones below the fold load only when scrolled to, as for the user).
  const inView = i => { const r = i.getBoundingClientRect(); return r.bottom > 0 && r.top < window.innerHeight; };
  if (![...main.querySelectorAll('img')].every(i => i.complete || !inView(i))) return false;
  const quiet = performance.now() - le.last;
  return quiet >= quietMs ? quiet : false;
}"""

# Which part of SETTLED does not hold (for the error when a click never settles).
DIAGNOSE = """n => {
  const main = document.querySelector('[data-testid="stMain"]') || document;
  return {runs: window.__le.runs.slice(n),
          stale: document.querySelectorAll('[data-stale="true"]').length,
          charts: [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')]
                    .filter(c => !c.querySelector('svg path, canvas')).length,
          images: [...main.querySelectorAll('img')].filter(i => !i.complete).map(i => i.alt).slice(0, 5),
          quietMs: performance.now() - window.__le.last};
}"""


def settle(page, timeout_ms: int = 600_000) -> None:
    """Wait until the app's script has finished its run (a first run builds a network: minutes under load)."""
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout_ms)


def install(page) -> None:
    """Start observing ``page`` (call once the app has drawn, and again after a full reload)."""
    page.evaluate(OBSERVER)


def timed(page, action: Callable[[], object], think_ms: int = 1000, quiet_ms: int = QUIET_MS) -> float:
    """Seconds from ``action()`` (a click, a drag's release) until the page settled (see the module docstring).

    ``think_ms`` first: a person looks at the page before the next click, and work the server does
    after a run (Streamlit's post-run clean-up) would otherwise delay a click made during it.
    """
    page.bring_to_front()  # pages of two servers take turns; a background page gets no animation frames
    if think_ms:
        page.wait_for_timeout(think_ms)
    install(page)
    n = page.evaluate("() => window.__le.runs.length")
    start = time.perf_counter()
    action()
    try:
        quiet = page.wait_for_function(SETTLED, arg=[n, quiet_ms], timeout=120_000, polling=20).json_value()
    except Exception as exc:
        raise RuntimeError(f"the page did not settle: {page.evaluate(DIAGNOSE, n)}") from exc
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
    from browser_support import free_port, need_chromium, wait_healthy

    need_chromium()
    with checkout(ref) as root:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = dict(os.environ, KERAS_HOME=str(tmp / "keras-home"), TF_CPP_MIN_LOG_LEVEL="2")
        env.pop("LAYER_EXPLORER_ALLOW_LOCAL_WEIGHTS", None)
        env.update(env_extra or {})
        log = tmp / f"streamlit-{port}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "streamlit", "run", str(root / "app.py"), "--server.headless", "true",
                 "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
                cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
            )
        try:
            wait_healthy(url, proc, log)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)


def load_average() -> str:
    """The 1/5/15-minute load average and core count, for the printout (figures depend on it)."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "load average unknown"
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} on {os.cpu_count()} cores"
