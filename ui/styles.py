"""The app's one style sheet: the few CSS rules Streamlit has no option for, injected once per run.

Drawn by :func:`ui.sidebar.ensure_shell` with the page frame, so every page has them.
"""

from __future__ import annotations

import streamlit as st

__all__ = ["CSS", "inject"]

#: Multiselects grow with their chips instead of scrolling them out of sight (issue 10, item 12):
#: Streamlit caps the box at about four rows of chips and scrolls the rest inside it.
CSS = """
[data-testid="stMultiSelect"] [data-testid="stMultiSelectTagsContainer"] {
  flex-wrap: wrap !important;
  max-height: none !important;
  overflow: visible !important;
}
[data-testid="stMultiSelect"] .react-aria-ComboBox > div {
  max-height: none !important;
}
"""


def inject() -> None:
    """Add the style sheet to this run's page (takes no room in the layout)."""
    st.html(f"<style>{CSS}</style>")
