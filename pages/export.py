"""Export page: a placeholder until the next step replaces it."""

import streamlit as st

from ui.sidebar import ensure_shell

ensure_shell()

st.title("Export")
st.info(
    "Coming in the next step: downloading the feature vectors (NumPy / CSV) and the code that reproduces them. "
    "The sidebar choices (images, backbone, weights) already apply here.",
    icon=":material/construction:",
)
