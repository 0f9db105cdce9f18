"""Session state and the app's current choices: which images, which backbone, what went wrong.

Pages never read widget keys themselves; they ask this module:

* :func:`current_images` -> :class:`ImageSet` (only images that decode; the rest are reported
  in the sidebar), or stops the page with a message when there is none.
* :func:`current_backbone` -> ``(Backbone, list[LayerInfo])``, or shows a plain-language
  ``st.error`` with the way out and stops the page (ImageNet weights offline, bad file, ...).
* :func:`current_config` -> :class:`BackboneConfig`, the plain values every cache is keyed by
  (with the weights that were *really* loaded).
* :func:`page_guard` around page work: ``LayerExplorerError`` becomes ``st.error``, anything
  unexpected a generic message (details go to the server log), never a traceback.

Uploaded bytes live only in this session (the uploader's own state plus a memo in
``st.session_state``); nothing here is module-level.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from extractor import BACKBONES, RESIZE_POLICIES, Backbone, LayerInfo, WeightsUnavailableError, get_spec
from extractor.backbones import ImageNetWeightsMissingError, MissingWeights, keras_cache_dir
from extractor.calibration import CalibrationError
from extractor.errors import Failure, LayerExplorerError
from extractor.features import PRECISIONS
from extractor.runtime import RUNTIMES, openvino_available
from extractor.sources import UploadLimits, gather_uploads

from . import cache, calibrated, custom_model
from .config import BackboneConfig
from .image_set import ImageSet
from .inference_slot import LIMITS

__all__ = [
    "DEFAULTS",
    "UPLOAD_TYPES",
    "UPLOAD_LIMITS",
    "LOCAL_WEIGHTS_ENV",
    "APP_RESIZE_POLICIES",
    "BackboneConfig",
    "ImageSet",
    "ResolvedBackbone",
    "KEEP",
    "init_state",
    "keep_upload",
    "uploaded_files",
    "forget_upload",
    "persistent",
    "remember",
    "ensure_choice",
    "local_weights_allowed",
    "input_size_key",
    "backbone_request",
    "begin_run",
    "resolve_backbone",
    "current_images",
    "current_backbone",
    "current_config",
    "missing_weights_message",
    "use_random_weights",
    "escape_markdown",
    "user_message",
    "page_guard",
]

logger = logging.getLogger("layer_explorer.ui")

UPLOAD_TYPES = ["png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff", "zip"]
UPLOAD_LIMITS = UploadLimits(max_files=LIMITS.max_images_per_session)  # the deployment's per-session cap
LOCAL_WEIGHTS_ENV = "LAYER_EXPLORER_ALLOW_LOCAL_WEIGHTS"
APP_RESIZE_POLICIES = tuple(p for p in RESIZE_POLICIES if p != "native")
DEFAULT_BACKBONE = "demo-shapes"  # the registry always has it (extractor.demo_cnn); an import error fails loudly

# Sidebar widget keys and their first values (set once per session, before the widgets exist).
DEFAULTS: dict[str, Any] = {
    "sb_source": "demo",
    "sb_demo": "shapes",
    "sb_per_class": 10,
    "sb_backbone": DEFAULT_BACKBONE,
    "sb_weights": "pretrained",
    "sb_weights_path": "",
    "sb_resize": "stretch",
    "sb_precision": "float32",
    "sb_runtime": "auto",
    "sb_bn_calibrate": False,
}

#: ``persist_state`` of every sidebar widget. Why: ``st.switch_page`` (the "Use … in Export" buttons)
#: starts the next run with no widget states from the browser, and Streamlit then drops the state
#: of every widget on a page change, the sidebar's included, unless the widget keeps it for the session.
KEEP = "session"

#: The uploaded files in use. The file uploader has no ``persist_state``, so the files are kept here,
#: set only by the uploader's ``on_change`` (a user adding or removing files), never by a state cleanup.
UPLOAD_KEPT_KEY = "_sb_upload_files"

_RESOLVED_KEY = "_resolved_backbone"  # (request signature, ResolvedBackbone) of this run

GENERIC_HINT = "Try another image or backbone; if it keeps happening, the server log has the details."


# --------------------------------------------------------------------------------------------
# plain values


@dataclass(frozen=True)
class ResolvedBackbone:
    """The outcome of loading the chosen backbone: either a backbone or a message for the user."""

    config: BackboneConfig  # what is really loaded (weights may differ from the request, see note)
    backbone: Backbone | None = None
    layers: tuple[LayerInfo, ...] = ()
    error: str | None = None
    note: str | None = None
    missing: MissingWeights | None = None  # set when ImageNet weights are missing: the page offers Random


# --------------------------------------------------------------------------------------------
# session state


def init_state() -> None:
    """Set the sidebar's first values once per session (widgets then take them from the state)."""
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(key, value)


