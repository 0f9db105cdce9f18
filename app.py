"""Layer Explorer: see what each CNN layer sees, and pick the layer and pooling for your features.

Run with ``streamlit run app.py``. This file is the frame around every page: page config, the
navigation, and the sidebar (drawn once here, so its choices hold on every page). No
TensorFlow code here: the network is loaded by ui.state/ui.cache when a page asks for it.

The pages live in ``pages/``. A folder of that name also turns on Streamlit's legacy multipage
mode until this file has run ``st.navigation`` once in the process: a fresh server's first deep
link (and every ``AppTest.switch_page`` run) executes the page file on its own. Each page
therefore starts with ``ui.sidebar.ensure_shell()``, which draws the same sidebar when this file
did not (same keys, so the choices hold). The URL paths differ from the file names on purpose:
a legacy-mode request for one of them matches no page file, so Streamlit falls back to this
file, whose ``st.navigation`` then serves the page with the shell around it.
"""

from pathlib import Path

import streamlit as st

from ui.sidebar import mark_shell_drawn, render_sidebar

HERE = Path(__file__).parent

st.set_page_config(page_title="Layer Explorer", page_icon=":material/layers:", layout="wide")

page = st.navigation(
    [
        st.Page(HERE / "pages" / "feature_maps.py", title="Feature maps", url_path="feature-maps", icon=":material/grid_view:", default=True),
        st.Page(HERE / "pages" / "embeddings.py", title="Embeddings", url_path="embedding-maps", icon=":material/scatter_plot:"),
        st.Page(HERE / "pages" / "layer_selection.py", title="Layer selection", url_path="layer-selection", icon=":material/leaderboard:"),
        st.Page(HERE / "pages" / "channels.py", title="Channels & layers", url_path="channels-layers", icon=":material/hub:"),
        st.Page(HERE / "pages" / "export.py", title="Export", url_path="export-features", icon=":material/download:"),
    ]
)
render_sidebar()
mark_shell_drawn()
page.run()
