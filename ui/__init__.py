"""Layer Explorer's Streamlit layer: state, caches, sidebar, and the page-independent logic.

Pages live in ``pages/`` and are listed in app.py's ``st.navigation``; each starts with
``ui.sidebar.ensure_shell()`` (see app.py for why). They lay out widgets and call these; they never read sidebar keys, build models or run
NumPy-heavy code themselves.

Modules import one way only (``tests/test_import_graph.py`` checks it):
``server_limits`` → ``work_lanes``/``model_pool`` → ``session_watch`` → ``inference_slot`` → ``config``/``image_set`` → ``custom_model`` → ``cache`` → ``state`` → the page helpers
(``features``, ``charts``, ``exports``, ``sweeps``) → ``sidebar`` → pages.

``ui.inference_slot`` — the one gate in front of every build, warm-up and forward pass: ``LANES`` (two lanes:
    ``inference_slot()`` for one image, ``batch_job()``/``chunk_slot()`` for whole sets, chunk by chunk, sessions
    in turn, stopped when the session goes), ``MODELS`` (bounded LRU pool of shared networks), ``LIMITS``.
``ui.config`` — ``BackboneConfig(name, weights, input_size, resize="stretch", precision="float32",
    runtime="tensorflow")``, frozen: the one value every cache and builder takes, first and whole.
    ``build_extractor(backbone, config, layers, poolings)``: the one place a config becomes a FeatureExtractor.
``ui.image_set`` — ``ImageSet(items, names, labels, digests, thumbnails, origin, problems, notes)``,
    index-aligned; decodable images only. ``items[i]`` is an ``ImageSource`` (uploads) or an RGB uint8
    array (demo sets). ``names`` are user-controlled for uploads: escape them before any Markdown.

``ui.state`` — the current choices (the sidebar in app.py sets them on every run)
    ``current_images(stop_if_empty=True) -> ImageSet``
    ``current_backbone() -> (Backbone, list[LayerInfo])`` or a plain-language ``st.error`` and ``st.stop()``.
    ``current_config() -> BackboneConfig`` with the weights as really loaded ("pretrained", "none", a path).
    The backbone is resolved once per script run (``begin_run()``, called by the sidebar, starts a run).
    ``page_guard(doing)``  context manager: ``LayerExplorerError`` -> ``st.error``; anything else ->
        "Something went wrong while {doing}…" (details in the server log); then ``st.stop()``.
    ``persistent(widget, label, options=None, *, key, default, **kwargs)``  a page widget that keeps
        its last choice across reruns, pages and ``st.stop()`` (keys prefixed by page, e.g. ``emb_perplexity``).
    ``escape_markdown(text)``, ``user_message(exc)`` (scrubs server paths), ``bullet_list(lines)``.

``ui.cache`` — every cache; each takes the config and the images it works on as arguments
    ``pooled_features(layers, poolings=("avg",), *, images, config, batch_size=32, show_progress=True)
        -> PooledFeatures(features={"layer/pooling": (N, C)}, names, labels, digests, indices, failures, notes)``
        cached per content chunk of 64 images. Raises ``LayerExplorerError`` subclasses (wrap in page_guard).
    ``get_extractor(config, layers, poolings=("avg",)) -> FeatureExtractor``  warmed, shared; never mutate it.
    ``load_backbone_cached(config) -> (Backbone, tuple[LayerInfo, ...])``
    ``raw_maps(config, layers: tuple, digest, item) -> RawMaps(view, maps={layer: (H, W, C)})``
        full maps of ONE image (one forward pass).
    ``decode_thumbnails(digests, items)``, ``demo_images(name, per_class)``, ``array_digest(pixels)``.

``ui.feature_maps`` — NumPy/Matplotlib pictures of one map (no Streamlit): ``compose_mosaic``,
    ``channel_order``, ``overlay``, ``channel_stats``, ``activation_histogram``, ``hierarchy_tile``.
``ui.code_snippets`` — ``keras_snippet(backbone, layer, input_size, weights=..., resize=...,
    precision=..., pooling="avg")``: the plain Keras code for the current selection.
``ui.sidebar`` — ``render_sidebar()``, called once by app.py; ``ensure_shell()`` first in every page.
``ui.private_cache`` — ``data(...)``: ``st.cache_data`` whose entries for an upload live in that session only
    (``scope="session"``, dropped when the tab goes); the demo sets' entries stay shared.
``ui.reclaim`` — after sessions end, one full collection through the frozen heap and ``malloc_trim``
    (at most once a minute), so a closed class gives its memory back.
``ui.calibrated`` — a session's batch-norm-calibrated random backbone and its extractors (never shared).
``ui.rendered`` — pictures as cached PNG bytes and charts as cached Vega-Lite dicts (nothing re-encoded per rerun).
``ui.embedding_maps`` — the Embeddings page's planning: slow maps (t-SNE) as one batch job, the page caption.

Example (a page)::

    import streamlit as st
    from ui import cache, state

    images = state.current_images()
    backbone, layers = state.current_backbone()
    config = state.current_config()
    with state.page_guard("extracting features"):
        feats = cache.pooled_features([layers[-1].name], ["avg", "gem"], images=images, config=config)
    st.write(feats.features[f"{layers[-1].name}/avg"].shape)
"""
