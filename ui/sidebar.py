"""The sidebar, drawn once by app.py on every run so its choices hold on every page.

Widgets only; what they mean is decided in :mod:`ui.state`. Keys are ``sb_``-prefixed.
"""

from __future__ import annotations

import streamlit as st

from extractor import BACKBONES, LayerExplorerError, get_spec
from extractor.backbones import imagenet_cached
from extractor.calibration import has_batchnorm
from extractor.demo import DEMO_SETS
from extractor.features import PRECISIONS
from extractor.runtime import RUNTIMES, openvino_available
from extractor.sources import byte_size as _mib

from . import about_server, cache, calibrated, custom_model, inference_slot, state, styles
from .native_threads import pin_blas_threads
from .state import KEEP

__all__ = ["render_sidebar", "ensure_shell"]

_SHELL_FLAG = "_shell_drawn_this_run"

_SOURCE_LABELS = {"demo": "Demo set", "upload": "Upload"}
_DEMO_LABELS = {
    "shapes": "Shapes (7 classes, drawn)",
    "digits": "Digits (10 classes, 8×8 scans)",
    "photos": "Photos (2 photos + crops)",
}
_RESIZE_LABELS = {"stretch": "Stretch", "center-crop": "Center crop", "pad": "Pad (letterbox)"}
_RESIZE_HELP = ("How each image is brought to the network's input size. Stretch ignores the aspect ratio; "
                "center crop keeps the middle; pad fits the whole image and fills the rest with black.")
_PRECISION_HELP = "bfloat16 halves the memory of activations; features come back as float32 either way."
_RUNTIME_LABELS = {"auto": "Auto", "tensorflow": "TensorFlow", "openvino": "OpenVINO"}
_RUNTIME_HELP = ("The engine that runs the network. Auto: OpenVINO on this CPU server once the network has been "
                 "converted for it (in the background, the first time; TensorFlow serves meanwhile), else "
                 "TensorFlow. Both give the same features to within rounding.")


# Labels must not depend on the backbone: the browser keeps the label of a radio's choice.
_WEIGHTS_LABELS = {"pretrained": "Pretrained", "random": "Random (untrained)", "file": "Local weights file"}


