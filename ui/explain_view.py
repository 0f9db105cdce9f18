"""The explanation views of the Feature-maps page: why the network decides, and what a cell sees.

Widgets and layout only; the numbers come from :mod:`ui.explain` (cached) and the core. Two
entry points, so the page needs two lines: :func:`class_evidence_panel` (right under the layer
choice) and :func:`explain_sections` (Grad-CAM, receptive field, first-layer filters). Widget
keys are page-prefixed (``fm_``). The Grad-CAM overlay uses the page's own opacity control
(``fm_opacity``); changing it, or the cell picked, never recomputes Grad-CAM.
"""

from __future__ import annotations

import streamlit as st

from extractor.explain import METHODS, NoClassifier, default_cam_layer

from . import cache, rendered, state
from . import explain as ex
from . import feature_maps as fm
from .code_snippets import gradcam_snippet

__all__ = ["class_evidence_panel", "explain_sections", "field_note"]

SHOWN_PX = 320
TILE_PX = 48
MAX_CHART_CELLS = 64 * 64  # a bigger map is picked by row and column only (the chart would be too heavy)
_CAM_SKIP = ("pool", "dropout", "padding", "preprocess", "input", "model")


def field_note(info) -> str:
    """The layer caption's receptive-field clause ("" when unknown).

    Example:
        >>> from extractor import LayerInfo
        >>> field_note(LayerInfo("b3", (28, 28, 256), "pool", "b3", 8, 9, "MaxPooling2D", (44, 44), (8, 8)))
        '; each cell sees a 44×44-pixel receptive field, 8 pixels apart'
    """
    if info.receptive_field is None or info.effective_stride is None:
        return ""
    h, w = (f"{v:g}" for v in info.receptive_field)
    return f"; each cell sees a {h}×{w}-pixel receptive field, {info.effective_stride[0]:g} pixels apart"


def class_evidence_panel(images, index: int, backbone, config, clf=None):
    """Top classes and probabilities for the chosen image, or why this backbone has none (the page's one box).

    Returns the classifier head (or :class:`NoClassifier`), for the page to hand to :func:`explain_sections`.
    """
    st.subheader("What the network decides")
    st.markdown(
        "A network with a **classifier head** ends in one probability per class. This is its verdict on the "
        "chosen image. The layers below show how it got there: early layers see colours and edges, later ones "
        "see parts and shapes, and the last ones separate the classes."
    )
    clf = ex.classifier_for(config) if clf is None else clf
    if isinstance(clf, NoClassifier):
        st.info(f"This backbone has no classifier: {clf.reason}", icon=":material/info:")
        return clf
    ev = ex.evidence_for(config, images.digests[index], images.items[index])
    top = ev.top(0, 5)
    # Bars rather than a table: one glance says how sure the network is.
    for name, p in top:
        st.progress(min(max(p, 0.0), 1.0), text=f"{state.escape_markdown(name)} — {p:.1%}")
    name, p = top[0]
    weights = backbone.weights.description
    st.caption(f"Predicted: **{state.escape_markdown(name)}** ({p:.1%}). From {state.escape_markdown(clf.source)}; "
               f"weights: {state.escape_markdown(weights)}.")
    if backbone.name == "demo-shapes" and images.labels and images.labels[index] not in clf.class_names:
        st.caption("This network learned only the seven shape classes; on other images its answer is one of "
                   "those seven whatever the image shows.")
    return clf


def explain_sections(images, index: int, backbone, layers, layer, config, raw, clf=None) -> None:
    """Grad-CAM, the receptive-field cell picker and the first-layer filters for the current choice.

    ``clf``: what :func:`class_evidence_panel` returned (fetched once per run); fetched here when not given.
    """
    _gradcam(images, index, backbone, layers, config, raw, ex.classifier_for(config) if clf is None else clf)
    _receptive_field(layer, config, raw, images.digests[index])
    _first_filters(images, index, backbone, layers, config)


# --------------------------------------------------------------------------------------------


