"""Layer selection: score every block layer × pooling on the user's labelled images, and recommend one.

Layout only. One cached forward pass gives every layer and pooling (ui.features.fetch_features);
extractor.scoring scores them (cross-validated k-NN and linear-probe accuracy, silhouette,
effective rank); extractor.sweep.layer_costs times each layer (cached per backbone). The sweep
runs behind a button and its result is kept in the session, so it survives reruns and pages.
"""

import streamlit as st

from extractor import representative_layers
from extractor.scoring import label_problem
from extractor.sweep import SweepReport
from ui import charts, features, health, state, sweeps
from ui.config import runtime_text, weights_caveat
from ui.sidebar import ensure_shell

ensure_shell()

st.title("Layer selection")
st.markdown(
    "Which layer, and which pooling, give the best feature vectors **for your images**? The sweep extracts "
    "every block's output with each pooling in one pass, then scores each vector: how often an image's "
    "nearest neighbours share its class (**k-NN accuracy**), how well a linear classifier separates the "
    "classes (**linear probe**, cross-validated), and how tight the classes are (**silhouette**). Deeper "
    "layers usually know more about objects; earlier ones, about colours and textures."
)

NO_LABELS_HELP = (
    "Upload a **.zip** laid out that way (cats/a.jpg, dogs/b.jpg, …), or pick a labelled demo set. "
    "Meanwhile the sweep shows what needs none: vector size, effective rank (how many directions carry "
    "variance) and extraction time."
)

SWEEP_CANCELLED = ("Sweep cancelled: nothing was scored. Features extracted so far are kept, so **Run sweep** "
                   "continues from where it stopped.")

def no_scores_box(problem: str) -> None:
    """The one box that says why there are no accuracy scores (the core's sentence, then what still works)."""
    st.info(f"No accuracy scores: {state.escape_markdown(problem)}\n\n{NO_LABELS_HELP}", icon=":material/label_off:")



def settings(blocks, table):
    poolings = state.persistent(
        st.multiselect, "Poolings to compare", list(features.POOLING_CHOICES), key="ls_poolings", default=list(features.DEFAULT_SWEEP_POOLINGS),
        format_func=lambda p: features.POOLING_LABELS.get(p, p))
    poolings = [p for p in features.POOLING_CHOICES if p in poolings]
    if "flatten" in poolings:
        sizes = ", ".join(f"{state.escape_markdown(name)}: {size:,}" for name, size in sweeps.flatten_sizes(table, blocks[:3]))
        st.caption(f"flatten keeps every value of the map (H×W×C per image — {sizes}, …): big vectors, slow "
                   "to score, and sensitive to where things sit in the image. Refused when it would not fit in memory.")
    with st.expander("Scoring settings"):
        c1, c2 = st.columns(2)
        with c1:
            k = state.persistent(st.slider, "k for k-NN", key="ls_k", default=5, min_value=1, max_value=15,
                                 help="Each image takes the majority class of its k most similar images.")
        with c2:
            folds = state.persistent(st.slider, "Cross-validation folds", key="ls_folds", default=5, min_value=2,
                                     max_value=10, help="Lowered automatically to the size of the smallest class.")
    return poolings, int(k), int(folds)


def run(blocks, poolings, k, folds, images, backbone, table, config) -> None:
    with st.status(f"Sweeping {len(blocks)} layers × {len(poolings)} poolings on {len(images)} images…",
                   expanded=True) as status:
        cancel = st.empty()  # pressed while the sweep runs: it stops at its next batch of images
        cancel.button("Cancel sweep", key="ls_cancel", icon=":material/stop:", on_click=sweeps.cancel_sweep)
        bar = None

        def step(text):
            nonlocal bar
            st.write(text)
            if text.startswith("Scoring"):
                bar = st.progress(0.0)

        def progress(done, total, key):
            bar.progress(done / total, text=f"Scored {done} of {total}: {state.escape_markdown(key)}")

        try:
            result = sweeps.run_sweep(table, blocks, poolings, k=k, folds=folds, images=images, config=config,
                                      backbone=backbone, step=step, progress=progress)
        except sweeps.NothingToScoreError as exc:
            status.update(label="Nothing could be extracted", state="error")
            st.error("No configuration could be extracted:\n\n" + state.bullet_list(exc.reasons))
            return
        except sweeps.SweepCancelled:
            status.update(label="Sweep cancelled", state="error", expanded=True)
            st.warning(SWEEP_CANCELLED, icon=":material/stop_circle:")
            return
        finally:
            cancel.empty()
        status.update(label=f"Sweep done: {len(result.table)} configurations in {result.seconds:.1f} s",
                      state="complete", expanded=False)