def _images_section() -> None:
    st.header("Images", divider="gray")
    st.radio("Source", list(_SOURCE_LABELS), format_func=_SOURCE_LABELS.get, key="sb_source", persist_state=KEEP, horizontal=True)
    if st.session_state["sb_source"] == "demo":
        st.selectbox("Demo set", list(DEMO_SETS), format_func=lambda n: _DEMO_LABELS.get(n, n), key="sb_demo", persist_state=KEEP)
        if st.session_state["sb_demo"] in ("shapes", "digits"):
            st.slider("Images per class", min_value=2, max_value=50, key="sb_per_class", persist_state=KEEP)
    else:
        limits = state.UPLOAD_LIMITS
        st.file_uploader(
            "Images, or a .zip with one folder per class",
            type=state.UPLOAD_TYPES,
            accept_multiple_files=True,
            key="sb_upload",
            on_change=state.keep_upload,
            # The app's own per-file cap (Streamlit's dropzone then says it, not its 200 MB default).
            max_upload_size=max(1, limits.max_file_bytes // 2**20),
            help=(f"Up to {limits.max_files} images, {_mib(limits.max_file_bytes)} each and "
                  f"{_mib(limits.max_total_bytes)} in all. In a .zip, the folder an image sits in is its class "
                  "(cats/a.jpg → cats). Files stay in this session only."),
        )
        shown = {f.file_id for f in (st.session_state.get("sb_upload") or [])}
        kept = state.uploaded_files()
        if kept and not shown & {f.file_id for f in kept}:
            # The browser lost the uploader's list (a page switch from a button) while the files are kept.
            st.caption("In use: " + ", ".join(state.escape_markdown(f.name) for f in kept[:5])
                       + (f" and {len(kept) - 5} more" if len(kept) > 5 else ""))
            st.button("Forget these files", key="sb_forget_upload", on_click=state.forget_upload,
                      icon=":material/delete:")
    images = state.current_images(stop_if_empty=False)
    if len(images):
        classes = images.classes
        summary = state.plural(len(images), "image")
        if classes:
            summary += f" · {len(classes)} {'class' if len(classes) == 1 else 'classes'}"
        st.caption(summary)
    if images.problems:
        # Collapsible: a zip with hundreds of bad members must not push the network choices out of sight.
        n = len(images.problems)
        with st.expander(f":material/warning: Left out: {state.plural(n, 'file')}", expanded=n <= 3):
            st.warning(state.bullet_list((p.message for p in images.problems), limit=50), icon=None)
    if images.notes:
        with st.expander(f"Notes on {state.plural(len(images.notes), 'file')}"):
            st.markdown(state.bullet_list((n.message for n in images.notes), limit=30))


def _network_section() -> None:
    st.header("Network", divider="gray")
    names = list(BACKBONES) + ([custom_model.CUSTOM] if custom_model.upload_enabled() else [])
    state.ensure_choice("sb_backbone", names, state.DEFAULT_BACKBONE)
    cached = imagenet_cached()  # files only: which backbones have ImageNet weights on this machine
    st.selectbox("Backbone", names, key="sb_backbone", persist_state=KEEP,
                 format_func=lambda name: _backbone_label(name, cached.get(name)),
                 help="✓ ImageNet: its ImageNet weights are on this server. Others need a download (when the "
                      "server is online) or run with Random weights; demo-shapes ships with trained weights.")
    if st.session_state["sb_backbone"] == custom_model.CUSTOM:
        _custom_model_section()
        _precision_section(None)
        _weights_badge()
        return
    spec = get_spec(st.session_state["sb_backbone"])
    st.caption(spec.description)
    options = ["pretrained", "random"] + (["file"] if state.local_weights_allowed() else [])
    state.ensure_choice("sb_weights", options, "pretrained")
    pretrained = ("the weights trained on the shapes demo set, shipped with the app" if spec.pretrained == "shipped"
                  else "ImageNet weights from the Keras cache (downloaded once when online)")
    st.radio("Weights", options, format_func=_WEIGHTS_LABELS.get, key="sb_weights", persist_state=KEEP,
             help=f"Pretrained for {spec.name}: {pretrained}. Random: the same architecture, untrained (seed 0).")
    if st.session_state["sb_weights"] == "random":
        _calibration_toggle()
    if st.session_state["sb_weights"] == "file":
        st.text_input("Weights file (.weights.h5) on the server", key="sb_weights_path", persist_state=KEEP,
                      help="Saved with model.save_weights(...) from the same architecture, include_top=False.")

    _precision_section(spec)
    _weights_badge()


_CALIBRATE_HELP = ("Re-estimates each batch-normalisation layer's statistics from these images (one pass, "
                   "at most 128 images). An untrained network with batch normalisation otherwise shrinks its "
                   "activations layer after layer until the features collapse. This is not training: the "
                   "convolutions stay random, so the maps show the architecture's shapes and strides at a "
                   "usable scale, not learned features. Held in this session only; recalibrated when the "
                   "images change.")


def _calibration_toggle() -> None:
    """Random weights on a backbone with batch normalisation: offer to calibrate its statistics on these images."""
    request = state.backbone_request()
    try:
        base, _ = cache.load_backbone_cached(request.replace(weights="none"))
    except Exception:  # the badge below says what went wrong with the network itself
        return
    if not has_batchnorm(base.model):
        return
    st.toggle("Calibrate batch-norm statistics on these images", key="sb_bn_calibrate", persist_state=KEEP,
              help=_CALIBRATE_HELP)
    if st.session_state.get("sb_bn_calibrate") and not calibrated.is_calibrated(request):
        st.caption("Calibration needs at least 2 images: random weights as they are for now.")


def _backbone_label(name: str, has_imagenet: bool | None = None) -> str:
    """``"resnet50 (ResNet) · ✓ ImageNet"``: the family, and whether ImageNet weights are on this machine."""
    if name == custom_model.CUSTOM:
        return "Your model (upload a .keras file)"
    label = f"{name} ({BACKBONES[name].family})" if BACKBONES[name].family else name
    if has_imagenet is True:
        return f"{label} · ✓ ImageNet"
    if has_imagenet is False:
        return f"{label} · no ImageNet weights here"
    return label


def _custom_model_section() -> None:
    """Model upload: only when the deployment allows it (LAYER_EXPLORER_ALLOW_MODEL_UPLOAD=1)."""
    st.caption("Your own Keras model: audited first (only built-in Keras layers, no code), then loaded "
               "with safe_mode. It stays in your session only.")
    uploaded = st.file_uploader(f"Model file (≤ {_mib(custom_model.MAX_MODEL_BYTES)})", type=custom_model.upload_types(),
                                key="sb_model_upload")
    if uploaded is None:
        return
    if uploaded.size > custom_model.MAX_MODEL_BYTES:
        st.error(f"{state.escape_markdown(uploaded.name)} is {_mib(uploaded.size)}, over the "
                 f"{_mib(custom_model.MAX_MODEL_BYTES)} limit for model files.", icon=":material/error:")
        return
    try:
        with st.spinner("Checking and loading your model…"):
            held = custom_model.accept_upload(uploaded.name, uploaded.getvalue())
    except LayerExplorerError as exc:
        reasons = getattr(exc, "reasons", None) or [state.user_message(exc)]
        st.error(f"**{state.escape_markdown(uploaded.name)} was not loaded.**\n\n"
                 + state.bullet_list([state.user_message(r) for r in reasons]), icon=":material/gpp_bad:")
        return
    h, w = held.input_size
    st.caption(f"{state.escape_markdown(held.file_name)}: {len(held.layers)} feature-map layers, input {h}×{w}.")


def _precision_section(spec) -> None:
    with st.expander("Input size, resize, precision" if spec else "Resize, precision", expanded=False):
        if spec is None:
            st.radio("Resize policy", list(state.APP_RESIZE_POLICIES), format_func=_RESIZE_LABELS.get,
                     key="sb_resize", persist_state=KEEP, help=_RESIZE_HELP)
            st.radio("Precision", list(PRECISIONS), key="sb_precision", persist_state=KEEP, horizontal=True, help=_PRECISION_HELP)
            _runtime_radio()
            return
        size_key = state.input_size_key(spec.name)
        st.session_state.setdefault(size_key, int(spec.input_size[0]))
        st.number_input("Input size (pixels per side)", min_value=int(spec.min_input_size), max_value=1024,
                        step=8, key=size_key, persist_state=KEEP,
                        help=f"Default for {spec.name}: {spec.input_size[0]}×{spec.input_size[1]}. Smaller is faster; "
                             "feature maps shrink with it.")
        st.radio("Resize policy", list(state.APP_RESIZE_POLICIES), format_func=_RESIZE_LABELS.get,
                 key="sb_resize", persist_state=KEEP, help=_RESIZE_HELP)
        st.radio("Precision", list(PRECISIONS), key="sb_precision", persist_state=KEEP, horizontal=True, help=_PRECISION_HELP)
        _runtime_radio()


def _runtime_radio() -> None:
    options = [r for r in RUNTIMES if r != "openvino" or openvino_available()]
    st.radio("Runtime", options, key="sb_runtime", persist_state=KEEP, horizontal=True,
             format_func=_RUNTIME_LABELS.get, help=_RUNTIME_HELP)


def _runtime_line(config) -> None:
    """Which engine and precision actually ran this configuration (the extractor says; none before it first ran)."""
    info = cache.engine_info(config)
    if info is None:
        chosen = _RUNTIME_LABELS.get(config.runtime, config.runtime)
        st.caption(f"Runtime: {chosen}, {config.precision} (shown here once the network has run).")
        return
    line = f"Runs on {_RUNTIME_LABELS.get(info.runtime, info.runtime)}, {info.precision}"
    if info.converting:
        line += " (converting for OpenVINO in the background; switches when ready)"
    st.caption(line + ".")
    if info.note:
        st.caption(state.escape_markdown(info.note))


def _weights_badge() -> None:
    resolved = state.resolve_backbone()
    if resolved.backbone is None:
        st.badge("Weights not loaded", icon=":material/error:", color="red")
    else:
        weights = resolved.backbone.weights
        if weights.kind == "random" and weights.bn_calibrated_on:
            st.badge("Random weights, BN calibrated — not trained", icon=":material/casino:", color="orange")
        elif weights.kind == "random":
            st.badge("Random weights — not trained", icon=":material/casino:", color="orange")
        else:
            short = {"imagenet": "ImageNet weights", "shipped": "Trained demo weights", "file": "Weights from a file"}
            if custom_model.is_custom(resolved.config.name):
                short["file"] = "Your model's weights"
            st.badge(short.get(weights.kind, "Trained weights"), icon=":material/verified:", color="green")
        st.caption(f"Loaded: {state.escape_markdown(weights.description)}.")
        _runtime_line(resolved.config)
        if resolved.note:
            st.warning(resolved.note, icon=":material/warning:")


def render_sidebar() -> None:
    """Draw the image and network choices (call once per run, before the page runs)."""
    state.init_state()
    state.begin_run()
    with st.sidebar:
        _images_section()
        _network_section()
        about_server.render(inference_slot.LIMITS, lanes=inference_slot.LANES, pool=inference_slot.MODELS)


def ensure_shell(*, from_app: bool = False) -> None:
    """Draw the page frame (page config and sidebar) exactly once per run: the one legacy-mode workaround.

    app.py calls ``ensure_shell(from_app=True)`` before it runs the page; every page file starts
    with ``ensure_shell()``. Why pages must call it too: with a ``pages/`` folder, Streamlit runs a
    page file on its own (legacy multipage mode) until app.py has called ``st.navigation`` once in
    the process: a fresh server's first deep link and each ``AppTest.switch_page`` run. The page
    then draws the same sidebar itself (same keys, so the choices hold). app.py's URL paths
    differ from the file names on purpose: a legacy-mode request for one of them matches no page
    file, so Streamlit falls back to app.py, whose ``st.navigation`` serves the page in the frame.
    The flag app.py leaves is consumed by the page, so it means "this run" only.
    """
    if not from_app and st.session_state.pop(_SHELL_FLAG, False):
        return
    pin_blas_threads()  # once per process, before this session computes anything (see ui.native_threads)
    st.set_page_config(page_title="Layer Explorer", page_icon=":material/layers:", layout="wide")
    styles.inject()
    inference_slot.start_watch()  # once per process: gone sessions' batch work is cancelled
    render_sidebar()
    if from_app:
        st.session_state[_SHELL_FLAG] = True
