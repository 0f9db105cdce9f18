"""A sidebar change never moves the user to another page (issue 10, item 1), in the real browser.

The jump it guards against: on a fresh server Streamlit starts in legacy multipage mode (there is a
``pages/`` folder) and shows a navigation built from the file names until app.py's ``st.navigation``
has run once. A click on that early menu opened the page file on its own; the next sidebar change
then asked for a page app.py's navigation does not know, and Streamlit fell back to Feature maps.
The test clicks "Layer selection" as soon as the menu shows, before the first run has finished,
then changes sidebar widgets and checks the URL and the heading after each.

Without /usr/bin/chromium the test is skipped, except in CI (``CI=true``), where that is a failure.
"""

from __future__ import annotations

import pytest
from browser_support import STEP_MS, launch, no_exception, settle, streamlit_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_sidebar_changes_stay_on_the_page_clicked_during_the_first_run(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    with streamlit_server(tmp_path) as url, sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.goto(url, timeout=STEP_MS)
            sidebar = page.locator('[data-testid="stSidebar"]')
            link = sidebar.locator('[data-testid="stSidebarNav"]').get_by_role("link", name="Layer selection")
            link.first.click(timeout=STEP_MS)  # as soon as a menu shows: the first run is still going
            expect(page).to_have_url(f"{url}/layer-selection", timeout=STEP_MS)
            settle(page)

            def still_here(what: str) -> None:
                settle(page)
                expect(page, what).to_have_url(f"{url}/layer-selection", timeout=STEP_MS)
                expect(page.get_by_role("heading", name="Layer selection", exact=True), what).to_be_visible(
                    timeout=STEP_MS)
                no_exception(page)

            for choice in ("Random (untrained)", "Pretrained"):
                sidebar.get_by_text(choice, exact=True).click()
                still_here(choice)
            sidebar.locator('[data-testid="stSelectbox"]').filter(has_text="Demo set").click()
            page.get_by_role("option", name="Digits", exact=False).click()
            still_here("demo set")
            sidebar.get_by_role("radiogroup", name="Source").get_by_text("Upload").click()
            still_here("source")
        finally:
            browser.close()
