"""Layer Explorer: see what each CNN layer sees, and pick the layer and pooling for your features.

Run with ``streamlit run app.py``. This file is the frame around every page: page config, the
navigation, and the sidebar (drawn once here, so its choices hold on every page). No
TensorFlow code here: the network is loaded by ui.state/ui.cache when a page asks for it.

The pages live in ``app_pages/``, not ``pages/``: a folder named ``pages/`` next to this file
turns on Streamlit's legacy multipage mode, which runs a page file on its own (no sidebar, new
widget IDs, lost choices) on a fresh server's first deep link and on every
``AppTest.switch_page``.
"""

from pathlib import Path

import streamlit as st

from ui.sidebar import render_sidebar

HERE = Path(__file__).parent

st.set_page_config(page_title="Layer Explorer", page_icon=":material/layers:", layout="wide")

page = st.navigation(
    [
        st.Page(HERE / "app_pages" / "feature_maps.py", title="Feature maps", icon=":material/grid_view:", default=True),
        st.Page(HERE / "app_pages" / "embeddings.py", title="Embeddings", icon=":material/scatter_plot:"),
        st.Page(HERE / "app_pages" / "layer_selection.py", title="Layer selection", icon=":material/leaderboard:"),
        st.Page(HERE / "app_pages" / "export.py", title="Export", icon=":material/download:"),
    ]
)
render_sidebar()
page.run()
