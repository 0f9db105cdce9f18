"""AppTest: "Calibrate batch-norm statistics on these images" for random weights (issue 10, item 5).

The calibrated backbone is derived from the session's images: its configuration's weights name the
images ("none+bn:<digest>:<n>:<set>"), it is held in the session (never in the shared model pool),
and everything that says which weights made a result says that the statistics were calibrated.
"""

from __future__ import annotations

import json

import pytest
from app_support import assert_clean, open_app, texts

from extractor.backbones import WeightsInfo
from ui.calibrated import chosen_indices
from ui.config import BackboneConfig, calibrated_weights, describe_config, weights_caveat
from ui.image_set import ImageSet

pytestmark = pytest.mark.slow

CALIBRATED = "batch-norm statistics calibrated on 70 images of the shapes demo set"


def _plain(lines) -> str:
    return " ".join(lines).replace("\\", "")


def test_calibrate_toggle_recalibrates_in_the_session_and_says_so():
    from ui import inference_slot

    at = open_app()
    assert "sb_bn_calibrate" not in [t.key for t in at.toggle]  # pretrained weights: nothing to calibrate
    at.radio(key="sb_weights").set_value("random").run()
    assert_clean(at)
    toggle = at.toggle(key="sb_bn_calibrate")
    assert toggle.value is False
    toggle.set_value(True).run()
    assert_clean(at)

    held = at.session_state["_bn_calibrated"]
    name, weights, size = held.key
    assert (name, size) == ("demo-shapes", (64, 64)) and weights.startswith("none+bn:") and weights.endswith(
        ":70:demo:shapes")
    assert held.backbone.weights.kind == "random" and held.backbone.weights.bn_calibrated_on == 70
    # Never in the pool every session shares: neither the backbone nor an extractor on it.
    pooled = [key for key in inference_slot.MODELS.keys() if "none+bn:" in repr(key)]
    assert pooled == [], pooled
    assert any(fx for fx in held.extractors.values())  # the page ran on the session's calibrated extractors

    sidebar = _plain(texts(at.sidebar.caption))
    assert f"Loaded: random weights, {CALIBRATED} (not training)." in sidebar
    badges = texts(at.sidebar.markdown)  # st.badge is a Markdown element
    assert any("Random weights, BN calibrated" in b for b in badges), badges

    # A different image set is a different calibration (and a different cache key).
    at.slider(key="sb_per_class").set_value(3).run()
    assert_clean(at)
    again = at.session_state["_bn_calibrated"]
    assert again.key[1] != weights and again.key[1].endswith(":21:demo:shapes")

    # Off again: plain random weights, and the session's calibration is no longer used.
    at.toggle(key="sb_bn_calibrate").set_value(False).run()
    assert_clean(at)
    assert any("Random weights — not trained" in b for b in texts(at.sidebar.markdown))
    assert "calibrated" not in _plain(texts(at.sidebar.caption))


def test_calibrated_weights_in_captions_caveat_and_config_json():
    from ui import exports

    config = BackboneConfig("demo-shapes", calibrated_weights("ab" * 32, 70, "demo:shapes"), (64, 64))
    assert CALIBRATED in describe_config(config)
    caveat = weights_caveat(config)
    assert caveat.startswith("Random weights, " + CALIBRATED) and "not training" in caveat
    info = WeightsInfo("random", describe_config(config).split(", ", 1)[1], bn_calibrated_on=70)
    images = ImageSet(items=[None] * 200, names=[f"img_{i:03d}.png" for i in range(200)], labels=[None] * 200, digests=[],
                      thumbnails=[])
    blob, script = exports.reproduce_files(config, ["block2_pool"], ["avg"], images=["a.png"], weights_info=info,
                                           image_set=images)
    described = json.loads(blob)
    # The script calibrates again on the images the app calibrated on (128 evenly spaced of 200).
    assert described["calibrate_batchnorm"]["images"] == [images.names[i] for i in chosen_indices(200)]
    assert "calibrate_batchnorm(backbone, views" in script
    assert described["weights_kind"] == "random"
    assert CALIBRATED in described["weights_description"]
    assert described["weights"] == "none"  # never a bogus file name made of the weights string
    compile(script, "<reproduce>", "exec")
