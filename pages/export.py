"""Export: the chosen layers × poolings as files, the 2-D maps, a Projector bundle, and the code.

Layout only. Features come from the same cached pass as the other pages
(ui.features.fetch_features); the files are built by extractor.export through ui.exports
caches, so a rerun never rebuilds them. Download buttons use ``on_click="ignore"``: clicking
one downloads without rerunning the page. File names are fixed strings (ui.exports.FILE_NAMES).
"""

import streamlit as st

from extractor import representative_layers
from extractor.errors import LayerExplorerError
from ui import exports, features, health, state
from ui.config import describe_config as config_text
from ui.config import runtime_text, weights_caveat
from ui.sidebar import ensure_shell

ensure_shell()


st.title("Export")
st.markdown(
    "Take the feature vectors with you: pick layers and poolings (the Layer-selection page recommends one), "
    "then download them for NumPy, pandas or a spreadsheet, the 2-D maps, a bundle for TensorFlow's "
    "Embedding Projector, and a script that extracts the same features from any folder of images."
)



def choose(table, blocks, images, config):
    all_layers = [info.name for info in table]
    layers_key = features.widget_key("ex_layers", config.name)
    start = exports.export_start(config, images, blocks, all_layers)
    layers0, poolings0, source, result = start.layers, start.poolings, start.source, start.sweep
    if start.handed_over:  # "Use … in Export" on the Layer-selection page: that choice replaces the last one here
        state.remember(layers_key, layers0)
        state.remember("ex_poolings", poolings0)
    if start.handed_over and source.startswith("your choice"):
        st.toast(f"Export set to {state.escape_markdown(', '.join(layers0))} with {', '.join(poolings0)} pooling.",
                 icon=":material/check:")
    origin = start.origin
    if origin is not None and origin.config is not None:
        st.caption(f"Chosen from the sweep of {state.escape_markdown(origin.images_text)} through "
                   f"{state.escape_markdown(config_text(origin.config))}, features computed on "
                   f"{runtime_text(origin.runtime)}.")
    if start.differences:
        st.warning("**The sidebar differs from the sweep this choice came from**, so these files would hold features "
                   "the sweep never scored:\n\n" + state.bullet_list(start.differences)
                   + "\n\nSwitch the sidebar back, or run the sweep again on **Layer selection**.",
                   icon=":material/difference:")
    c1, c2 = st.columns([3, 2])
    with c1:
        layers = state.persistent(st.multiselect, "Layers", all_layers, key=layers_key, default=layers0,
                             help="Any layer with feature maps, input side first; block outputs are what the other "
                                  "pages compare.")
    with c2:
        poolings = state.persistent(st.multiselect, "Poolings", list(features.POOLING_CHOICES), key="ex_poolings", default=poolings0,
                               format_func=lambda p: features.POOLING_LABELS.get(p, p))
    if result is not None and result.recommendation is not None:
        rec = result.recommendation
        st.caption(f"Recommended by this session's sweep: {state.escape_markdown(rec.layer)} with {rec.pooling} "
                   f"pooling ({rec.score:.0%} {'linear-probe' if rec.metric == 'linear_acc' else 'k-NN'} accuracy).")
    elif source.startswith("the default"):
        st.caption("Starting from the last block with average pooling. Run the sweep on the Layer-selection page "
                   "for a recommendation.")
    order = {name: i for i, name in enumerate(all_layers)}
    return sorted(layers, key=order.get), [p for p in features.POOLING_CHOICES if p in poolings]


def download(label, data, kind, mime, help_text, key):
    st.download_button(label, data=data, file_name=exports.FILE_NAMES[kind], mime=mime, on_click="ignore", key=key,
                       icon=":material/download:", help=help_text, width="stretch")


def feature_files(eid, selected, names, labels) -> None:
    st.subheader("Feature vectors")
    c1, c2, c3 = st.columns(3)
    with c1:
        download("Features (.npz)", exports.npz_bytes(eid, selected, names, labels), "npz", "application/octet-stream",
                 "np.load(...) gives 'paths', 'labels' and one (images, dims) float32 array per layer/pooling; "
                 "no pickle needed.", "ex_dl_npz")
    with c2:
        download("Features (.parquet)", exports.parquet_bytes(eid, selected, names, labels), "parquet",
                 "application/vnd.apache.parquet",
                 "One row per image: paths, labels, and one list-of-float32 column per layer/pooling "
                 "(pandas.read_parquet).", "ex_dl_parquet")
    with c3:
        data, why = exports.csv_bytes_or_message(eid, selected, names, labels)
        if data is not None:
            download("Features (.csv)", data, "csv", "text/csv",
                     "Wide table for spreadsheets: paths, labels, then one column per dimension.", "ex_dl_csv")
        else:
            st.info(f"{why}", icon=":material/table_view:")
    st.caption("Rows follow the image order in the sidebar; 'paths' are the file names (for uploads) or demo names.")