def keep_upload() -> None:
    """The uploader's ``on_change``: the files the user chose are the ones in use (until changed again)."""
    st.session_state[UPLOAD_KEPT_KEY] = list(st.session_state.get("sb_upload") or [])


def uploaded_files() -> list:
    """The uploaded files in use (``UploadedFile`` objects; their bytes stay in this session)."""
    kept = st.session_state.get(UPLOAD_KEPT_KEY)
    if kept is None:  # nothing chosen through the uploader yet (e.g. set from a test): take its value
        return list(st.session_state.get("sb_upload") or [])
    return list(kept)


def forget_upload() -> None:
    """Drop the kept files (a button's ``on_click``), e.g. when the uploader no longer shows them."""
    st.session_state[UPLOAD_KEPT_KEY] = []


def persistent(widget, label: str, options: Sequence | None = None, *, key: str, default, **kwargs):
    """Draw a page widget that keeps its last choice, and return the value.

    ``widget`` is ``st.selectbox``/``st.radio`` (given ``index=``), ``st.multiselect`` (``default=``, a
    list), ``st.select_slider`` (``value=`` among ``options``) or ``st.slider``/``st.number_input``
    (``value=``), on ``st`` or on a column.
    The choice is remembered under a separate, non-widget key and handed back to the widget as
    its starting value on every run. Why not only the widget key: after a run that ends in
    ``st.stop()`` before the widget is drawn, the browser forgets the widget while the server
    keeps its value, and a widget that took its value from the session state would then *show*
    its first option while the page *uses* the remembered one. A choice no longer among
    ``options`` falls back to ``default``.

    A ``format_func`` must give the same label for the same option on every run (no numbers that
    depend on the image or the input size in it): the browser keeps the *label*, and a value
    whose label changed under it shows as no selection at all.
    """
    memo = _choice_key(key)
    name = getattr(widget, "__name__", "")
    if name == "multiselect":
        # Several choices: those no longer among the options are dropped; if none is left, the
        # default (filtered likewise). A selection emptied on purpose stays empty.
        options = list(options)
        held = st.session_state.get(memo)
        chosen = [o for o in (held or []) if o in options]
        if held is None or (held and not chosen):
            chosen = [o for o in default if o in options]
        value = widget(label, options, default=chosen, key=key, **kwargs)
        st.session_state[memo] = list(value)
        return value
    current = st.session_state.get(memo, default)
    if options is not None:
        options = list(options)
        if current not in options:
            current = default if default in options else options[0]
    if name in ("selectbox", "radio"):
        value = widget(label, options, index=options.index(current), key=key, **kwargs)
    elif options is not None:
        value = widget(label, options=options, value=current, key=key, **kwargs)
    else:
        value = widget(label, value=current, key=key, **kwargs)
    st.session_state[memo] = value
    return value


def _choice_key(key: str) -> str:
    return f"_choice__{key}"


def remember(key: str, value: Sequence) -> None:
    """Set a widget's remembered choice (what :func:`persistent` hands it next), e.g. from a recommendation."""
    st.session_state[_choice_key(key)] = list(value)


def ensure_choice(key: str, options: Sequence, default) -> None:
    """Before a selector is drawn: reset its state to ``default`` when the stored choice is no
    longer among ``options`` (another backbone, a smaller image set)."""
    if st.session_state.get(key) not in list(options):
        st.session_state[key] = default


def local_weights_allowed() -> bool:
    return os.environ.get(LOCAL_WEIGHTS_ENV) == "1"


def input_size_key(backbone: str) -> str:
    """One input-size widget per backbone, so each starts at its own default size."""
    return f"sb_input_size__{backbone}"