def show(result: SweepReport) -> None:
    esc = state.escape_markdown
    table = result.table
    rec = result.recommendation
    if result.failures:
        st.warning(f"Left out ({len(result.failures)}):\n\n" + state.bullet_list(f.message for f in result.failures),
                   icon=":material/warning:")
    if result.skipped:
        st.warning("Not scored:\n\n" + state.bullet_list(sorted(set(result.skipped.values()))), icon=":material/memory:")
    unusable = health.health_message(result.health)
    if unusable:  # numbers that round to zero are not the images' fault: say what happened instead
        st.warning(unusable, icon=":material/blur_off:")
    if rec is not None:
        st.success(charts.recommendation_markdown(rec, state.escape_markdown), icon=":material/recommend:")
        caveat = weights_caveat(result.config) if result.config is not None else None
        if caveat:
            st.warning(caveat, icon=":material/casino:")
        # A horizontal container sizes each button to its label (columns cut the longer one off).
        row = st.container(horizontal=True)
        with row:
            if st.button(f"Use {esc(rec.layer)} / {rec.pooling} in Export", key="ls_use_best", type="primary",
                         on_click=sweeps.use_in_export, args=(rec.layer, rec.pooling)):
                st.switch_page("pages/export.py")
        cheaper = (rec.cheapest_layer, rec.cheapest_pooling) != (rec.layer, rec.pooling)
        if cheaper:
            with row:
                if st.button(f"Use the cheaper {esc(rec.cheapest_layer)} / {rec.cheapest_pooling}", key="ls_use_cheap",
                             on_click=sweeps.use_in_export, args=(rec.cheapest_layer, rec.cheapest_pooling)):
                    st.switch_page("pages/export.py")
    else:
        no_scores_box(result.label_problem or "the images have no labels.")

    options = charts.metric_options(table)
    metric = state.persistent(st.radio, "Show", options, key="ls_metric", default=options[0], horizontal=True,
                              format_func=lambda m: charts.METRICS[m][0])
    best = (rec.layer, rec.pooling) if rec is not None else None
    # Side by side for a few layers; stacked when there are many, so the curve's labels fit.
    many = table["layer"].nunique() > 8
    left, right = (st.container(), st.container()) if many else st.columns([1, 1], gap="large")
    with left:
        st.markdown(f"**{charts.METRICS[metric][0]}** per layer × pooling" + (" (outlined: recommended)" if best else ""))
        st.altair_chart(charts.metric_heatmap(table, metric, best=best), width="content")
    with right:
        st.markdown(f"**{charts.METRICS[metric][0]}** over depth")
        st.altair_chart(charts.depth_curve(table, metric), width="stretch")
    st.subheader("All scores")
    st.dataframe(
        sweeps.scores_view(charts.display_table(table)),
        hide_index=True,
        column_config={
            "layer": st.column_config.TextColumn("Layer"),
            "pooling": st.column_config.TextColumn("Pooling"),
            "dim": st.column_config.NumberColumn("Dims", format="%d", help="Length of the feature vector."),
            "linear_acc": st.column_config.ProgressColumn("Linear probe", min_value=0.0, max_value=1.0, format="percent",
                                                          help="Cross-validated logistic-regression accuracy."),
            "knn_acc": st.column_config.ProgressColumn("k-NN", min_value=0.0, max_value=1.0, format="percent",
                                                       help="Cross-validated k-nearest-neighbour accuracy (cosine)."),
            "silhouette": st.column_config.NumberColumn("Silhouette", format="%.3f",
                                                        help="-1 to 1: how far apart the classes sit (cosine)."),
            "effective_rank": st.column_config.NumberColumn("Effective rank", format="%.1f",
                                                            help="Roughly how many directions carry the variance."),
            "ms_per_image": st.column_config.NumberColumn("ms / image", format="%.2f",
                                                          help="Time to extract this layer alone, per image (probe batch of 8)."),
            "problem": st.column_config.TextColumn("Problem", width="large",
                                                   help="Why a score is missing for this configuration."),
        },
    )
    n_lab = table.attrs.get("n_labelled") or 0
    folds_note = " Accuracies are cross-validated (each image scored by a model that never saw it)." if n_lab else ""
    st.caption(f"{result.n_images} images, {len(table)} configurations, {result.seconds:.1f} s.{folds_note} "
               f"Features computed on {runtime_text(result.runtime)}. "
               "Extraction time is measured per layer with the network cut there.")


with state.page_guard("running the layer sweep"):
    images = state.current_images()
    backbone, table = state.current_backbone()
    config = state.current_config()
    blocks = [info.name for info in representative_layers(table, "block")]
    poolings, k, folds = settings(blocks, table)
    problem = label_problem(images.labels if images.has_labels else None)
    if not poolings:
        st.info("Choose at least one pooling.", icon=":material/touch_app:")
        st.stop()
    clicked = st.button(f"Run sweep ({len(blocks)} layers × {len(poolings)} poolings)", key="ls_run", type="primary",
                        icon=":material/play_arrow:")
    if sweeps.was_cancelled():
        st.warning(SWEEP_CANCELLED, icon=":material/stop_circle:")
    if clicked:
        run(blocks, poolings, k, folds, images, backbone, table, config)
    result = sweeps.matching_result(images, config, poolings, k, folds)
    if problem is not None and result is None:  # with a result, show() says it (one box, not two)
        no_scores_box(problem)
    if result is not None:
        show(result)
    elif sweeps.stored_result() is not None:
        st.info("The last sweep was run on other images or settings; press **Run sweep** for these.",
                icon=":material/refresh:")
    else:
        st.caption("Press **Run sweep** to score every layer × pooling on the current images.")
