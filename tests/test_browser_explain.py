"""The receptive-field cell picker in a real browser: click a cell of the map, see its field outlined.

Without /usr/bin/chromium the test is skipped, except in CI (``CI=true``), where that is a failure.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.browser

from browser_support import ARTIFACTS, STEP_MS, launch, no_exception, settle, streamlit_server  # noqa: E402


def test_click_a_cell_and_see_its_receptive_field(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with streamlit_server(tmp_path) as url, sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 6000})
            page.goto(url, timeout=STEP_MS)
            outlined = page.locator('img[alt^="Receptive field of cell"]')
            expect(outlined).to_be_visible(timeout=STEP_MS)
            settle(page)
            assert outlined.get_attribute("alt") == "Receptive field of cell (8, 8) outlined"
            expect(page.get_by_text("What the network decides", exact=True)).to_be_visible()
            before = outlined.screenshot()

            # The cell map is the page's last Vega-Lite chart; a click near its top-left corner is cell (0, 0).
            chart = page.locator('[data-testid="stVegaLiteChart"]').last
            chart.scroll_into_view_if_needed()
            chart.locator("canvas, svg").first.click(position={"x": 10, "y": 10})
            expect(outlined).to_have_attribute("alt", re.compile(r"Receptive field of cell \([01], [01]\) outlined"),
                                               timeout=STEP_MS)
            settle(page)
            expect(page.get_by_text(re.compile(r"Cell \([01], [01]\) of block2_pool sees rows 0–"))).to_be_visible()
            no_exception(page)
            after = outlined.screenshot()
            assert after != before  # the outline moved
            (ARTIFACTS / "explain_cell_before.png").write_bytes(before)
            (ARTIFACTS / "explain_cell_after.png").write_bytes(after)
            page.screenshot(path=str(ARTIFACTS / "explain_page.png"))
            # the outline is drawn in the image: its top-left corner pixel is the outline colour
            shot = np.asarray(Image.open(ARTIFACTS / "explain_cell_after.png").convert("RGB"))
            assert (np.abs(shot[2:6, 2:6].astype(int) - (255, 64, 32)).sum(axis=-1) < 60).any()
        finally:
            browser.close()
