"""Shared by the AppTest suites: open the app, and check that a run ended cleanly."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "app.py")
GENERIC = "Something went wrong"
TIMEOUT_S = 180  # AppTest's default 3 s is far too short for TensorFlow on two cores


def open_app(page: str | None = None) -> AppTest:
    """The app after its first run (on ``page`` when given), checked clean."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S)
    at.run()
    assert_clean(at)
    if page:
        at.switch_page(page).run()
        assert_clean(at)
    return at


def assert_clean(at: AppTest) -> None:
    """No uncaught exception, and no generic 'something went wrong' message either."""
    assert not at.exception, [e.value for e in at.exception]
    generic = [e.value for e in at.error if GENERIC in e.value]
    assert not generic, generic


def texts(elements) -> list[str]:
    return [str(e.value) for e in elements]


def png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()
