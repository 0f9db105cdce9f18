"""ui.private_cache: an upload's cached data lives in its session's own cache and goes when the
session disconnects; the demo sets' cached data is shared by every session (issue 15: images,
features and results stay per session and are freed when it ends)."""

from __future__ import annotations

import doctest

import numpy as np
from streamlit.runtime import caching
from streamlit.testing.v1 import AppTest

from ui import cache, explain, private_cache

CALLS: list[str] = []


class Upload:
    """Stands in for an uploaded ImageSource (anything that is not a plain array)."""


@private_cache.data(max_entries=8)
def computed(digest: str, _items) -> str:
    CALLS.append(digest)
    return digest.upper()


def _script():
    import numpy as np
    import streamlit as st
    from test_private_cache import Upload, computed

    st.session_state["upload"] = computed("upload", [Upload()])
    st.session_state["demo"] = computed("demo", [np.zeros(3)])


def test_an_uploads_entries_go_when_its_session_disconnects_and_the_demo_sets_stay_shared():
    computed.clear()
    CALLS.clear()
    at = AppTest.from_function(_script, default_timeout=60)
    at.run()
    assert not at.exception
    assert at.session_state["upload"] == "UPLOAD" and at.session_state["demo"] == "DEMO"
    at.run()
    assert CALLS == ["upload", "demo"], "both cached within the session"
    # What Streamlit does when the tab disconnects (AppSession.clear_session_caches).
    caching.clear_session_data_cache("test session id")
    at.run()
    assert CALLS == ["upload", "demo", "upload"], "the upload's entry went with the session; the demo's is shared"
    # Outside a session (tests, the command line) there is no session cache: the shared one serves.
    assert computed("demo", [np.zeros(3)]) == "DEMO" and CALLS[-1] == "upload"
    computed.clear()  # outside a session: the shared cache only
    at.run()
    assert CALLS == ["upload", "demo", "upload", "demo"], CALLS


def test_the_per_image_caches_of_uploads_are_session_scoped():
    for fn in (cache.decode_thumbnails, cache.raw_maps, cache._pooled_chunk, explain.evidence_for,
               explain.gradcam_for):
        assert hasattr(fn, "private") and hasattr(fn, "shared"), fn


def test_docstring_examples():
    assert doctest.testmod(private_cache).failed == 0