def map_files(ex) -> None:
    st.subheader("2-D maps")
    maps = exports.maps_export(ex)
    if maps.coords:
        download("2-D coordinates (.csv)", exports.coords_csv_bytes(maps.eid, maps.coords, ex.names, ex.labels),
                 "coords", "text/csv", "paths, labels, then an x and a y column per map.", "ex_dl_coords")
        st.caption("Included: " + "; ".join(state.escape_markdown(line) for line in maps.listed) + ". t-SNE and UMAP "
                   "maps appear here once computed on the Embeddings page for these images.")
    if maps.problems:
        st.info("No map for:\n\n" + state.bullet_list(f.message for f in maps.problems), icon=":material/scatter_plot:")


def projector(ex) -> None:
    st.subheader("TensorFlow Embedding Projector")
    key = ex.keys[0]
    if len(ex.keys) > 1:
        key = state.persistent(st.selectbox, "Vectors to explore", ex.keys, key="ex_projector", default=ex.keys[0])
    try:
        blob = exports.projector_file(ex, key)
    except LayerExplorerError as exc:
        st.info(state.user_message(exc), icon=":material/info:")
        return
    download("Projector bundle (.zip)", blob, "projector", "application/zip",
             "vectors.tsv, metadata.tsv, sprite.png and the projector config.", "ex_dl_projector")
    st.caption("Open projector.tensorflow.org, click **Load**, and choose vectors.tsv and metadata.tsv from the "
               "unpacked zip: PCA, t-SNE and UMAP in 3-D, with search by name. The README inside explains how to "
               "see the thumbnails too.")


def reproduce(config, layers, poolings, names, weights_info, images) -> None:
    st.subheader("Reproduce it")
    blob, script = exports.reproduce_files(config, layers, poolings, images=list(names), weights_info=weights_info,
                                           image_set=images)
    c1, c2 = st.columns(2)
    with c1:
        download("Settings (config.json)", blob, "config", "application/json",
                 "Backbone, weights (and which kind were loaded), input size, layers, poolings, resize policy, precision, "
                 "and the exported rows' order.", "ex_dl_config")
    with c2:
        download("Script (extract_features.py)", script, "script", "text/x-python",
                 "Runs the same extraction on any images or folders and writes features.npz.", "ex_dl_script")
    st.markdown(f"`python {exports.FILE_NAMES['script']} my_images/` writes features.npz with the same vectors (needs "
                "Layer Explorer installed: `pip install .`; a model or weights file goes beside the script).")
    st.code(script, language="python", line_numbers=False)


with state.page_guard("preparing the downloads"):
    images = state.current_images()
    backbone, table = state.current_backbone()
    config = state.current_config()
    blocks = [info.name for info in representative_layers(table, "block")]
    layers, poolings = choose(table, blocks, images, config)
    if not layers or not poolings:
        st.info("Choose at least one layer and one pooling.", icon=":material/touch_app:")
        st.stop()
    fetch = features.fetch_features(table, blocks, layers, poolings, images=images, config=config)
    feats = fetch.features
    if fetch.skipped:
        st.warning("Left out of the export:\n\n" + state.bullet_list(
            f"{key}: {why}" for key, why in fetch.skipped.items()), icon=":material/memory:")
    if not fetch.keys:
        st.stop()
    if feats.failures:
        st.warning(f"Images left out ({len(feats.failures)}):\n\n"
                   + state.bullet_list(f.message for f in feats.failures), icon=":material/warning:")
    ex = exports.export_set(fetch, images, config)
    unusable = health.health_message(health.feature_health(ex.selected, config, backbone))
    if unusable:
        st.warning(unusable, icon=":material/blur_off:")
    st.markdown(f"**{state.plural(len(ex.names), 'image')}** × **{state.plural(len(ex.keys), 'configuration')}** "
                f"({', '.join(f'{state.escape_markdown(k)}: {ex.selected[k].shape[1]:,}' for k in ex.keys)} dims) "
                f"= {ex.dims:,} numbers per image, {exports.size_text(ex.float32_bytes)} as float32.")
    st.caption(f"Features of {state.escape_markdown(images.summary())} through "
               f"{state.escape_markdown(config_text(config))} ({state.escape_markdown(backbone.weights.description)}).")
    caveat = weights_caveat(config)
    if caveat:
        st.warning(caveat, icon=":material/casino:")
    feature_files(ex.eid, ex.selected, ex.names, ex.labels)
    map_files(ex)
    projector(ex)
    reproduce(config, layers, poolings, ex.names, backbone.weights, images)
