"""Feature maps: what one layer of the network sees in one image.

Layout only; the pictures and numbers come from ui.feature_maps, the activations from
ui.cache.raw_maps (one forward pass per image × backbone × block, cached). Display options
(how many channels, colour scale, colormap, overlay, opacity) never rerun the network.
"""

import streamlit as st

from extractor import representative_layers
from ui import cache, explain_view, features, heap, rendered, state
from ui import feature_maps as fm
from ui.code_snippets import keras_snippet
from ui.sidebar import ensure_shell

ensure_shell()

SHOWN_PX = 320  # display width of the network's input and of the overlay
PRIMARY = (47, 111, 223)  # the theme's primary colour: frame of the chosen thumbnail

st.title("Feature maps")
st.markdown(
    "A convolutional layer turns an image into a stack of **channels**. Each channel is a small map that "
    "lights up where one learned pattern occurs. Early layers answer to colours and edges at full "
    "resolution; deeper layers look at larger regions, at a coarser resolution, and respond to more "
    "abstract patterns. Pick an image and a layer to see all of its channels at once."
)


def pick_image(images) -> int:
    # Options are content digests, labelled by name: a label never changes under its option (see
    # state.persistent), and another image set resets the choice instead of keeping a position.
    first = {}
    for i, digest in enumerate(images.digests):
        first.setdefault(digest, i)
    n = len(images)
    pick_col, strip_col = st.columns([2, 3], vertical_alignment="bottom")
    with pick_col:
        digest = state.persistent(st.selectbox, "Image", images.digests, key="fm_image", default=images.digests[0],
                                  format_func=lambda d: images.describe(first[d]) if d in first else d)
    index = first[digest]
    with strip_col:
        start = max(0, min(index - 3, n - 8))
        window = list(range(start, min(n, start + 8)))
        st.image(
            rendered.pngs([fm.frame(images.thumbnails[i], color=PRIMARY if i == index else (255, 255, 255))
                           for i in window]),
            width=48,
            output_format="PNG",
            alt=[f"Thumbnail of {images.names[i]}" for i in window],
        )
    return index


