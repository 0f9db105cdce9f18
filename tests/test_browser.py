"""The app in a real browser: `streamlit run` on a loopback port, driven by Playwright in Debian's
headless Chromium. One scenario: the default page shows maps, an uploaded image replaces the demo
set, another layer can be picked, and no exception box ever appears. Screenshots are kept under
``test-artifacts/`` for a person to look at.

Without /usr/bin/chromium the test is skipped, except in CI (``CI=true``), where that is a failure.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.browser

from browser_support import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, STEP_MS, no_exception, settle, streamlit_server  # noqa: E402


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    with streamlit_server(tmp_path_factory.mktemp("browser")) as url:
        yield url


def _png_bytes() -> bytes:
    # A bright disc on a dark gradient: something with edges for the early layers.
    yy, xx = np.mgrid[0:80, 0:100]
    img = np.zeros((80, 100, 3), np.uint8)
    img[..., 2] = (xx * 2).astype(np.uint8)
    disc = (yy - 40) ** 2 + (xx - 55) ** 2 < 22**2
    img[disc] = (250, 210, 40)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def test_feature_maps_in_a_real_browser(app_url, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    upload = tmp_path / "my_disc.png"
    upload.write_bytes(_png_bytes())
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            # Tall enough for the whole page: Streamlit scrolls inside its own container, so a
            # "full page" screenshot would only show the first screen.
            page = browser.new_page(viewport={"width": 1400, "height": 3400})
            page.goto(app_url, timeout=STEP_MS)

            # 1. First open, no clicks: the demo set through demo-shapes, maps on screen.
            grid = page.locator('img[alt="Feature-map grid"]')
            expect(grid).to_be_visible(timeout=STEP_MS)
            settle(page)
            expect(page.locator('img[alt="Activation overlay"]')).to_be_visible()
            expect(page.get_by_text("Channels of block2_pool", exact=True)).to_be_visible()
            no_exception(page)
            page.screenshot(path=str(ARTIFACTS / "browser-1-default.png"), full_page=True)

            # 2. Upload one image through the sidebar's file uploader.
            sidebar = page.locator('[data-testid="stSidebar"]')
            sidebar.get_by_text("Upload", exact=True).click()
            dropzone = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
            expect(dropzone).to_be_attached(timeout=STEP_MS)
            dropzone.set_input_files(str(upload))
            expect(sidebar.get_by_text("1 image", exact=True)).to_be_visible(timeout=STEP_MS)
            expect(page.locator('img[alt="Thumbnail of my_disc.png"]')).to_have_count(1, timeout=STEP_MS)
            expect(page.locator('img[alt^="Thumbnail of"]')).to_have_count(1)
            settle(page)
            expect(grid).to_be_visible()
            expect(page.locator('img[alt="Activation overlay"]')).to_be_visible()
            no_exception(page)
            page.screenshot(path=str(ARTIFACTS / "browser-2-upload.png"), full_page=True)

            # 3. Another layer of the same block.
            expect(page.get_by_role("combobox", name="Block")).to_have_value("block2")
            expect(page.get_by_role("combobox", name="Layer")).to_have_value("block2_pool (pool)")
            page.locator('[data-testid="stSelectbox"]').filter(has_text="Layer").click()
            page.get_by_role("option", name="block2_conv1 (conv)").click()
            expect(page.get_by_text("Channels of block2_conv1", exact=True)).to_be_visible(timeout=STEP_MS)
            expect(page.get_by_text("block2_conv1: 32×32 positions × 32 channels", exact=False)).to_be_visible()
            settle(page)
            expect(grid).to_be_visible()
            expect(page.locator('img[alt="Activation overlay"]')).to_be_visible()
            expect(page.locator('img[alt^="Hierarchy:"]')).to_have_count(5)
            no_exception(page)
            page.screenshot(path=str(ARTIFACTS / "browser-3-layer.png"), full_page=True)

            # 4. The equivalent Keras code, ready to copy.
            page.get_by_text("The same in plain Keras", exact=False).click()
            code = page.locator('[data-testid="stCode"]').first  # the Grad-CAM snippet is a second one
            expect(code).to_contain_text("get_layer('block2_conv1')")
            expect(code).to_contain_text(".mean(axis=(1, 2))")
            expect(code).to_be_visible()
            no_exception(page)
            page.wait_for_timeout(800)  # let the expander finish its opening animation for the picture
            page.screenshot(path=str(ARTIFACTS / "browser-4-code.png"), full_page=True)
        finally:
            browser.close()
