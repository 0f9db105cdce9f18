"""Channels & layers: what each channel responds to, how healthy a layer is, how layers relate (CKA).

Layout only. Pooled features come from the app's shared cache (ui.channels_view.block_features →
ui.features.fetch_features → ui.cache.pooled_features), so switching layer or channel never runs
the network for the ranking; only the 2k ranked images go through the layer once, for the crops.
Health, CKA and crops are cached in ui.channels_view; activation maximisation runs behind a button.
"""

import streamlit as st

from extractor import BACKBONES, representative_layers
from extractor.activation_max import activation_maximisation
from extractor.cka import estimator_name
from extractor.errors import LayerExplorerError
from ui import cache, rendered, state
from ui import channels_view as cv
from ui import features as feat
from ui.charts import short_name
from ui.sidebar import ensure_shell

ensure_shell()

ORDER_LABELS = {"max_value": "Strongest first", "selectivity": "Most class-selective first",
                "fires_on": "Fires most often first", "channel": "Channel number"}

st.title("Channels & layers")
st.markdown(
    "A feature map shows what a channel does on *one* image. To see what a channel **is**, look at the images "
    "of your set that excite it most, and the ones that leave it silent. Below that: how healthy a layer is "
    "(dead channels, class-selective ones), how alike the layers' representations are (**CKA**), and the "
    "picture a channel would like best."
)


def pick_channel(table, blocks, config_name):
    c1, c2, c4 = st.columns([3, 2, 2], vertical_alignment="bottom")
    with c4:
        all_layers = state.persistent(st.toggle, "Every layer", key="ch_all_layers", default=False,
                                      help="Off: one layer per block (its output). On: every feature-map layer, "
                                           "including convolutions before their ReLU.")
    names = [info.name for info in table] if all_layers else blocks
    with c1:
        layer = state.persistent(st.selectbox, "Layer", names, key=feat.widget_key("ch_layer", config_name),
                                 default=names[-1], help="Listed input side first.")
    with c2:
        order = state.persistent(st.selectbox, "Channel order", list(ORDER_LABELS), key="ch_order", default="max_value",
                                 format_func=ORDER_LABELS.get,
                                 help="The order of the channel list, taken from the health table below.")
    return layer, order


@st.fragment
def one_channel(*args) -> None:
    """:func:`channel_section` as a fragment (see there)."""
    with state.page_guard("looking at the channel"):
        channel_section(*args)