def pick_layer(layers):
    """A block, then one of its layers; first time: a mid-depth block's output."""
    blocks = list(dict.fromkeys(info.block for info in layers))
    reps = representative_layers(layers, "block")
    default_layer = reps[(len(reps) - 1) // 2] if reps else layers[len(layers) // 2]
    by_name = {info.name: info for info in layers}
    block_col, layer_col = st.columns(2)
    with block_col:
        block = state.persistent(st.selectbox, "Block", blocks, key="fm_block", default=default_layer.block,
                                 help="Layers are grouped in blocks as the architecture defines them, "
                                      "input side first.")
    in_block = [info for info in layers if info.block == block]
    block_default = default_layer.name if default_layer.block == block else in_block[-1].name
    with layer_col:
        name = state.persistent(st.selectbox, "Layer", [info.name for info in in_block], key="fm_layer",
                                default=block_default,
                                format_func=lambda n: f"{n} ({by_name[n].kind})" if n in by_name else n)
    info = by_name[name]
    h, w, c = info.shape
    stride = f"; one position covers about {info.stride}×{info.stride} input pixels" if info.stride else ""
    stride += explain_view.field_note(info)
    st.caption(f"{state.escape_markdown(info.name)}: {h}×{w} positions × {c} channels "
               f"({state.escape_markdown(info.class_name)}){stride}.")
    return info, in_block


def channel_grid(fmap, layer_name: str, order, key: tuple) -> None:
    h, w, c = fmap.shape
    st.subheader(f"Channels of {layer_name}")
    opt1, opt2, opt3 = st.columns(3)
    with opt1:
        count = state.persistent(st.select_slider, "Channels to show", [16, 32, 64, 128, "all"], key="fm_count",
                                 default=32)
    with opt2:
        scale = state.persistent(
            st.radio, "Colour scale", fm.SCALES, key="fm_scale", default="channel", horizontal=True,
            format_func={"channel": "Per channel", "shared": "Shared"}.get,
            help="Per channel: each map uses its own range, so weak channels still show their pattern. "
                 "Shared: one range for the whole layer, so brightness compares across channels.",
        )
    with opt3:
        cmap = state.persistent(st.selectbox, "Colormap", fm.COLORMAPS, key="fm_cmap", default="viridis")
    shown = order if count == "all" else order[: int(count)]
    mosaic, mosaic_width = rendered.mosaic(key, fmap, tuple(int(c) for c in shown), scale, cmap, 96, 160,
                                           fm.CONTENT_PX)
    scale_note = "Each channel on its own colour scale." if scale == "channel" else "One colour scale for the layer."
    st.image(
        mosaic,
        width=mosaic_width,  # natural size, composed to fit the column: never blurred, never spilling out
        output_format="PNG",  # lossless: the maps are blocks of flat colour
        caption=(f"{len(shown)} of {c} channels, {h}×{w} each, highest mean activation first (reading order); "
                 f"the number in each corner is the channel index. {scale_note}"),
        alt="Feature-map grid",
    )
    if scale == "channel":
        low, high = "each channel's lowest value", "its highest"
    else:
        low, high = f"{float(fmap.min()):.3g}", f"{float(fmap.max()):.3g}"
    colour_key(cmap, low, high, "Colour bar of the feature-map grid")


def colour_key(cmap: str, low: str, high: str, alt_text: str) -> None:
    """A colour bar with what its two ends mean."""
    st.image(rendered.png(fm.colorbar(cmap)), width=240, output_format="PNG", alt=alt_text, caption=f"{low} ← colour → {high}")


def where_it_fires(raw, fmap, layer_name: str, order, resize: str, key: tuple) -> None:
    st.subheader("Where it fires")
    options = ["mean"] + [int(ch) for ch in order]
    src_col, op_col = st.columns(2)
    with src_col:
        source = state.persistent(
            st.selectbox, "Heat map of", options, key="fm_overlay", default="mean",
            format_func=lambda o: "Mean of all channels" if o == "mean" else f"Channel {o}",
            help="Channels are listed by mean activation, highest first.",
        )
    with op_col:
        opacity = state.persistent(st.slider, "Opacity", key="fm_opacity", default=0.5, min_value=0.0,
                                   max_value=1.0, step=0.05)
    heat = fm.mean_map(fmap) if source == "mean" else fmap[..., int(source)]
    what = "the mean of all channels" if source == "mean" else f"channel {source}"
    img_col, heat_col = st.columns(2)
    with img_col:
        st.image(rendered.png(fm.enlarge(raw.view, SHOWN_PX)), width=SHOWN_PX, alt="Network input",
                 output_format="PNG",
                 caption=f"What the network sees: {raw.view.shape[0]}×{raw.view.shape[1]} pixels ({resize}).")
    with heat_col:
        st.image(rendered.overlay((*key, source), raw.view, heat, opacity, SHOWN_PX), width=SHOWN_PX,
                 output_format="PNG", alt="Activation overlay",
                 caption=f"{what.capitalize()} of {state.escape_markdown(layer_name)} ({fmap.shape[0]}×"
                         f"{fmap.shape[1]}), bilinearly upsampled onto the image.")
        colour_key("inferno", f"{float(heat.min()):.3g}", f"{float(heat.max()):.3g}", "Colour bar of the heat map")


def numbers(fmap, health, key: tuple) -> None:
    table_col, hist_col = st.columns(2)
    value_format = "%.4f" if health.ok else "%.2e"  # collapsed values would all read 0.0000
    with table_col:
        st.subheader("Top channels")
        if not health.ok:
            st.warning(health.message, icon=":material/blur_off:")
        st.caption(f"All {fmap.shape[2]} channels, highest mean first; click a column title to sort.")
        st.dataframe(
            fm.channel_stats(fmap),
            hide_index=True,
            height=330,
            column_config={
                "channel": st.column_config.NumberColumn("Channel", format="%d"),
                "mean": st.column_config.NumberColumn("Mean", format=value_format),
                "max": st.column_config.NumberColumn("Max", format=value_format),
                "zero_fraction": st.column_config.ProgressColumn(
                    "Zeros", min_value=0.0, max_value=1.0, format="percent",
                    help="Share of positions where the channel is exactly 0 (switched off by a ReLU)."),
            },
        )
    with hist_col:
        st.subheader("All activations")
        spec, zero_fraction, zeros_left_out = rendered.histogram(key, fmap)
        st.vega_lite_chart(spec=spec, width="stretch")
        if zeros_left_out:
            st.caption(f"{zero_fraction:.0%} of the values are exactly 0 — a ReLU switched them off — and "
                       "are left out so the rest of the distribution shows.")
        else:
            st.caption(f"{zero_fraction:.0%} of the values are exactly 0.")


def hierarchy_strip(raw, hierarchy, key: tuple) -> None:
    st.subheader("From edges to abstractions")
    st.markdown(
        "The same image at one layer per resolution, input side first. Maps get coarser as the network "
        "looks at larger regions; each channel stands for a more abstract pattern."
    )
    mode = state.persistent(st.radio, "Each tile shows", ["mean", "top"], key="fm_hier_mode", default="mean",
                            horizontal=True,
                            format_func={"mean": "Mean of all channels", "top": "Most active channel"}.get)
    tiles = [rendered.png(fm.resample_nearest(raw.view, 160, 160))]
    sizes = [f"input · {raw.view.shape[0]}×{raw.view.shape[1]}×3"]
    for info in hierarchy:
        m = raw.maps[info.name]
        tiles.append(rendered.hierarchy_tile((*key, info.name), m, 160, mode))
        sizes.append(f"{info.name} · {m.shape[0]}×{m.shape[1]}×{m.shape[2]}")
    alts = ["Hierarchy: input"] + [f"Hierarchy: {info.name}" for info in hierarchy]
    # One column per stage: the whole strip on one row, however many stages (no orphan tile below).
    stages = fm.stage_captions(len(hierarchy))
    for col, tile, size, stage, text in zip(st.columns(len(tiles)), tiles, sizes, stages, alts, strict=True):
        with col:
            st.image(tile, width="stretch", output_format="PNG", alt=text, caption=state.escape_markdown(size))
            st.caption(stage)
    st.caption("Which depth is best for telling your classes apart is measured, not guessed:")
    l_col, e_col = st.columns(2)
    l_col.page_link("pages/layer_selection.py", label="Accuracy over depth (Layer selection)",
                    icon=":material/leaderboard:")
    e_col.page_link("pages/embeddings.py", label="Classes as clusters, layer by layer (Embeddings)",
                    icon=":material/scatter_plot:")


def keras_code(backbone_name: str, layer_name: str, config) -> None:
    with st.expander("The same in plain Keras (copy and run it)"):
        st.markdown("One model cut at the chosen layer, one batched `predict`, pooling over height and width "
                    "only, so every image keeps one number per channel.")
        st.code(keras_snippet(backbone_name, layer_name, config.input_size, weights=config.weights,
                              resize=config.resize, precision=config.precision),
                language="python", wrap_lines=True)


with state.page_guard("showing the feature maps"):
    images = state.current_images()
    backbone, layers = state.current_backbone()
    config = state.current_config()
    index = pick_image(images)
    layer, in_block = pick_layer(layers)
    clf = explain_view.class_evidence_panel(images, index, backbone, config)

    # One forward pass for this block's layers and one layer per resolution, cached per image.
    hierarchy = representative_layers(layers, "stride")
    wanted = {info.name for info in in_block} | {info.name for info in hierarchy}
    needed = tuple(info.name for info in layers if info.name in wanted)  # depth order: a stable cache key
    with st.spinner(f"Running {backbone.name} on the image…"):
        raw = cache.raw_maps(config, needed, images.digests[index], images.items[index])
    heap.keep_network(config, *needed)  # the extractor for these layers is loaded now
    fmap = raw.maps[layer.name]
    order = fm.channel_order(fmap)
    health = fm.map_health(fmap, layer.name, random_weights=config.weights == "none",
                           batchnorm=features.has_batchnorm_layers(backbone))

    shown_key = (config, images.digests[index])  # what decides every cached picture below, with the layer
    channel_grid(fmap, layer.name, order, (*shown_key, layer.name))
    where_it_fires(raw, fmap, layer.name, order, config.resize, (*shown_key, layer.name))
    numbers(fmap, health, (*shown_key, layer.name))
    hierarchy_strip(raw, hierarchy, shown_key)
    keras_code(backbone.name, layer.name, config)
    explain_view.explain_sections(images, index, backbone, layers, layer, config, raw, clf=clf)
