"""The Embeddings and Export pages in a real browser: `streamlit run` on a loopback port, driven by
Playwright in Debian's headless Chromium.

Scenario: the Embeddings page draws its maps; hovering a point shows a tooltip with the image's
thumbnail; dragging a box (and, in click mode, clicking a point) lists the selected images under
the maps; the Export page downloads an .npz that NumPy reads without pickle. No exception box
ever appears. The Layer-selection sweep runs in between and its "Use … in Export" button sets
what Export downloads. Screenshots are kept under ``test-artifacts/`` for a person to look at.

Without /usr/bin/chromium the test is skipped, except in CI (``CI=true``), where that is a failure.
"""

from __future__ import annotations

import numpy as np
import pytest
from browser_support import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, READY, STEP_MS, no_exception, settle, streamlit_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHART = '[data-testid="stVegaLiteChart"]'


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    with streamlit_server(tmp_path_factory.mktemp("browser-analysis")) as url:
        yield url


def _open(page, name: str) -> None:
    """Open a page through the sidebar's navigation, as a person would."""
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=name).click()
    settle(page)


def _hover_until_tooltip(page, points, tip) -> None:
    """Move the mouse onto points (Vega shows its tooltip on pointer moves) until the tooltip is up."""
    for i in range(min(points.count(), 8)):
        box = points.nth(i).bounding_box()
        if box is None:
            continue
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(cx - 15, cy - 15)
        page.mouse.move(cx, cy, steps=5)
        try:
            tip.wait_for(state="visible", timeout=3000)
            return
        except Exception:  # Playwright's TimeoutError: try the next point
            continue
    raise AssertionError("no tooltip appeared over the first points of the map")


def test_embeddings_hover_select_and_export_in_a_real_browser(app_url, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            # Tall enough for the whole page: Streamlit scrolls inside its own container.
            page = browser.new_page(viewport={"width": 1400, "height": 3400}, accept_downloads=True)
            page.goto(app_url, timeout=STEP_MS)
            settle(page)

            # 1. The Embeddings page by its URL: a legend, 3 layers × 2 poolings of maps, the overlap heatmap.
            # (The first run above went through app.py, so the server now serves deep links itself.)
            page.goto(f"{app_url}/embedding-maps", timeout=STEP_MS)
            expect(page.get_by_role("heading", name="Embeddings")).to_be_visible(timeout=STEP_MS)
            expect(page.get_by_text("Page not found")).to_have_count(0)
            charts = page.locator(CHART)
            expect(charts).to_have_count(1 + 6 + 1, timeout=STEP_MS)
            settle(page)
            expect(page.get_by_text("block4_pool", exact=False).first).to_be_visible()
            no_exception(page)
            page.screenshot(path=str(ARTIFACTS / "browser-analysis-1-maps.png"), full_page=True)

            # 2. Hover a point of the last map (block4_pool · max): the tooltip shows its thumbnail.
            last_map = charts.nth(6)
            points = last_map.locator("g.mark-symbol path")
            expect(points).to_have_count(70)
            tip = page.locator("#vg-tooltip-element")
            _hover_until_tooltip(page, points, tip)
            thumb = tip.locator("img")
            expect(thumb).to_have_count(1)
            # sent once (issue 10 item 8): a /media URL served by Streamlit, not a copy embedded in every chart
            assert thumb.get_attribute("src").startswith(f"{app_url}/media/"), thumb.get_attribute("src")[:40]
            expect(tip).to_contain_text(".png")
            assert thumb.evaluate("img => img.naturalWidth") == 48, "the thumbnail decoded in the browser"
            page.screenshot(path=str(ARTIFACTS / "browser-analysis-2-hover.png"))

            # 3. Drag a box over the left half of that map: the images inside are listed below the maps.
            box = last_map.bounding_box()
            x0, y0 = box["x"] + 35, box["y"] + 5
            page.mouse.move(x0, y0)
            page.mouse.down()
            page.mouse.move(x0 + box["width"] * 0.45, y0 + 230, steps=10)
            page.mouse.up()
            selected = page.locator('img[alt^="Selected: "]')
            expect(selected.first).to_be_visible(timeout=STEP_MS)
            settle(page)
            n_box = selected.count()
            assert 0 < n_box < 70
            expect(page.get_by_text(f"{n_box} selected in block4_pool/max", exact=False)).to_be_visible()
            no_exception(page)
            page.screenshot(path=str(ARTIFACTS / "browser-analysis-3-box.png"), full_page=True)

            # 4. Click mode: clicking one point selects that one image.
            page.get_by_text("Display options", exact=True).click()
            page.get_by_text("Clicking points", exact=True).click()
            settle(page)
            expect(page.locator('img[alt^="Selected: "]')).to_have_count(0, timeout=STEP_MS)
            last_map = page.locator(CHART).nth(6)
            point = last_map.locator("g.mark-symbol path").nth(10)
            expect(point).to_be_attached(timeout=STEP_MS)  # the chart redraws after the mode switch
            point.scroll_into_view_if_needed(timeout=STEP_MS)
            pbox = point.bounding_box(timeout=STEP_MS)
            page.mouse.click(pbox["x"] + pbox["width"] / 2, pbox["y"] + pbox["height"] / 2)
            expect(page.locator('img[alt^="Selected: "]')).to_have_count(1, timeout=STEP_MS)
            settle(page)
            no_exception(page)

            # 5. Layer selection: run the sweep, read the recommendation, send it to Export.
            _open(page, "Layer selection")
            page.get_by_role("button", name="Run sweep").click()
            success = page.locator('[data-testid="stAlertContentSuccess"]')
            expect(success).to_contain_text("block4_pool", timeout=STEP_MS)
            settle(page)
            expect(page.locator(CHART)).to_have_count(2)  # heatmap and curve over depth
            expect(page.locator('[data-testid="stDataFrame"]')).to_be_visible()
            no_exception(page)
            page.screenshot(path=str(ARTIFACTS / "browser-analysis-4-sweep.png"), full_page=True)
            use = page.get_by_role("button", name="in Export")
            chosen = use.inner_text().removeprefix("Use ").removesuffix(" in Export").split(" / ")
            use.click()
            expect(page).to_have_url(f"{app_url}/export-features", timeout=STEP_MS)

            # 6. Export: the chosen features download as .npz and read back with NumPy, no pickle.
            button = page.get_by_role("button", name="Features (.npz)")
            expect(button).to_be_visible(timeout=STEP_MS)
            settle(page)
            with page.expect_download(timeout=STEP_MS) as info:
                button.click()
            download = info.value
            assert download.suggested_filename == "layer_explorer_features.npz"
            target = tmp_path / "features.npz"
            download.save_as(str(target))
            key = f"{chosen[0]}/{chosen[1]}"
            with np.load(target) as npz:
                assert sorted(npz.files) == sorted(["paths", "labels", key])
                assert npz[key].shape[0] == 70 and np.isfinite(npz[key]).all()
                assert npz["paths"][0] == "circle/circle_0000.png" and npz["labels"][0] == "circle"
            # on_click="ignore": the download did not rerun the page
            expect(page.locator(READY)).to_have_count(1)
            no_exception(page)
            page.screenshot(path=str(ARTIFACTS / "browser-analysis-5-export.png"), full_page=True)
        finally:
            browser.close()
