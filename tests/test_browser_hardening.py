"""A page that fails, seen in a real browser: a plain message, never a traceback or a server path.

The server runs a copy of app.py whose mosaic renderer is broken on purpose (the fault is
injected by a wrapper script the test writes; nothing in the app knows about it). Two faults:
one the page catches (``page_guard``: the generic message), and one it does not (Streamlit's
own error box, which ``client.showErrorDetails = "none"`` keeps free of details).
"""

from __future__ import annotations

import pytest
from browser_support import ARTIFACTS, READY, ROOT, STEP_MS, launch, streamlit_server

pytestmark = pytest.mark.browser

SECRET = "secret-detail-7f3a"

WRAPPER = '''
import sys
sys.path.insert(0, {root!r})
import ui.feature_maps, ui.sidebar

def broken(*args, **kwargs):
    raise {error}("{secret} at {root}/ui/feature_maps.py")

{target} = broken
__file__ = {app!r}
exec(compile(open({app!r}).read(), {app!r}, "exec"))
'''


@pytest.mark.parametrize("fault", [
    # caught at the page boundary: the page's generic message
    ("ui.feature_maps.compose_mosaic", "RuntimeError"),
    # not caught anywhere (the sidebar is drawn outside any guard): Streamlit's error box
    ("ui.sidebar._weights_badge", "KeyError"),
], ids=["caught", "uncaught"])
def test_injected_failure_shows_no_details(tmp_path, fault):
    from playwright.sync_api import sync_playwright

    target, error = fault
    script = tmp_path / "app_with_fault.py"
    script.write_text(WRAPPER.format(root=str(ROOT), app=str(ROOT / "app.py"), target=target, error=error,
                                     secret=SECRET))
    ARTIFACTS.mkdir(exist_ok=True)
    with streamlit_server(tmp_path, script) as url, sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.goto(url)
            page.wait_for_selector(READY, timeout=STEP_MS)
            page.wait_for_timeout(500)
            page.screenshot(path=str(ARTIFACTS / f"fault-{target.rsplit('.', 1)[-1]}.png"))
            text = page.locator("body").inner_text()
            html = page.content()
        finally:
            browser.close()
    assert SECRET not in text and SECRET not in html
    assert str(ROOT) not in text and str(ROOT) not in html
    assert "Traceback" not in text
    if target.endswith("compose_mosaic"):
        assert "Something went wrong" in text
    else:
        assert "error" in text.lower()  # Streamlit's own box, without details