def backbone_request() -> BackboneConfig:
    """The backbone configuration the sidebar asks for (not yet loaded)."""
    init_state()
    name = st.session_state["sb_backbone"]
    if name not in BACKBONES:
        name = DEFAULT_BACKBONE
    spec = get_spec(name)
    side = st.session_state.get(input_size_key(name)) or spec.input_size[0]
    size = (int(side), int(side)) if spec.input_size[0] == spec.input_size[1] else tuple(spec.input_size)
    choice = st.session_state.get("sb_weights", "pretrained")
    if choice == "random":
        weights = "none"
    elif choice == "file" and local_weights_allowed():
        weights = str(st.session_state.get("sb_weights_path") or "").strip() or "pretrained"
    else:
        weights = "pretrained"
    resize = st.session_state.get("sb_resize", "stretch")
    precision = st.session_state.get("sb_precision", "float32")
    config = BackboneConfig(
        name=name,
        weights=weights,
        input_size=size,
        resize=resize if resize in APP_RESIZE_POLICIES else "stretch",
        precision=precision if precision in PRECISIONS else "float32",
        runtime=_runtime_choice(),
    )
    if weights == "none" and st.session_state.get("sb_bn_calibrate"):
        images = current_images(stop_if_empty=False)
        if len(images) >= 2:  # calibration needs two images at least; fewer: plain random (the toggle says so)
            config = calibrated.calibration_request(config, list(images.digests), images.origin)
    return config


def _runtime_choice() -> str:
    """The sidebar's runtime (auto / tensorflow / openvino); openvino only where it is installed."""
    runtime = st.session_state.get("sb_runtime", "auto")
    if runtime not in RUNTIMES or (runtime == "openvino" and not openvino_available()):
        return "auto"
    return runtime


def begin_run() -> None:
    """Forget the last run's resolved backbone (the sidebar calls this first on every run)."""
    st.session_state.pop(_RESOLVED_KEY, None)


def resolve_backbone() -> ResolvedBackbone:
    """Load the requested backbone (cached); failures become a message, never an exception.

    Resolved once per script run: the sidebar's badge, ``current_backbone()`` and
    ``current_config()`` share one result (kept for the run, or while the request is the same).
    If the shipped demo weights are missing, the demo backbone falls back to random weights,
    with a note saying so (the weights badge then says "random").
    """
    custom = st.session_state.get("sb_backbone") == custom_model.CUSTOM and custom_model.upload_enabled()
    held = custom_model.current() if custom else None
    signature = (custom, held.digest if held else None, backbone_request())
    memo = st.session_state.get(_RESOLVED_KEY)
    if memo is not None and memo[0] == signature:
        return memo[1]
    resolved = _resolve_custom() if custom else _resolve_request(signature[2])
    if resolved.backbone is not None:  # a failure is tried again on the next call
        st.session_state[_RESOLVED_KEY] = (signature, resolved)
    return resolved


def missing_weights_message(missing: MissingWeights) -> str:
    """The missing-ImageNet-weights refusal in the sidebar's words (never the server's cache folder).

    Example:
        >>> m = MissingWeights("vgg16", "pretrained", "vgg16_notop.h5", "/srv/keras/models", "not-cached-offline")
        >>> print(missing_weights_message(m).splitlines()[0])
        **No ImageNet weights for vgg16 on this server.** The ImageNet weights for vgg16 are not available: they are not in its Keras cache, and it cannot download them (no internet).
    """
    if missing.cause == "load-failed":
        why = "they could not be downloaded or read" + (f" ({missing.detail})." if missing.detail else ".")
    else:
        why = "they are not in its Keras cache, and it cannot download them (no internet)."
    why = f"The ImageNet weights for {missing.backbone} are not available: {why}"
    ways = ["**Random** weights (the same architecture, untrained) to explore its layers, shapes and strides"]
    if local_weights_allowed():
        ways.append("a **Local weights file** (.weights.h5 saved from the same architecture)")
    ways.append("the offline **demo-shapes** backbone, whose trained weights ship with the app")
    return (f"**No ImageNet weights for {missing.backbone} on this server.** {why}\n\n"
            "Under **Weights** in the sidebar, choose " + "; or ".join(ways) + ".")


def use_random_weights() -> None:
    """``on_click`` of "Use random weights instead": the sidebar's Weights choice becomes Random."""
    st.session_state["sb_weights"] = "random"


def _calibrate(request: BackboneConfig) -> None:
    """Make sure the session holds the calibrated backbone ``request`` names (built from its images)."""
    images = current_images(stop_if_empty=False)
    base, _ = cache.load_backbone_cached(request.replace(weights="none"))
    chosen = calibrated.chosen_indices(len(images))
    views = np.stack([cache.network_view(images.items[i], request.input_size, request.resize) for i in chosen])
    calibrated.ensure(request, base, views)


