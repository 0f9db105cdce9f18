"""AppTest: the explanation views of the Feature-maps page."""

from __future__ import annotations

import numpy as np
import pytest
from app_support import assert_clean, open_app, texts

pytestmark = pytest.mark.slow


def _markdown(at) -> str:
    return " ".join(texts(at.markdown) + texts(at.caption) + texts(at.info))


def test_class_evidence_gradcam_and_receptive_field_for_demo_shapes():
    at = open_app()
    page = _markdown(at)
    assert "What the network decides" in texts(at.subheader)
    assert "Predicted: **" in page and "shipped classifier head" in page
    bars = at.get("progress")
    assert len(bars) == 5
    values = [b.value for b in bars]
    assert values == sorted(values, reverse=True) and 0 < values[0] <= 100
    assert "Where the network looks for a class" in texts(at.subheader)
    assert at.radio(key="fm_cam_method").value == "gradcam"
    assert at.selectbox(key="fm_cam_layer").value == "block4_relu2"
    captions = " ".join(" ".join(img.captions) for img in at.get("image"))
    assert "Grad-CAM for **" in captions and "block4\\_relu2" in captions
    assert "Cell (8, 8) of block2\\_pool sees rows" in captions  # 16×16 map: the centre cell by default
    assert "random — plain noise" not in page and "trained (" in page
    codes = [c.value for c in at.code]
    gradcam = [c for c in codes if "GradientTape" in c]
    assert len(gradcam) == 1
    compile(gradcam[0], "<snippet>", "exec")

    # Grad-CAM++ and a named class; then a display option that must not recompute anything
    at.radio(key="fm_cam_method").set_value("gradcam++").run()
    assert_clean(at)
    captions = " ".join(" ".join(img.captions) for img in at.get("image"))
    assert "Grad-CAM++ for **" in captions
    at.number_input(key="fm_rf_row").set_value(0).run()
    at.number_input(key="fm_rf_col").set_value(0).run()
    assert_clean(at)
    captions = " ".join(" ".join(img.captions) for img in at.get("image"))
    assert "Cell (0, 0) of block2\\_pool sees rows 0–" in captions


def test_headless_backbone_says_it_has_no_classifier():
    at = open_app()
    at.radio(key="sb_weights").set_value("random").run()
    assert_clean(at)
    page = _markdown(at)
    assert "This backbone has no classifier" in page
    assert "Grad-CAM needs a classifier head" in page
    assert "random — plain noise" in page
    assert "Predicted: **" not in page
    assert np.isfinite(len(at.get("image")))


def test_display_options_never_recompute_gradcam(monkeypatch):
    import ui.explain

    calls = {"n": 0}
    original = ui.explain.grad_cam

    def counting(*args, **kwargs):
        calls["n"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(ui.explain, "grad_cam", counting)
    at = open_app()
    at.radio(key="fm_cam_method").set_value("gradcam++").run()  # a fresh cache entry
    assert_clean(at)
    done = calls["n"]
    at.slider(key="fm_opacity").set_value(0.9).run()
    at.number_input(key="fm_rf_row").set_value(1).run()
    at.radio(key="fm_cam_method").set_value("gradcam").run()  # back to one already computed
    assert_clean(at)
    assert calls["n"] == done
