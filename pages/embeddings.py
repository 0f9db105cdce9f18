"""Embeddings: every image as a point, one 2-D map per layer × pooling, side by side.

Layout only. Features come from one cached forward pass for every block layer and global
pooling (ui.features.fetch_features → ui.cache.pooled_features); maps, scores and thumbnails
from ui.features / ui.charts caches keyed by content. Display options (colour, point size, selection)
never recompute features or maps; t-SNE and UMAP run only when their button is pressed.
"""

import streamlit as st

from extractor import representative_layers, split_key
from extractor.errors import LayerExplorerError
from extractor.reduce import DegenerateFeaturesError, EmbeddingError, TooFewImagesError, umap_available
from ui import charts, embedding_maps, features, heap, rendered, state
from ui.sidebar import ensure_shell

ensure_shell()

SHOWN_SELECTED = 48  # thumbnails shown per selection; the rest are counted
SHOWN_UNDER_MAP = 24

st.title("Embeddings")
st.markdown(
    "Each image becomes one **feature vector** at a layer, once its feature maps are pooled over height and "
    "width. Here every image is a point in a 2-D map of those vectors: images the layer finds similar land "
    "close together. Compare layers (rows) and poolings (columns) to see which one separates your classes, "
    "hover a point to see its image, and drag a box to list the images in it."
)



def choose(blocks: list[str], backbone_name: str):
    layer_col, pool_col = st.columns([3, 2])
    layers = state.persistent(
        layer_col.multiselect, "Layers (block outputs)", blocks, key=features.widget_key("emb_layers", backbone_name),
        default=features.default_map_layers(blocks),
        help="One layer per block of the network: the block's output. Listed input side first.")
    poolings = state.persistent(
        pool_col.multiselect, "Poolings", list(features.POOLING_CHOICES), key="emb_poolings", default=list(features.DEFAULT_MAP_POOLINGS),
        format_func=lambda p: features.POOLING_LABELS.get(p, p),
        help="How a layer's H×W×C maps become one vector per image. flatten keeps every value: large and slow.")
    layers = [name for name in blocks if name in layers]  # depth order, whatever the click order
    poolings = [p for p in features.POOLING_CHOICES if p in poolings]

    methods = ["pca", "tsne"] + (["umap"] if umap_available() else [])
    m_col, p_col, b_col = st.columns([2, 2, 1], vertical_alignment="bottom")
    with m_col:
        method = state.persistent(
            st.radio, "Map", methods, key="emb_method", default="pca", horizontal=True, format_func=features.METHOD_LABELS.get,
            help="PCA keeps the two directions of largest variance (axes mean something, distances are faithful "
                 "at large scale). t-SNE and UMAP keep each image's neighbours together (clusters show better; "
                 "distances between clusters mean little).")
    params, clicked = (), False
    if method == "tsne":
        with p_col:
            perplexity = state.persistent(
                st.slider, "Perplexity", key="emb_perplexity", default=30, min_value=2, max_value=100, step=1,
                help="Roughly how many neighbours each point pays attention to. It must stay below the number "
                     "of images; it is lowered automatically (with a note) when there are too few.")
        params = features.method_params("tsne", perplexity=perplexity)
    elif method == "umap":
        with p_col:
            n_neighbors = state.persistent(st.slider, "Neighbours", key="emb_umap_neighbors", default=15,
                                           min_value=2, max_value=100, step=1)
        params = features.method_params("umap", n_neighbors=n_neighbors)
    if method != "pca":
        with b_col:
            clicked = st.button(f"Compute {features.METHOD_NAMES[method]} maps", key="emb_compute", type="primary")

    return layers, poolings, method, params, clicked


