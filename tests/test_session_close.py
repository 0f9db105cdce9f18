"""A tab that closes for good leaves nothing behind: against a real ``streamlit run`` server.

Streamlit keeps a disconnected session for ``server.disconnectedSessionTTL`` seconds in case the tab
comes back, and once that window has passed its storage reports the session as absent without
removing it. The session watcher (``ui.session_watch``) must therefore shut the session down
*before* the window runs out; a close after it finds nothing and the session — its state, its
features, its uploads — stays in memory until another session's disconnect happens to reap it. The
unit tests of the watcher use a fake close; this one uses Streamlit's own storage.

The small app keeps one ``SessionMarker`` in each session's state and, from a thread of its own,
writes how many markers are alive in the server process (after a collection) to a file.
"""

from __future__ import annotations

import asyncio
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from browser_support import streamlit_server  # noqa: E402
from st_protocol import ProtocolSession  # noqa: E402

WINDOW_S = 8  # the server's reconnect window (Streamlit's default is 120 s)

APP = '''
import gc
import os
import threading
import time
from pathlib import Path

import streamlit as st

from ui import session_watch
from ui.work_lanes import WorkLanes


class SessionMarker:
    """One per session, in its session state: alive as long as the session is."""


@st.cache_resource
def lanes():
    report = Path(os.environ["MARKER_REPORT"])

    def count_markers():
        while True:
            gc.collect()
            alive = sum(type(o).__name__ == "SessionMarker" for o in gc.get_objects())
            report.with_suffix(".part").write_text(str(alive))
            report.with_suffix(".part").replace(report)
            time.sleep(0.5)

    threading.Thread(target=count_markers, daemon=True).start()
    return WorkLanes(slots=1, max_batch_jobs=1)


st.session_state.setdefault("marker", SessionMarker())
session_watch.watch(lanes()).note(session_watch.current_session_id())
st.write("ready")
'''


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("session-close-app")
    (folder / "app.py").write_text(textwrap.dedent(APP))
    report = folder / "markers.txt"
    # From the repository root, so the app imports ``ui`` as Layer Explorer's pages do.
    with streamlit_server(folder, folder / "app.py", {"MARKER_REPORT": str(report)}, browser=False,
                          options=["--server.disconnectedSessionTTL", str(WINDOW_S)]) as url:
        yield url, report


def markers(report: Path) -> int | None:
    try:
        return int(report.read_text())
    except (OSError, ValueError):
        return None


def test_a_closed_tab_is_shut_down_within_the_reconnect_window_and_its_state_freed(server):
    url, report = server

    async def open_two():
        kept, closed = ProtocolSession(url), ProtocolSession(url)
        await kept.open(timeout_s=60)
        await closed.open(timeout_s=60)
        assert "ready" in kept.texts() and "ready" in closed.texts()
        return kept, closed

    loop = asyncio.new_event_loop()
    try:
        kept, closed = loop.run_until_complete(asyncio.wait_for(open_two(), 90))
        deadline = time.monotonic() + 20
        while markers(report) != 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert markers(report) == 2, "two open sessions should hold two markers"
        loop.run_until_complete(closed.close())
        disconnected = time.monotonic()
        # Within the window the session is kept (a reconnect would resume it) ...
        time.sleep(1.0)
        assert markers(report) == 2
        # ... and before the window is out it is shut down and its state freed, with no later
        # disconnect needed to reap it. The open session keeps working meanwhile: its reruns also
        # make Streamlit's send loop move on from the closed session, which it would otherwise
        # keep referenced (as the last one it flushed) until any session sent a message.
        seen = []
        while time.monotonic() - disconnected < WINDOW_S + 10:
            loop.run_until_complete(asyncio.wait_for(kept.rerun(timeout_s=60), 90))
            assert "ready" in kept.texts()
            seen.append((round(time.monotonic() - disconnected, 1), markers(report)))
            if seen[-1][1] == 1:
                break
            time.sleep(1.0)
        gone_after = time.monotonic() - disconnected
        assert seen[-1][1] == 1, (f"the closed session's state was still alive {gone_after:.0f} s after its tab "
                                  f"closed (reconnect window {WINDOW_S} s); (seconds, sessions alive): {seen}")
        assert gone_after < WINDOW_S + 3
        loop.run_until_complete(kept.close())
    finally:
        loop.close()
