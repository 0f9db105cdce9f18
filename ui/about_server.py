"""The "About this server" expander: the deployment's limits, and how busy the server is now.

Widgets only; the numbers come from :mod:`ui.server_limits`, :class:`ui.work_lanes.WorkLanes`
(``snapshot()``) and :class:`ui.model_pool.ModelPool` (``stats()``). One call, e.g. at the end
of the sidebar::

    about_server.render(load_limits(), lanes=LANES, pool=MODELS)
"""

from __future__ import annotations

import streamlit as st

from .model_pool import ModelPool
from .server_limits import ServerLimits, limits_table
from .work_lanes import WorkLanes

__all__ = ["render", "load_lines"]


def load_lines(lanes: WorkLanes | None = None, pool: ModelPool | None = None) -> list[str]:
    """What the server is doing now, one plain sentence per line (no user data: counts only)."""
    lines = []
    if lanes is not None:
        snap = lanes.snapshot()
        lines.append(f"Batch runs: {len(snap.running_jobs)} in progress (at most {snap.max_batch_jobs}), "
                     f"{len(snap.queued_jobs)} waiting in line.")
        lines.append(f"Forward passes: {snap.busy_interactive + snap.busy_batch} of {snap.slots} slots busy; "
                     f"clicks always go before batch work.")
    if pool is not None:
        stats = pool.stats()
        lines.append(f"Networks in memory: {stats.groups} of at most {stats.max_models} "
                     f"({stats.entries} objects in all: networks, extractors, classifier heads); "
                     f"{stats.evictions} dropped so far.")
    return lines


def render(limits: ServerLimits, lanes: WorkLanes | None = None, pool: ModelPool | None = None) -> None:
    with st.expander("About this server"):
        st.caption("Everyone using this address shares one server. Networks are shared; your images, "
                   "features and results stay in your session and go when you close the tab.")
        # A static table, not an interactive dataframe: four plain rows, nothing to sort or scroll.
        st.table([{k: row[k] for k in ("setting", "value", "meaning", "variable")} for row in limits_table(limits)])
        for line in load_lines(lanes, pool):
            st.markdown(f"- {line}")
