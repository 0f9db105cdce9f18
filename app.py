"""Layer Explorer: see what each CNN layer sees, and pick the layer and pooling for your features.

Run with ``streamlit run app.py``. This file is the frame around every page: page config, the
navigation, and the sidebar (drawn once here, so its choices hold on every page). No
TensorFlow code here: the network is loaded by ui.state/ui.cache when a page asks for it.

The pages live in ``pages/``; ``ui.sidebar.ensure_shell`` draws the frame once per run (its
docstring says why every page calls it too).

``st.navigation`` comes first, before anything imports TensorFlow: on a fresh server Streamlit
runs in legacy multipage mode (a menu built from the ``pages/`` file names) until this call has
run once. Imported first, the ``ui`` modules kept that menu up for the whole TensorFlow import; a
click on it opened a page file on its own, and the next sidebar change then asked for a page this
navigation does not know, so Streamlit fell back to Feature maps (issue 10, item 1).
"""

from pathlib import Path

import streamlit as st

HERE = Path(__file__).parent

page = st.navigation(
    [
        st.Page(HERE / "pages" / "feature_maps.py", title="Feature maps", url_path="feature-maps", icon=":material/grid_view:", default=True),
        st.Page(HERE / "pages" / "embeddings.py", title="Embeddings", url_path="embedding-maps", icon=":material/scatter_plot:"),
        st.Page(HERE / "pages" / "layer_selection.py", title="Layer selection", url_path="layer-selection", icon=":material/leaderboard:"),
        st.Page(HERE / "pages" / "channels.py", title="Channels & layers", url_path="channels-layers", icon=":material/hub:"),
        st.Page(HERE / "pages" / "export.py", title="Export", url_path="export-features", icon=":material/download:"),
    ]
)
from ui.sidebar import ensure_shell  # noqa: E402  (after st.navigation: see the docstring)

ensure_shell(from_app=True)
page.run()
