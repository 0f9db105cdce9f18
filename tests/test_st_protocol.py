"""The load test's protocol client (benchmarks/st_protocol.py) against a real ``streamlit run`` server.

A small app of its own (two pages, a selectbox, an image, an error on demand), so the test is quick
and checks the client's reading of the protocol, not Layer Explorer: a chosen option reaches the
script and stays chosen on later runs, a page is reached by its name, media are fetched, an error
element is seen, and each run's end is the run the client asked for.
"""

from __future__ import annotations

import asyncio
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from browser_support import streamlit_server  # noqa: E402
from st_protocol import ProtocolError, ProtocolSession  # noqa: E402

APP = '''
import numpy as np
import streamlit as st


def main_page():
    st.title("Main page")
    pick = st.selectbox("Colour", ["red", "green", "blue"], index=1, key="colour")
    size = st.selectbox("Size", ["small", "large"], key="size")
    st.caption(f"chosen: {pick} / {size}")
    st.image(np.full((4, 4, 3), 200, np.uint8), caption="a square")
    if pick == "blue":
        st.exception(ValueError("blue is not allowed"))


def other_page():
    st.title("Other page")
    st.markdown("nothing to choose here")


nav = st.navigation([st.Page(main_page, title="Main", default=True), st.Page(other_page, title="Other")])
nav.run()
'''


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("protocol-app")
    (folder / "app.py").write_text(textwrap.dedent(APP))
    with streamlit_server(folder, folder / "app.py", browser=False) as url:
        yield url


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=60))


def caption(session: ProtocolSession) -> str:
    return next(t for t in session.texts() if t.startswith("chosen:"))


def test_a_choice_reaches_the_script_and_stays(server):
    async def scenario():
        s = ProtocolSession(server)
        first = await s.open(timeout_s=30)
        assert first.status == 0 and first.seconds > 0
        assert caption(s) == "chosen: green / small"
        assert s.selected("Colour") == "green"
        await s.choose("Colour", "red", timeout_s=30)
        assert caption(s) == "chosen: red / small"
        # A later change of another widget keeps the first choice (its value goes with every run).
        await s.choose("Size", 1, timeout_s=30)
        assert caption(s) == "chosen: red / large"
        assert s.selected("Colour") == "red" and s.selected("Size") == "large"
        with pytest.raises(ProtocolError, match="no option 'purple'"):
            await s.choose("Colour", "purple", timeout_s=30)
        with pytest.raises(ProtocolError, match="no selectbox 'Shape'"):
            s.selectbox("Shape")
        await asyncio.sleep(0.5)  # the image request runs in the background, as a browser's <img>
        assert s._fetched and not s.media_errors
        await s.close()

    run(scenario())


def test_pages_by_name_and_errors_seen(server):
    async def scenario():
        s = ProtocolSession(server)
        await s.open(timeout_s=30)
        assert set(s.pages) == {"Main", "Other"}
        await s.open_page("Other", timeout_s=30)
        assert s.texts() == ["Other page", "nothing to choose here"]  # the main page's elements are gone
        with pytest.raises(ProtocolError, match="no selectbox 'Colour'"):
            s.selectbox("Colour")
        with pytest.raises(ProtocolError, match="no page 'Missing'"):
            await s.open_page("Missing")
        await s.open_page("Main", timeout_s=30)
        await s.choose("Colour", "blue", timeout_s=30)
        assert s.exceptions and "blue is not allowed" in s.exceptions[0]
        await s.close()

    run(scenario())


def test_two_sessions_do_not_share_choices(server):
    async def scenario():
        a, b = ProtocolSession(server), ProtocolSession(server)
        await asyncio.gather(a.open(timeout_s=30), b.open(timeout_s=30))
        await a.choose("Colour", "red", timeout_s=30)
        await b.rerun(timeout_s=30)
        assert caption(a) == "chosen: red / small" and caption(b) == "chosen: green / small"
        await asyncio.gather(a.close(), b.close())

    run(scenario())
