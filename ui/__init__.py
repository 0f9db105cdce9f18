"""Layer Explorer's Streamlit layer: state, caches, sidebar, and the page-independent logic.

Pages live in ``pages/`` and are listed in app.py's ``st.navigation``; each starts with
``ui.sidebar.ensure_shell()`` (see app.py for why). They lay out widgets and call these; they never read sidebar keys, build models or run
NumPy-heavy code themselves.

``ui.state`` — the current choices (the sidebar in app.py sets them on every run)
    ``current_images(stop_if_empty=True) -> ImageSet``
        ``ImageSet(items, names, labels, digests, thumbnails, origin, problems, notes)``, index-aligned;
        decodable images only. ``items[i]`` is an ``ImageSource`` (uploads) or an RGB uint8 array
        (demo sets) — exactly what ``FeatureExtractor.extract`` takes. ``names`` are user-controlled
        for uploads: pass them through ``escape_markdown`` before any Markdown/caption.
        ``has_labels``, ``classes``, ``describe(i)``.
    ``current_backbone() -> (Backbone, list[LayerInfo])``
        or a plain-language ``st.error`` + way out and ``st.stop()``.
    ``current_config() -> BackboneConfig(name, weights, input_size, resize, precision)``
        the plain values every cache is keyed by (weights as really loaded: "pretrained", "none", a path).
    ``page_guard(doing)``  context manager: ``LayerExplorerError`` -> ``st.error``; anything else ->
        "Something went wrong while {doing}…" (details in the server log); then ``st.stop()``.
    ``persistent(widget, label, options=None, *, key, default, **kwargs)``  draw a page widget
        (``st.selectbox``/``st.radio``/``st.select_slider``/``st.slider``, or a column's) that keeps
        its last choice across reruns, pages and ``st.stop()``; use it for every page widget
        (keys prefixed by page, e.g. ``emb_perplexity``).
    ``escape_markdown(text)``, ``user_message(exc)`` (scrubs server paths), ``bullet_list(lines)``.

``ui.cache`` — every cache; inference behind one ``BoundedSemaphore(2)`` (``inference_slot()``)
    ``pooled_features(layers, poolings=("avg",), *, images=None, config=None, batch_size=32,
        show_progress=True) -> PooledFeatures(features={"layer/pooling": (N, C)}, names, labels,
        digests, indices, failures=[(name, reason)], notes)``
        for the current image set by default; cached per content chunk of 64 images, with a
        progress bar while computing. Raises ``LayerExplorerError`` subclasses (wrap in page_guard).
    ``get_extractor(name, weights, input_size, layers: tuple, poolings: tuple, precision, resize)
        -> FeatureExtractor``  warmed, shared; never mutate it. ``fx.forward_calls`` counts passes.
    ``load_backbone_cached(name, weights, input_size) -> (Backbone, tuple[LayerInfo, ...])``
    ``raw_maps(name, weights, input_size, precision, resize, layers: tuple, digest, item)
        -> RawMaps(view, maps={layer: (H, W, C)})``  full maps of ONE image (one forward pass).
    ``decode_thumbnails(digests, items)``, ``demo_images(name, per_class)``, ``array_digest(pixels)``.

``ui.feature_maps`` — NumPy/Matplotlib pictures of one map (no Streamlit): ``compose_mosaic``,
    ``channel_order``, ``overlay``, ``channel_stats``, ``activation_histogram``, ``hierarchy_tile``.
``ui.code_snippets`` — ``keras_snippet(backbone, layer, input_size, weights=..., resize=...,
    precision=..., pooling="avg")``: the plain Keras code for the current selection.
``ui.sidebar`` — ``render_sidebar()``, called once by app.py.

Example (a page)::

    import streamlit as st
    from ui import cache, state

    images = state.current_images()
    backbone, layers = state.current_backbone()
    with state.page_guard("extracting features"):
        feats = cache.pooled_features([layers[-1].name], ["avg", "gem"])
    st.write(feats.features[f"{layers[-1].name}/avg"].shape)
"""