def display_options(has_labels: bool):
    with st.expander("Display options", expanded=False):
        d1, d2, d3 = st.columns(3)
        with d1:
            color_options = ["label", "none"] if has_labels else ["none"]
            color_by = state.persistent(st.radio, "Colour points by", color_options, key="emb_color", default=color_options[0],
                                        format_func={"label": "Class", "none": "One colour"}.get, horizontal=True)
        with d2:
            point_size = state.persistent(st.slider, "Point size", key="emb_point_size", default=70, min_value=10,
                                          max_value=300, step=10)
        with d3:
            select = state.persistent(st.radio, "Select images by", ["box", "click"], key="emb_select", default="box",
                                      horizontal=True,
                                      format_func={"box": "Dragging a box", "click": "Clicking points"}.get,
                                      help="Clicking: shift-click adds points. Double-click empties the selection.")
    return color_by, point_size, select


def panel(key, fetch, ctx):
    """One map: title, chart with tooltips and selection, scores. Returns (frame, selected rows) or None."""
    layer, pooling = split_key(key)
    feats = fetch.features
    dim = feats.features[key].shape[1] if key in feats.features else None
    st.markdown(f"**{state.escape_markdown(layer)}** · {pooling}" + (f" · {dim:,} dims" if dim else ""))
    if key in fetch.skipped:
        st.warning(fetch.skipped[key], icon=":material/memory:")
        return None
    method, params = ctx["method"], ctx["params"]
    if method != "pca" and (ctx["rid"], key, method, params) not in st.session_state.get(features.COMPUTED_MAPS_KEY, set()):
        st.info(f"Not computed yet for these settings: press **Compute {features.METHOD_NAMES[method]} maps** above.",
                icon=":material/hourglass_empty:")
        return None
    X = feats.features[key]
    health = features.feature_health(ctx["rid"], key, X, random_weights=ctx["random"], batchnorm=ctx["batchnorm"])
    try:
        emb = features.embedding(ctx["rid"], key, method, params, X)
    except TooFewImagesError as exc:
        st.warning(state.user_message(exc), icon=":material/filter_none:")
        return None
    except DegenerateFeaturesError as exc:
        # The health check names the likely cause (untrained network, batch norm), not the images.
        st.warning(health.message if not health.ok else state.user_message(exc), icon=":material/blur_off:")
        return None
    except EmbeddingError as exc:
        st.warning(state.user_message(exc), icon=":material/warning:")
        return None
    frame = charts.map_frame(emb.coords, feats.names, feats.labels, ctx["urls"])
    spec = charts.scatter_spec(
        method=method, color_by=ctx["color_by"], classes=tuple(ctx["classes"]), point_size=int(ctx["point_size"]),
        select=ctx["select"], explained=tuple(emb.explained_variance) if emb.explained_variance else None,
        images=ctx["urls"] is not None, labelled=ctx["has_labels"], unlabelled=ctx["unlabelled"])
    param = "box" if ctx["select"] == "box" else "pick"
    event = st.vega_lite_chart(frame, spec, key=features.widget_key("emb_chart", ctx["rid"][:10], method, ctx["select"], key),
                               on_select="rerun", selection_mode=[param], width="stretch")
    lines = []
    if emb.explained_variance:
        lines.append(charts.variance_text(emb) + ".")
    if not health.ok:
        st.warning(health.message, icon=":material/blur_off:")  # a silhouette of these would be noise
    elif ctx["has_labels"]:
        sil = features.feature_silhouette(ctx["rid"], ctx["lid"], key, X, feats.labels)
        if sil is not None:
            lines.append(f"Silhouette {sil:.2f} (cosine, in all {X.shape[1]:,} dimensions; 1 = classes apart).")
    lines.extend(emb.notes)
    if lines:
        st.caption(" ".join(lines))
    rows = charts.selected_indices(frame, event)
    if rows:  # right under the map; names and the full list are in "Selected images" below the grid
        shown = rows[:SHOWN_UNDER_MAP]
        st.image(rendered.pngs([ctx["thumbs"][i] for i in shown]), width=40, output_format="PNG",
                 alt=[f"Selected in {key}: {feats.names[i]}" for i in shown])
        st.caption(f"{len(rows)} selected" + (f" (first {len(shown)} shown)" if len(rows) > len(shown) else "")
                   + " · names below the maps.")
    return frame, rows


