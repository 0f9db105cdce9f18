"""Embeddings page: a placeholder until the next step replaces it."""

import streamlit as st

from ui.sidebar import ensure_shell

ensure_shell()

st.title("Embeddings")
st.info(
    "Coming in the next step: a 2-D map (PCA or t-SNE) of every image's feature vector, coloured by class, for a chosen layer and pooling. "
    "The sidebar choices (images, backbone, weights) already apply here.",
    icon=":material/construction:",
)