def _gradcam(images, index, backbone, layers, config, raw, clf) -> None:
    st.subheader("Where the network looks for a class")
    st.markdown(
        "**Grad-CAM** asks: if this class's score went up, which positions of a layer would have to change? "
        "It weights each channel of the layer by how much the score depends on it, adds them up and keeps the "
        "positive part. Bright regions are the evidence *for* the class. A late layer gives a coarse but "
        "class-specific map; an early one is sharper and says less about the class. **Grad-CAM++** weights the "
        "positions inside each channel too, which helps when the object appears several times."
    )
    if isinstance(clf, NoClassifier):
        # Not a second box: "What the network decides" above already says why there is no head.
        st.caption("Grad-CAM needs a classifier head, and this backbone has none (see *What the network "
                   "decides* above).")
        return
    candidates = [info for info in layers if info.kind not in _CAM_SKIP and info.name in clf.layer_names]
    if not candidates:
        st.info("This network has no layer Grad-CAM can explain.", icon=":material/info:")
        return
    default = default_cam_layer(candidates)
    method_col, layer_col, class_col = st.columns(3)
    with method_col:
        method = state.persistent(st.radio, "Method", list(METHODS), key="fm_cam_method", default="gradcam",
                                  horizontal=True, format_func={"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++"}.get)
    with layer_col:
        cam_layer = state.persistent(st.selectbox, "Grad-CAM at", [info.name for info in candidates],
                                     key="fm_cam_layer", default=default.name,
                                     help="Default: the last feature-map layer before global pooling.")
    with class_col:
        options = [-1, *range(len(clf.class_names))]
        names = clf.class_names
        class_index = state.persistent(st.selectbox, "Class", options, key="fm_cam_class", default=-1,
                                       format_func=lambda i: "Predicted class" if i < 0 else names[i])
    with st.spinner("Computing Grad-CAM…"):
        view = ex.gradcam_for(config, images.digests[index], cam_layer, int(class_index), method,
                              images.items[index])
    opacity = float(st.session_state.get("fm_opacity", 0.5))
    what = "Grad-CAM++" if method == "gradcam++" else "Grad-CAM"
    cls = names[view.class_index]
    cam_key = (config, images.digests[index], cam_layer, int(class_index), method)
    img_col, cam_col = st.columns(2)
    with img_col:
        st.image(rendered.overlay(("gradcam", *cam_key), raw.view, view.heatmap, opacity, SHOWN_PX), width=SHOWN_PX,
                 alt="Grad-CAM overlay", output_format="PNG",
                 caption=f"{what} for **{state.escape_markdown(cls)}** at {state.escape_markdown(cam_layer)} "
                         f"({view.cam.shape[0]}×{view.cam.shape[1]} cells), over the image; opacity as above.")
    with cam_col:
        st.image(rendered.png(fm.colorize(fm.resample_nearest(view.cam, SHOWN_PX, SHOWN_PX), "inferno")),
                 width=SHOWN_PX, output_format="PNG", alt="Grad-CAM map at the layer's resolution",
                 caption="The same map at the layer's own resolution: one square per cell.")
    if view.flat:
        st.caption(f"The map is empty: nothing at {state.escape_markdown(cam_layer)} speaks *for* "
                   f"{state.escape_markdown(cls)} in this image.")
    if backbone.weights.kind == "random":
        st.caption("The weights are random: this map shows the architecture, not learned evidence.")
    with st.expander("Grad-CAM in plain Keras + TensorFlow (copy and run it)"):
        st.code(gradcam_snippet(backbone.name, cam_layer, config.input_size, method=method,
                                class_index=None if class_index < 0 else int(class_index), weights=config.weights),
                language="python", wrap_lines=True)


