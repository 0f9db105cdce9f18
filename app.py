"""Layer Explorer: see what each CNN layer sees, and pick the layer and pooling for your features.

Run with ``streamlit run app.py``. This file is the frame around every page: page config, the
navigation, and the sidebar (drawn once here, so its choices hold on every page). No
TensorFlow code here: the network is loaded by ui.state/ui.cache when a page asks for it.

The pages live in ``pages/``; ``ui.sidebar.ensure_shell`` draws the frame once per run (its
docstring says why every page calls it too).
"""

from pathlib import Path

import streamlit as st

from ui.sidebar import ensure_shell

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
ensure_shell(from_app=True)
page.run()
