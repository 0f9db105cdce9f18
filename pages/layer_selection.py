"""Layer selection page: a placeholder until the next step replaces it."""

import streamlit as st

from ui.sidebar import ensure_shell

ensure_shell()

st.title("Layer selection")
st.info(
    "Coming in the next step: a score for every layer × pooling (k-NN accuracy, silhouette, linear probe) to find the one that separates your classes best. "
    "The sidebar choices (images, backbone, weights) already apply here.",
    icon=":material/construction:",
)