def selected_images(selections, feats, thumbs) -> None:
    st.subheader("Selected images")
    picked = [(key, rows) for key, rows in selections if rows]
    if not picked:
        st.caption("Drag a box on any map (or switch to clicking points in the display options) to list "
                   "those images here.")
        return
    for key, rows in picked:
        st.markdown(f"**{len(rows)}** selected in {state.escape_markdown(key)}")
        shown = rows[:SHOWN_SELECTED]
        st.image(rendered.pngs([thumbs[i] for i in shown]), width=96, output_format="PNG",
                 caption=[state.escape_markdown(charts.short_name(feats.names[i])) for i in shown],
                 alt=[f"Selected: {feats.names[i]}" for i in shown])
        if len(rows) > len(shown):
            st.caption(f"… and {len(rows) - len(shown)} more.")


def agreement(keys, fetch, rid) -> None:
    usable = [k for k in keys if k not in fetch.skipped]
    n = len(fetch.features.names)
    most = features.max_overlap_k(n)
    if most < 1:
        return  # each image's neighbours are all the others: every pair would agree 100 %, saying nothing
    st.subheader("Do two maps agree on who is similar?")
    if len(usable) < 2:
        st.caption("Choose at least two layers or poolings to compare their neighbourhoods.")
        return
    if most == 1:
        k = 1
    else:
        k = state.persistent(st.slider, "Neighbours per image (k)", key=features.overlap_k_key(most),
                             default=min(10, most), min_value=1, max_value=most,
                             help=f"At most {most} with {n} images: with more, each image's neighbours would "
                                  "be all the other images, and every pair of maps would agree completely.")
    try:
        matrix = features.overlap_table(rid, tuple(usable), int(k), fetch.features.features)
    except LayerExplorerError as exc:
        st.info(state.user_message(exc), icon=":material/info:")
        return
    chance = int(k) / max(1, n - 1)
    st.markdown(
        f"Each cell: the share of each image's **{state.plural(int(k), 'nearest neighbour')}** (cosine similarity, "
        "in the full feature space) that both configurations keep. 100% means the same neighbourhoods; two "
        f"unrelated feature spaces would share about {chance:.0%} here."
    )
    st.vega_lite_chart(spec=charts.overlap_spec(matrix), width="content")


def neighbours(keys, fetch, images, thumbs) -> None:
    st.subheader("Nearest neighbours")
    feats = fetch.features
    usable = [k for k in keys if k not in fetch.skipped]
    if not usable or len(feats.names) < 2:
        st.caption("Needs at least two images.")
        return
    first = {}
    for i, digest in enumerate(feats.digests):
        first.setdefault(digest, i)
    c1, c2, c3 = st.columns([3, 2, 2])
    with c1:
        digest = state.persistent(st.selectbox, "Image", feats.digests, key="emb_nn_image", default=feats.digests[0],
                                  format_func=lambda d: images.describe(feats.indices[first[d]]) if d in first else d)
    with c2:
        key = state.persistent(st.selectbox, "Under", usable, key="emb_nn_config", default=usable[-1])
    most = min(12, len(feats.names) - 1)
    with c3:
        if most > 1:
            k = state.persistent(st.slider, "How many", key=features.widget_key("emb_nn_k", str(most)),
                                 default=min(6, most), min_value=1, max_value=most)
        else:
            k = 1
    index = first[digest]
    try:
        found = features.neighbour_table(feats.features[key], index, int(k))
    except LayerExplorerError as exc:
        st.info(state.user_message(exc), icon=":material/info:")
        return
    pics = [thumbs[index]] + [thumbs[j] for j, _ in found]
    captions = [f"query · {state.escape_markdown(charts.short_name(feats.names[index]))}"]
    captions += [f"cos {sim:.3f} · {state.escape_markdown(charts.short_name(feats.names[j]))}" for j, sim in found]
    st.image(rendered.pngs(pics), width=112, caption=captions, output_format="PNG",
             alt=[f"Query: {feats.names[index]}"] + [f"Neighbour: {feats.names[j]}" for j, _ in found])
    what = "The image" if len(found) == 1 else f"The {len(found)} images"
    st.caption(f"{what} most similar to the query under {state.escape_markdown(key)} "
               "(cosine similarity of the feature vectors: 1 = same direction).")