def channel_section(channels, stats, layer, feats, images, config, info, backbone, random_weights, blocks) -> None:
    """The channel picker, the images that excite the channel most and least, and its optimised picture.

    A fragment: another channel, another k or an optimisation reruns only this part, never the
    sidebar, the feature fetch, the health table or the CKA heat map (issue 14: < 0.5 s a switch).
    """
    n = len(feats.names)
    ch_col, k_col = st.columns([2, 3], vertical_alignment="bottom")
    with ch_col:
        channel = state.persistent(st.selectbox, "Channel", channels, key=feat.widget_key("ch_channel", config.name, layer),
                                   default=channels[0], format_func=lambda c: f"channel {c}",
                                   help="Channels in the order chosen above.")
    with k_col:
        k = state.persistent(st.slider, "Images per row (k)", key="ch_k", default=min(9, n), min_value=1,
                             max_value=max(2, min(24, n)), help="How many highest and lowest images to show.")

    # -- what a channel responds to
    s = stats.channels[int(channel)]
    st.subheader(f"What channel {channel} of {state.escape_markdown(layer)} responds to")
    facts = [f"status **{s.status}**", f"fires on {s.fires_on:.0%} of the images", f"highest max activation {s.max_value:.3g}"]
    if stats.has_selectivity and s.top_class is not None:
        facts.append(f"prefers **{state.escape_markdown(s.top_class)}** (selectivity {s.selectivity:.2f})")
    st.markdown(" · ".join(facts))
    highest, lowest = cv.crops_for(feats.features[f"{layer}/max"], int(channel), int(k), feats=feats, images=images,
                                   config=config, info=info, blocks=blocks)
    hi_col, lo_col = st.columns(2)
    with hi_col:
        st.markdown(f"**Highest {len(highest)}**")
        st.image(rendered.pngs([c.pixels for c in highest]), width=cv.CROP_PX,
                 caption=[f"{c.value:.3g} · {state.escape_markdown(short_name(feats.names[c.row]))}" for c in highest],
                 alt=[f"Top image for channel {channel}: {feats.names[c.row]}" for c in highest])
    with lo_col:
        st.markdown(f"**Lowest {len(lowest)}**")
        st.image(rendered.pngs([c.pixels for c in lowest]), width=cv.CROP_PX,
                 caption=[f"{c.value:.3g} · {state.escape_markdown(short_name(feats.names[c.row]))}" for c in lowest],
                 alt=[f"Lowest image for channel {channel}: {feats.names[c.row]}" for c in lowest])
    field_text = "" if info.receptive_field is None else " ({:g}×{:g} pixels at this layer)".format(*info.receptive_field)
    st.caption(
        f"Ranked by the channel's **max** over the map (max pooling), on all {state.plural(n, 'image')}. Each picture "
        f"is cropped to the receptive field of the cell where the channel peaks{field_text}: the pixels that "
        "cell can see, clipped at the image border. The number is its max activation."
    )

    # -- activation maximisation
    st.subheader(f"The picture channel {channel} likes best")
    st.markdown("Gradient ascent on the input: start from grey noise and change the pixels, step by step, to raise "
                "the channel's mean activation (with small random shifts, so the pattern must work anywhere).")
    a1, a2, a3 = st.columns([2, 1, 1], vertical_alignment="bottom")
    with a1:
        steps = state.persistent(st.slider, "Steps", key="ch_am_steps", default=50, min_value=10, max_value=200, step=10)
    am_key = (config.name, config.weights, tuple(config.input_size), layer, int(channel), int(steps))
    memo = cv.actmax_memo()
    with a2:
        run = st.button("Optimise a picture", key="ch_am_run", type="primary")
    with a3:
        cancelled = st.button("Cancel", key="ch_am_cancel", help="Stops a running optimisation.")
    if cancelled:
        st.info("Optimisation cancelled.", icon=":material/cancel:")
    if run and am_key not in memo:
        bar = st.progress(0.0, text="Optimising…")

        def show(i, total, value):
            bar.progress(i / total, text=f"Step {i} of {total}: activation {value:.3g}")

        try:
            found = activation_maximisation(backbone, layer, int(channel), steps=int(steps), progress=show,
                                            input_size=tuple(config.input_size))
        except LayerExplorerError as exc:
            st.error(state.user_message(exc))
            found = None
        bar.empty()
        if found is not None and not found.cancelled:
            cv.remember_actmax(am_key, found)
    if am_key in memo:
        found = memo[am_key]
        st.image(found.image, width=192, caption="An optimised picture, not a real image.",
                 alt=f"Activation maximisation of channel {channel} of {layer}")
        st.caption(f"Mean activation {found.start_value:.3g} → {found.best_value:.3g} in {found.steps_done} steps "
                   f"({found.seconds:.1f} s)." + (" Random weights: the pattern comes from the architecture and chance, "
                                                  "not from training." if random_weights else ""))