def _receptive_field(layer, config, raw, digest: str) -> None:
    st.subheader("What one cell sees")
    st.markdown(
        "Each cell of a feature map is computed from a square of input pixels, its **receptive field**: every "
        "convolution and pooling on the way widens it, every stride spreads neighbouring cells further apart. "
        "Click a cell of the map (or pick its row and column) to see the region of the image it depends on."
    )
    fields = ex.receptive_fields_for(config)
    rf = fields.get(layer.name)
    fmap = raw.maps[layer.name]
    map_key = (config, digest, layer.name)
    h, w = fmap.shape[:2]
    if rf is None:
        st.info(f"The receptive field of {state.escape_markdown(layer.name)} cannot be worked out from its graph.",
                icon=":material/info:")
        return
    st.session_state.setdefault("fm_rf_row", h // 2)
    st.session_state.setdefault("fm_rf_col", w // 2)
    map_col, image_col = st.columns(2)
    with map_col:
        if h * w <= MAX_CHART_CELLS:
            # A cached Vega-Lite dict: building and validating the Altair chart took longer than the rest
            # of this section on every rerun.
            spec = rendered.cell_picker(map_key, fm.mean_map(fmap), SHOWN_PX - 60)
            event = st.vega_lite_chart(spec=spec, on_select="rerun", key="fm_rf_chart")
            picked = (event.selection.get("cell") if event and event.selection else None) or []
            if picked:
                cell = (int(picked[0]["row"]), int(picked[0]["col"]))
                if st.session_state.get("_fm_rf_last") != cell:
                    st.session_state["_fm_rf_last"] = cell
                    st.session_state["fm_rf_row"], st.session_state["fm_rf_col"] = cell
        st.session_state["fm_rf_row"] = min(max(int(st.session_state["fm_rf_row"]), 0), h - 1)
        st.session_state["fm_rf_col"] = min(max(int(st.session_state["fm_rf_col"]), 0), w - 1)
        r_col, c_col = st.columns(2)
        row = r_col.number_input("Row", min_value=0, max_value=h - 1, step=1, key="fm_rf_row")
        col = c_col.number_input("Column", min_value=0, max_value=w - 1, step=1, key="fm_rf_col")
    size = raw.view.shape[:2]
    top, left, bottom, right = ex.region_for(rf, row, col, size)
    shown = fm.enlarge(raw.view, SHOWN_PX)
    with image_col:
        st.image(rendered.png(ex.outline(shown, (top, left, bottom, right), scale=shown.shape[0] / size[0])),
                 width=SHOWN_PX, output_format="PNG", alt=f"Receptive field of cell ({row}, {col}) outlined",
                 caption=f"Cell ({row}, {col}) of {state.escape_markdown(layer.name)} sees rows {top}–{bottom - 1} "
                         f"and columns {left}–{right - 1} of the input.")
    rh, rw = (f"{v:g}" for v in rf.size)
    sh, _ = (f"{v:g}" for v in rf.stride)
    clipped = (bottom - top, right - left) != (rf.size[0], rf.size[1])
    st.caption(f"Receptive field {rh}×{rw} pixels, effective stride {sh} pixels"
               + (" — clipped at the border: part of the field lies in the padding outside the image." if clipped
                  else "."))
    st.caption("The field is the *theoretical* one: every pixel in it can change the cell, but those near its "
               "centre usually matter most.")
    # The cell's strongest channels as small maps with the cell marked: what it responds to, and where else.
    tiles, captions, alts = rendered.cell_channels(map_key, fmap, int(row), int(col), 6, TILE_PX * 2)
    st.markdown("**Most active channels at this cell** (their whole maps, the cell outlined):")
    st.image(tiles, width=TILE_PX * 2, caption=captions, output_format="PNG", alt=alts)


def _first_filters(images, index, backbone, layers, config) -> None:
    found = ex.first_conv(backbone.model, layers)
    if found is None:
        return
    name, kernel = found
    st.subheader("The first layer's filters")
    st.markdown(
        "The first convolution looks at raw pixels. Each filter is a small RGB pattern; the map next to it shows "
        "where the image matches it. In a **trained** network they become edge, colour and blob detectors at "
        "several orientations; in a **random** one they are plain noise, and so are their maps."
    )
    tiles = ex.filter_tiles(kernel)[:16]
    maps = cache.raw_maps(config, (name,), images.digests[index], images.items[index]).maps[name]
    pairs = rendered.filter_pairs((config, images.digests[index], name), tiles, maps, TILE_PX)
    captions = [text for c in range(len(tiles)) for text in (f"filter {c}", "its map")]
    st.image(pairs, width=TILE_PX, caption=captions, output_format="PNG",
             alt=[f"first-layer tile {i}" for i in range(len(pairs))])
    k = kernel.shape[0]
    if backbone.weights.kind == "random":
        kind = "random — plain noise: these weights were never trained"
    else:
        kind = f"trained ({state.escape_markdown(backbone.weights.description)})"
    st.caption(f"{min(16, kernel.shape[3])} of {kernel.shape[3]} filters of {state.escape_markdown(name)} "
               f"({k}×{k}×3), each on its own scale (grey is zero, bright is positive); weights: {kind}.")
