"""Feature maps tells the whole story (issue 10, item 7) and says when features collapsed (item 5):
one caption per stage of the strip, on one row; links to the depth evidence; colour bars; a
mosaic that fits the content column; distinct class hues; a note when demo-shapes sees images it
never learned; the health message instead of 0.0000 in the Top-channels table."""

from __future__ import annotations

import colorsys
import dataclasses

import numpy as np
from app_support import assert_clean, open_app, png, texts

from ui import charts
from ui import feature_maps as fm


def _images(at):
    return at.get("image")


def test_each_stage_has_a_caption_and_the_strip_is_one_row():
    at = open_app()
    strip = [img for img in _images(at) if any(c.startswith(("input ·", "block")) for c in img.captions)]
    stages = [c for c in texts(at.caption) if c in fm.stage_captions(4)]
    # input + 4 blocks of demo-shapes, each with its own line, each tile alone in its own column
    assert len(strip) == 5 and len(stages) == 5, (len(strip), stages)
    assert stages[0] == "the pixels" and stages[-1] == "object-level patterns"
    assert any(len(col_block) >= 5 for col_block in _column_rows(at)), "all tiles of the strip share one row"


def _column_rows(at):
    """Lists of columns that sit side by side (one st.columns call each)."""
    out, current, parent = [], [], None
    for col in at.columns:
        p = id(getattr(col, "parent", None))
        if current and p != parent:
            out.append(current)
            current = []
        current.append(col)
        parent = p
    if current:
        out.append(current)
    return out


def test_links_to_the_depth_evidence_and_colour_bars():
    at = open_app()
    links = [el.proto.page for el in at.get("page_link")]
    assert "layer-selection" in links and "embedding-maps" in links, links
    captions = [c for img in _images(at) for c in img.captions]
    bars = [c for c in captions if "← colour →" in c]
    assert len(bars) == 2, captions  # the mosaic's and the heat map's
    at.radio(key="fm_scale").set_value("shared").run()
    assert_clean(at)
    bars = [c for img in _images(at) for c in img.captions if "← colour →" in c]
    assert "each channel" not in bars[0]  # shared scale: the layer's own numbers at both ends


def test_all_channels_fit_the_content_column():
    fmap = np.random.default_rng(0).random((4, 4, 512)).astype(np.float32)
    m = fm.compose_mosaic(fmap, fm.channel_order(fmap), target_cell=96, max_cell=160, max_width=fm.CONTENT_PX)
    assert m.image.shape[1] <= fm.CONTENT_PX <= 704  # Streamlit's centred content column


def test_class_colours_have_distinct_hues_side_by_side():
    colours = charts.class_colors([f"c{i}" for i in range(7)] + [""])
    hues = [colorsys.rgb_to_hsv(*(int(c[i:i + 2], 16) / 255 for i in (1, 3, 5)))[0] for c in colours[:7]]
    for a, b in zip(hues, hues[1:], strict=False):
        assert min(abs(a - b), 1 - abs(a - b)) > 0.04, hues  # neighbours never share a hue
    assert len(set(colours[:7])) == 7 and colours[-1] == "#bab0ac"  # unlabelled: grey
    frame = charts.map_frame(np.random.default_rng(0).random((3, 2)), ["a", "b", "c"], ["x", "y", "x"])
    spec = charts.scatter_chart(frame, classes=["x", "y"]).to_dict()
    assert spec["encoding"]["color"]["scale"]["range"] == list(charts.CLASS_PALETTE[:2])


def test_demo_shapes_says_when_it_sees_images_it_never_learned():
    at = open_app()
    assert not any("learned only the seven shape classes" in t for t in texts(at.caption))
    at.radio(key="sb_source").set_value("upload").run()
    rng = np.random.default_rng(0)
    at.file_uploader(key="sb_upload").set_value(
        [(f"photo_{i}.png", png(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)), "image/png") for i in range(3)])
    at.run()
    assert_clean(at)
    # The class-evidence panel (ui/explain_view.py) says it, also for unlabelled uploads; said once.
    notes = [t for t in texts(at.caption) + texts(at.info) if "learned only the seven shape classes" in t]
    assert len(notes) == 1, notes


def test_collapsed_maps_show_the_health_message_not_zeros(monkeypatch):
    from ui import cache

    real = cache.raw_maps

    def vanishing(*args, **kwargs):
        raw = real(*args, **kwargs)
        return dataclasses.replace(raw, maps={k: v * np.float32(1e-12) for k, v in raw.maps.items()})

    monkeypatch.setattr(cache, "raw_maps", vanishing)
    at = open_app()
    warnings = [w for w in texts(at.warning) if "has collapsed" in w]
    assert len(warnings) == 1 and "block2_pool" in warnings[0], texts(at.warning)
    assert (at.dataframe[0].value["max"] > 0).all()