with state.page_guard("looking at the channels"):
    images = state.current_images()
    backbone, table = state.current_backbone()
    config = state.current_config()
    info_by_name = {info.name: info for info in table}
    blocks = [info.name for info in representative_layers(table, "block")]
    random_weights = not backbone.weights.is_pretrained

    layer, order = pick_channel(table, blocks, config.name)
    fetch = cv.block_features(table, blocks, layer, images=images, config=config)
    feats = fetch.features
    if feats.failures:
        st.warning(f"Left out ({len(feats.failures)}):\n\n" + state.bullet_list(f.message for f in feats.failures),
                   icon=":material/warning:")
    rid = feat.rows_id(config, feats.digests)
    lid = feat.labels_id(feats.labels)
    labels = tuple(feats.labels)
    info = info_by_name[layer]
    stats = cv.layer_stats(rid, lid, layer, feats.features[f"{layer}/max"], feats.features[f"{layer}/avg"], labels)
    channels = stats.order(order)
    n = len(feats.names)
    if random_weights:
        st.info("**Random weights.** Channels of an untrained network respond to colour and contrast by chance; "
                "the top images, selectivity and activation maximisation below show what the *architecture* "
                "does on its own, not what training taught it.", icon=":material/casino:")
    one_channel(channels, stats, layer, feats, images, config, info, backbone, random_weights, blocks)

    # -- channel health
    st.subheader("Channel health")
    summary_bits = [f"{stats.dead_share:.0%} of the {len(stats.channels)} channels never fire on these images",
                    f"{stats.always_on_share:.0%} fire on every image"]
    if stats.has_selectivity:
        summary_bits.append(f"mean class selectivity {stats.mean_selectivity:.2f}")
    st.markdown(f"**{state.escape_markdown(layer)}**: " + "; ".join(summary_bits) + ".")
    st.dataframe(cv.stats_table(stats), key="ch_health_table", hide_index=True, width="stretch", height=260,
                 column_config={"fires on": st.column_config.ProgressColumn("fires on", format="percent", min_value=0, max_value=1),
                                "sparsity": st.column_config.NumberColumn("sparsity", format="percent"),
                                "selectivity": st.column_config.NumberColumn("selectivity", format="%.2f")})
    never = "never positive" if not stats.rectified else "dead"
    st.caption(
        "**Dead**: zero on every image of the set (after a ReLU). **Never positive**: the same for a layer that is "
        "not rectified (e.g. a convolution before its ReLU), where negative values are normal. **Sparsity**: the "
        "share of images on which the channel stays at zero. **Selectivity** (Morcos et al. 2018): "
        "(μ_max − μ_rest) / (μ_max + μ_rest) of the channel's mean activation per class, 0 = same for every class, "
        f"1 = only one class; empty for silent channels. This layer's silent channels count as *{never}*. "
        "Click a column header to sort."
    )
    summary = cv.depth_summary(rid, lid, tuple(blocks), feats.features, labels)
    st.vega_lite_chart(cv.depth_spec(rid, lid, tuple(blocks), stats.has_selectivity, summary), width="stretch")
    st.caption("Over the block outputs, input side first. In a trained network selectivity usually rises with depth; "
               "with random weights it stays low and flat." if stats.has_selectivity else
               "Share of silent channels over the block outputs. With class labels (a folder per class, or a demo "
               "set), class selectivity is plotted too.")

    # -- layer similarity
    st.subheader("Layer similarity (linear CKA)")
    st.markdown(
        "CKA (Kornblith et al. 2019) compares two layers by how they arrange the same images: 1 = the same "
        "arrangement up to rotation and scale, 0 = unrelated. Neighbouring layers are usually alike; the first "
        "and the last much less."
    )
    m1, m2, m3 = st.columns([3, 2, 2], vertical_alignment="bottom")
    with m1:
        mode = state.persistent(st.radio, "Compare", ["within", "between"], key="ch_cka_mode", default="within",
                                horizontal=True,
                                format_func={"within": "Layers of this network", "between": "Two networks"}.get)
    with m2:
        fmode = state.persistent(st.radio, "Features", ["avg", "full"], key="ch_cka_features", default="avg",
                                 horizontal=True, format_func={"avg": "avg-pooled", "full": "full maps"}.get,
                                 help="avg-pooled: one vector per image (instant, from the cache). Full maps: every "
                                      "value of the H×W×C maps, through n×n Gram matrices built batch by batch.")
    with m3:
        debiased = st.toggle("Debiased estimator", value=n < cv.DEBIASED_BELOW, key=f"ch_cka_debiased_{n < cv.DEBIASED_BELOW}",
                             help="The unbiased HSIC estimator (Song et al. 2012). The plain estimator drifts "
                                  "towards 1 with few images; on by default below 100 images.")
    st.caption(f"{estimator_name(debiased)}; {state.plural(n, 'image')}"
               + (f" (debiased is on by default below {cv.DEBIASED_BELOW} images)." if n < cv.DEBIASED_BELOW else "."))

    other = None
    if mode == "between":
        o1, o2 = st.columns(2)
        names = [name for name in BACKBONES]
        with o1:
            other_name = state.persistent(st.selectbox, "Second network", names, key="ch_other_backbone",
                                          default=config.name if config.name in names else names[0])
        with o2:
            default_w = "none" if not random_weights else "pretrained"
            other_weights = state.persistent(st.radio, "Its weights", ["pretrained", "none"], key="ch_other_weights",
                                             default=default_w, horizontal=True,
                                             format_func={"pretrained": "Trained", "none": "Random"}.get)
        other = cv.other_config(config, other_name, other_weights)
        st.caption("Same backbone, trained against random weights: *what training changed, layer by layer* "
                   "(a high diagonal means training left that layer's arrangement of the images alone).")

    if fmode == "full":
        run_key = (rid, mode, other, debiased)
        done = st.session_state.setdefault("_ch_full_done", set())
        if st.button("Compute full-map CKA", key="ch_cka_full_run", type="primary"):
            done.add(run_key)
        if run_key not in done:
            st.info("Full maps need a forward pass per block of images: press **Compute full-map CKA**.",
                    icon=":material/hourglass_empty:")
            result = None
        else:
            items = [images.items[i] for i in feats.indices]
            o_blocks = ()
            if other is not None:
                _, o_table = cache.load_backbone_cached(other)
                o_blocks = tuple(i.name for i in representative_layers(o_table, "block"))
            result = cv.cka_full_maps(config, tuple(blocks), tuple(feats.digests), debiased, items,
                                      other=other, other_layers=o_blocks)
    elif other is None:
        result = cv.cka_within(rid, tuple(blocks), debiased, feats.features)
    else:
        _, o_table = cache.load_backbone_cached(other)
        o_blocks = [i.name for i in representative_layers(o_table, "block")]
        o_feats = cache.pooled_features(o_blocks, ["avg"], images=images, config=other)
        common = sorted(set(feats.indices) & set(o_feats.indices))
        if len(common) < len(feats.indices):
            st.warning("Some images went through only one of the two networks; comparing the rest.")
        a = {k: v[[feats.indices.index(i) for i in common]] for k, v in feats.features.items()}
        b = {k: v[[o_feats.indices.index(i) for i in common]] for k, v in o_feats.features.items()}
        result = cv.cka_between(feat.rows_id(config, tuple(common)), feat.rows_id(other, tuple(common)), tuple(blocks),
                                tuple(o_blocks), debiased, a, b)
    if result is not None:
        this = f"{config.name} ({'random' if random_weights else 'trained'})"
        that = this if other is None else f"{other.name} ({'random' if other.weights == 'none' else 'trained'})"
        spec_key = (rid, mode, other, result.features, result.debiased)
        st.vega_lite_chart(cv.cka_spec(spec_key, this, that, result), width="content", key="ch_cka_chart")
        st.caption(f"{estimator_name(result.debiased)} on {'full maps' if result.features == 'full' else 'avg-pooled features'} "
                   f"of {state.plural(result.n_images, 'image')}; rows: {state.escape_markdown(this)}, columns: "
                   f"{state.escape_markdown(that)}. n/a: a layer that does not vary over these images.")
