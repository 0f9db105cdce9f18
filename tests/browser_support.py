"""Shared by the real-browser tests: a `streamlit run` server on a free loopback port, and
Debian's headless Chromium driven by Playwright.

Without /usr/bin/chromium a browser test is skipped, except in CI (``CI=true``), where that is a
failure: CI installs Chromium, so a missing browser there means the setup broke.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]
READY = '[data-testid="stApp"][data-test-script-state="notRunning"]'
STARTUP_S = 120
STEP_MS = 120_000  # one rerun on two shared cores, including a first network build


def need_chromium() -> None:
    if Path(CHROMIUM).is_file():
        return
    message = (f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium) "
               "to run the real-browser test")
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"streamlit exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200 and response.read().strip() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"streamlit was not healthy after {STARTUP_S} s:\n{log.read_text()[-3000:]}")


@contextmanager
def streamlit_server(tmp: Path, script: Path | None = None, env_extra: dict | None = None, root: Path = ROOT, *,
                     options: Sequence[str] = (), browser: bool = True):
    """Run ``streamlit run SCRIPT`` (``root``/app.py by default) from ``root``, the repository root
    unless a benchmark passes another checkout; yield its URL.

    ``options``: more ``streamlit run`` flags (``--server.disconnectedSessionTTL``, 8). ``browser=False``
    for a test that speaks Streamlit's protocol instead (it needs no Chromium).
    """
    if browser:
        need_chromium()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, KERAS_HOME=str(tmp / "keras-home"), TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("LAYER_EXPLORER_ALLOW_LOCAL_WEIGHTS", None)
    env.update(env_extra or {})
    log = tmp / f"streamlit-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(script or root / "app.py"), "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
             *options],
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


#: No DOM change for this long (after everything else holds) counts as settled.
QUIET_MS = 150

# Installed once per page (idempotent; re-install after a navigation that reloads the document).
# It watches the whole document, not the app's element: React can mount a new ``stApp`` (seen on a
# fresh server, while the first navigation replaces the legacy page menu), and an observer on the old
# element then sees nothing again, so a click "never settles". Each change of the run state is kept
# with the value it replaced (``attributeOldValue``), so a run that starts and ends within one batch of
# records still shows as "running" then "notRunning".
OBSERVER = """() => {
  if (window.__le) return;
  const le = window.__le = {runs: [], last: performance.now()};
  const STATE = 'data-test-script-state';
  const current = () => {
    const app = document.querySelector('[data-testid="stApp"]');
    return app ? app.getAttribute(STATE) : null;
  };
  let known = current();
  new MutationObserver(records => {
    for (const r of records) {
      if (r.type === 'attributes' && r.attributeName === STATE) {
        if (r.oldValue !== known) le.runs.push(r.oldValue);
        known = null;
      }
      // The page's own content only: an open dropdown or a tooltip lives in a portal outside it.
      const el = r.target.nodeType === 1 ? r.target : r.target.parentElement;
      if (el && el.closest('[data-testid="stMain"]')) le.last = performance.now();
    }
    const now = current();
    if (now !== known) { le.runs.push(now); known = now; }
  }).observe(document.documentElement,
             {subtree: true, childList: true, attributes: true, attributeOldValue: true, characterData: true});
}"""

# Added to a page before it loads (:func:`new_page`): counts the server's "script finished" messages.
# The run-state attribute alone cannot show every run: a fragment's rerun (a channel switch) that
# starts and ends within one render never changes it, so a click on it "never settled". Streamlit's
# ForwardMsg is protobuf; its top-level field 6 is ``script_finished`` (an enum: 0 finished, 3 fragment
# run finished; 1 compile error and 2 "finished early for a rerun" leave a run to come).
WS_HOOK = """(() => {
  if (window.__leWs) return;
  const ws = window.__leWs = {finished: [], last: 0};
  const varint = (b, i) => { let v = 0, s = 0, x; do { x = b[i++]; v += (x & 0x7f) * 2 ** s; s += 7; } while (x & 0x80 && i < b.length); return [v, i]; };
  const scan = buffer => {
    const b = new Uint8Array(buffer);
    let i = 0;
    while (i < b.length) {
      let tag, v;
      [tag, i] = varint(b, i);
      const field = Math.floor(tag / 8), type = tag & 7;
      if (type === 0) { [v, i] = varint(b, i); if (field === 6 && (v === 0 || v === 3)) ws.finished.push(performance.now()); }
      else if (type === 2) { [v, i] = varint(b, i); i += v; }
      else if (type === 1) i += 8;
      else if (type === 5) i += 4;
      else return;
    }
  };
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', e => {
        ws.last = performance.now();
        if (e.data instanceof ArrayBuffer) scan(e.data);
        else if (e.data instanceof Blob) e.data.arrayBuffer().then(scan);
      });
    }
  };
})();"""

# ``false`` until settled; then how long the page has been quiet (ms). ``n``: the run-state changes
# and ``f`` the finished runs seen before the action (counts, from :func:`marks`).
SETTLED = """([n, f, quietMs]) => {
  const le = window.__le, ws = window.__leWs;
  const app = document.querySelector('[data-testid="stApp"]');
  if (ws) {
    // The server said the action's run finished, and the page shows no run going.
    if (ws.finished.length <= f || !app || app.getAttribute('data-test-script-state') === 'running') return false;
  } else {
    const runs = le.runs.slice(n);
    if (!runs.includes('running') || runs[runs.length - 1] !== 'notRunning') return false;
  }
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
  const quiet = performance.now() - Math.max(le.last, ws ? ws.last : 0);
  return quiet >= quietMs ? quiet : false;
}"""

# Which part of SETTLED does not hold (for the error when a click never settles).
DIAGNOSE = """([n, f]) => {
  const main = document.querySelector('[data-testid="stMain"]') || document;
  return {runs: window.__le.runs.slice(n),
          finished: window.__leWs ? window.__leWs.finished.length - f : 'no hook (page not from new_page)',
          stale: document.querySelectorAll('[data-stale="true"]').length,
          charts: [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')]
                    .filter(c => !c.querySelector('svg path, canvas')).length,
          images: [...main.querySelectorAll('img')].filter(i => !i.complete).map(i => i.alt).slice(0, 5),
          quietMs: performance.now() - window.__le.last};
}"""


def install(page) -> None:
    """Start observing ``page`` (call once the app has drawn, and again after a full reload)."""
    page.evaluate(OBSERVER)


def new_page(browser, **kwargs):
    """``browser.new_page(**kwargs)`` with :data:`WS_HOOK` installed before any document loads."""
    page = browser.new_page(**kwargs)
    page.add_init_script(WS_HOOK)
    return page


def marks(page) -> list[int]:
    """The counts :data:`SETTLED` and :data:`DIAGNOSE` compare against: take them just before an action."""
    install(page)
    return page.evaluate("() => [window.__le.runs.length, window.__leWs ? window.__leWs.finished.length : 0]")


def act(page, action, timeout_ms: int = STEP_MS) -> None:
    """Do ``action()`` (a click, a typed value) and wait until the rerun it caused has started *and*
    ended and the page has settled (the definition above, as the browser benchmarks time it).

    Not :func:`settle`: right after a click the previous run's "notRunning" still shows, so waiting
    for it can return before the click's rerun has begun, and the next step then acts on a page that
    a rerun in flight is about to replace (a value typed into a field that is being redrawn is lost).
    For actions that cause a rerun only (an expander opens in the browser alone). Pages from
    :func:`new_page` see every run end, a fragment's too.
    """
    before = marks(page)
    action()
    try:
        page.wait_for_function(SETTLED, arg=[*before, QUIET_MS], timeout=timeout_ms, polling=50)
    except Exception as exc:
        raise AssertionError(f"the page did not settle after the action: {page.evaluate(DIAGNOSE, before)}") from exc


def launch(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def settle(page) -> None:
    """Wait until the app's script has finished its run."""
    page.wait_for_selector(READY, timeout=STEP_MS)


def no_exception(page) -> None:
    """The one thing that must never show: an exception box, or the app's generic failure message."""
    from playwright.sync_api import expect

    expect(page.locator('[data-testid="stException"]')).to_have_count(0)
    expect(page.get_by_text("Something went wrong")).to_have_count(0)
