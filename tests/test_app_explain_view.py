"""AppTest: a headless backbone gets one "no classifier" box on Feature maps, from one classifier fetch."""

from __future__ import annotations

import pytest
from app_support import assert_clean, open_app, texts

pytestmark = pytest.mark.slow


def test_headless_backbone_one_no_classifier_box_one_fetch(monkeypatch):
    from ui import explain

    real, calls = explain.classifier_for, []

    def counting(config):
        calls.append(config)
        return real(config)

    monkeypatch.setattr(explain, "classifier_for", counting)
    at = open_app()
    calls.clear()
    at.radio(key="sb_weights").set_value("random").run()  # demo-shapes with random weights: no head
    assert_clean(at)
    boxes = [t for t in texts(at.info) if "classifier" in t.lower()]
    assert len(boxes) == 1, boxes
    assert boxes[0].startswith("This backbone has no classifier")
    assert any("Grad-CAM needs a classifier head" in t for t in texts(at.caption))  # said, not boxed again
    assert len(calls) == 1, calls  # fetched once per run and handed down