def _resolve_request(request: BackboneConfig) -> ResolvedBackbone:
    try:
        if calibrated.is_calibrated(request):
            _calibrate(request)
        backbone, layers = cache.load_backbone_cached(request)
        return ResolvedBackbone(request, backbone, layers)
    except CalibrationError as exc:  # e.g. no batch normalisation: plain random weights, and say why
        plain = _resolve_request(request.replace(weights="none"))
        return dataclasses.replace(plain, note=f"Batch-norm statistics not calibrated: {user_message(exc)}")
    except ImageNetWeightsMissingError as exc:
        return ResolvedBackbone(request, error=missing_weights_message(exc.missing), missing=exc.missing)
    except WeightsUnavailableError as exc:
        message = user_message(exc)
        if request.name == "demo-shapes" and request.weights == "pretrained":
            fallback = request.replace(weights="none")
            try:
                backbone, layers = cache.load_backbone_cached(fallback)
            except Exception:
                logger.exception("demo backbone with random weights failed too")
            else:
                note = ("The shipped demo weights could not be loaded, so demo-shapes runs with random weights "
                        "(not trained). Run `python -m extractor demo train` to recreate them.")
                return ResolvedBackbone(fallback, backbone, layers, note=note)
        return ResolvedBackbone(request, error=message)
    except LayerExplorerError as exc:
        return ResolvedBackbone(request, error=user_message(exc))
    except Exception:
        logger.exception("loading backbone %r failed", request)
        return ResolvedBackbone(request, error=f"Something went wrong while loading {request.name}. {GENERIC_HINT}")


def _resolve_custom() -> ResolvedBackbone:
    """The session's uploaded model, or a message saying to upload one."""
    held = custom_model.current()
    resize = st.session_state.get("sb_resize", "stretch")
    precision = st.session_state.get("sb_precision", "float32")
    if held is None:
        config = BackboneConfig(custom_model.CUSTOM, "upload", (224, 224))
        return ResolvedBackbone(config, error="No model uploaded yet: upload a .keras file under "
                                              "**Your model** in the sidebar, or pick a built-in backbone.")
    config = BackboneConfig(
        held.config_name, "upload", held.input_size,
        resize=resize if resize in APP_RESIZE_POLICIES else "stretch",
        precision=precision if precision in PRECISIONS else "float32",
        runtime=_runtime_choice(),
    )
    return ResolvedBackbone(config, held.backbone, held.layers)


def current_backbone() -> tuple[Backbone, list[LayerInfo]]:
    """The loaded backbone and its feature-map layers, or an ``st.error`` and ``st.stop()``."""
    resolved = resolve_backbone()
    if resolved.backbone is None:
        # One box: the message already names the ways out (in the sidebar's words).
        st.error(resolved.error or "The network could not be loaded.", icon=":material/error:")
        if resolved.missing is not None or resolved.config.weights not in ("none", "upload"):
            st.button("Use random weights instead", key="state_use_random", on_click=use_random_weights,
                      icon=":material/casino:")
        st.stop()
    return resolved.backbone, list(resolved.layers)


def current_config() -> BackboneConfig:
    """The configuration of the backbone really loaded (keys for :mod:`ui.cache`)."""
    return resolve_backbone().config


# --------------------------------------------------------------------------------------------
# images


def _memo(key: str, signature: tuple, build):
    """A per-session memo: rebuild only when ``signature`` changes (never shared between users)."""
    held = st.session_state.get(key)
    if held is not None and held[0] == signature:
        return held[1]
    value = build()
    st.session_state[key] = (signature, value)
    return value


