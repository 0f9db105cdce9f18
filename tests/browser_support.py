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
def streamlit_server(tmp: Path, script: Path | None = None, env_extra: dict | None = None):
    """Run ``streamlit run SCRIPT`` (app.py by default) from the repository root; yield its URL."""
    need_chromium()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, KERAS_HOME=str(tmp / "keras-home"), TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("LAYER_EXPLORER_ALLOW_LOCAL_WEIGHTS", None)
    env.update(env_extra or {})
    log = tmp / "streamlit.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(script or ROOT / "app.py"), "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
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