@st.fragment
def maps_and_selection(keys, fetch, ctx, images, thumbs, ncols: int) -> None:
    """Display options, the grid of maps and the images selected in them.

    A fragment: a drag or click on a map, or a display option, reruns only this part of the page,
    never the sidebar, the feature fetch or the sections below.
    """
    with state.page_guard("drawing the embedding maps"):
        color_by, point_size, select = display_options(images.has_labels)
        ctx = dict(ctx, color_by=color_by, point_size=point_size, select=select)
        feats = fetch.features
        if color_by == "label" and feats.has_labels:
            st.vega_lite_chart(spec=charts.legend_spec(tuple(images.classes), ctx["unlabelled"]), width="stretch")
        selections = []
        for start in range(0, len(keys), ncols):
            for key, col in zip(keys[start:start + ncols], st.columns(ncols, gap="medium"), strict=False):
                with col:
                    out = panel(key, fetch, ctx)
                if out is not None:
                    selections.append((key, out[1]))
        selected_images(selections, feats, thumbs)


with state.page_guard("drawing the embedding maps"):
    images = state.current_images()
    backbone, table = state.current_backbone()
    config = state.current_config()
    blocks = [info.name for info in representative_layers(table, "block")]
    layers, poolings, method, params, clicked = choose(blocks, config.name)
    if not layers or not poolings:
        st.info("Choose at least one layer and one pooling.", icon=":material/touch_app:")
        st.stop()
    plan = features.plan_maps(layers, poolings)
    keys, dropped, shown_layers, shown_poolings = plan.keys, plan.dropped, plan.layers, plan.poolings
    if dropped:
        st.info(f"{len(keys) + dropped} layer × pooling combinations chosen; showing the first {len(keys)} "
                f"(at most {features.PANEL_LIMIT} maps at once). Remove a layer or pooling to see the others.",
                icon=":material/grid_on:")
    fetch = features.fetch_features(table, blocks, shown_layers, shown_poolings, images=images, config=config)
    heap.keep_network(config, "embeddings", *shown_layers, *shown_poolings)  # its extractor is loaded now
    feats = fetch.features
    if feats.failures:
        st.warning(f"Left out ({len(feats.failures)}):\n\n" + state.bullet_list(f.message for f in feats.failures),
                   icon=":material/warning:")
    rid = features.rows_id(config, feats.digests)
    thumbs = [images.thumbnails[i] for i in feats.indices]
    # Each thumbnail sent once (served at a /media URL); the maps' data carry its URL only.
    urls, _ = charts.tooltip_thumbnails(images.digests, images.thumbnails, feats.indices, len(keys), serve=True)
    if urls is None:
        st.caption("Tooltips show file names only: thumbnails for this many images × maps would make the page heavy. "
                   "Fewer maps at once bring them back.")

    too_few = features.too_few_for_maps(len(feats.names))
    if too_few:
        # One message for the page, not one box per map; neighbours below still mean something.
        st.warning(too_few, icon=":material/filter_none:")
        neighbours(keys, fetch, images, thumbs)
        st.stop()
    if method != "pca" and clicked:
        embedding_maps.compute_slow_maps(keys, fetch, rid, method, params)

    ctx = {
        "rid": rid, "lid": features.labels_id(feats.labels), "method": method, "params": params, "urls": urls,
        "classes": images.classes, "has_labels": feats.has_labels, "thumbs": thumbs,
        "unlabelled": any(lab is None for lab in feats.labels),
        "random": config.weights == "none", "batchnorm": features.has_batchnorm_layers(backbone),
    }
    st.caption(embedding_maps.page_caption(len(feats.names), backbone.name, method, config))
    maps_and_selection(keys, fetch, ctx, images, thumbs, features.grid_columns(len(shown_layers), len(shown_poolings)))
    agreement(keys, fetch, rid)
    neighbours(keys, fetch, images, thumbs)