def _demo_set(name: str, per_class: int) -> ImageSet:
    demo = cache.demo_images(name, per_class)
    cap, notes = LIMITS.max_images_per_session, []
    if len(demo.images) > cap:  # the deployment's per-session cap: fewer per class, and say so
        fewer = max(1, per_class * cap // len(demo.images))
        notes.append(Failure("", f"This server allows {cap} images per session: {fewer} per class are used, "
                                 f"not {per_class}.", "batch"))
        demo = cache.demo_images(name, fewer)
    if name == "photos":  # native-size photos: real thumbnails
        decoded = cache.decode_thumbnails(tuple(demo.digests), demo.images)
        thumbs = [d.thumbnail for d in decoded]
    else:
        thumbs = list(demo.images)  # already 64 px
    return ImageSet(list(demo.images), list(demo.names), list(demo.labels), list(demo.digests), thumbs, f"demo:{name}",
                    notes=notes)


def _upload_set(files: list) -> ImageSet:
    pairs = [(f.name, f.getvalue()) for f in files]
    batch = gather_uploads(pairs, UPLOAD_LIMITS)
    problems = list(batch.problems)
    notes = [Failure("", note, "batch") for note in batch.notes]
    with st.spinner(f"Reading {len(batch.sources)} images…"):
        decoded = cache.decode_thumbnails(tuple(s.digest for s in batch.sources), batch.sources)
    out = ImageSet([], [], [], [], [], "upload", problems, notes)
    for source, d in zip(batch.sources, decoded, strict=False):
        if d.thumbnail is None:
            out.problems.append(Failure(source.name, d.error, "image"))
            continue
        out.items.append(source)
        out.names.append(source.name)
        out.labels.append(source.label)
        out.digests.append(source.digest)
        out.thumbnails.append(d.thumbnail)
        out.notes.extend(Failure(source.name, note, "note") for note in d.notes)
    return out


def current_images(stop_if_empty: bool = True) -> ImageSet:
    """The current image set (demo or uploads), decodable images only.

    With ``stop_if_empty``, a page with nothing to show gets an ``st.info`` and stops.
    """
    init_state()
    if st.session_state.get("sb_source") == "upload":
        files = uploaded_files()
        signature = tuple((f.file_id, f.name, f.size) for f in files)
        images = _memo("_images_upload", signature, lambda: _upload_set(files))
    else:
        name = st.session_state.get("sb_demo", "shapes")
        per_class = int(st.session_state.get("sb_per_class") or DEFAULTS["sb_per_class"])
        per_class = 0 if name == "photos" else per_class
        images = _memo("_images_demo", (name, per_class), lambda: _demo_set(name, per_class or 1))
    if stop_if_empty and len(images) == 0:
        if st.session_state.get("sb_source") == "upload":
            st.info("Upload images (or a .zip with one folder per class) in the sidebar, or switch the source "
                    "back to a demo set.", icon=":material/upload:")
        else:
            st.info("The demo set is empty; pick another one in the sidebar.")
        st.stop()
    return images


# --------------------------------------------------------------------------------------------
# messages

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:=^&])")


def escape_markdown(text: str) -> str:
    """Backslash-escape Markdown punctuation so user-controlled text (file names) shows as typed."""
    return _MD_SPECIAL.sub(r"\\\1", str(text))


def _known_dirs() -> list[str]:
    dirs = []
    try:
        kc = keras_cache_dir()
        dirs += [str(kc), str(kc.parent)]
    except Exception:
        pass
    dirs += [str(Path(__file__).resolve().parent.parent), tempfile.gettempdir(), str(Path.home())]
    return sorted({d for d in dirs if d and d != "/"}, key=len, reverse=True)


_ABS_PATH = re.compile(r"(?<![\w.\-/])/(?:[\w.\-]+/)+[\w.\-]*")


def user_message(exc: BaseException) -> str:
    """The exception's message, fit for the browser: server paths replaced by words."""
    text = str(exc)
    for d in _known_dirs():
        label = "the Keras cache folder" if d.rstrip("/").endswith("models") else "a server folder"
        text = text.replace(d, label)
    return _ABS_PATH.sub("a server folder", text)


@contextmanager
def page_guard(doing: str):
    """Catch errors where the UI meets the data: a message and ``st.stop()``, never a traceback.

    Streamlit's own stop/rerun signals are ``BaseException`` and pass through untouched.
    """
    try:
        yield
    except LayerExplorerError as exc:
        st.error(user_message(exc), icon=":material/error:")
        st.stop()
    except Exception:
        logger.exception("unexpected error while %s", doing)
        st.error(f"Something went wrong while {doing}. {GENERIC_HINT}", icon=":material/error:")
        st.stop()


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def bullet_list(lines: Iterable[str], limit: int = 12) -> str:
    """Escaped Markdown bullets, at most ``limit`` of them plus a count of the rest."""
    items = list(lines)
    shown = [f"- {escape_markdown(line)}" for line in items[:limit]]
    if len(items) > limit:
        shown.append(f"- … and {len(items) - limit} more")
    return "\n".join(shown)
