"""``st.cache_data`` that keeps what comes from a user's uploads in that user's session.

Cached data keyed by content digests is of two kinds. The demo sets' images are the same for
everyone: their thumbnails, maps and features are shared by every session (one bounded global
cache). An upload's are that user's data: kept in a *session-scoped* cache (Streamlit's
``scope="session"``), which Streamlit clears when the session disconnects, so a closed tab's
images, maps and features do not stay in memory until some later eviction — and no other session
can ever be served them.

:func:`data` wraps one function in both caches (same ``max_entries`` and ``max_size``; a
session's bound applies to each session) and picks per call, from its unhashed items argument
(``_items`` or ``_item``): arrays (the demo sets) go to the shared cache, anything else (an
uploaded ``ImageSource``) to the session's. Outside a script run there is no session: the
shared cache is used. ``clear()`` empties the shared cache and, inside a session, that session's.

:func:`session_data` is the session-scoped cache alone, for what is drawn from a session's images
whatever their origin (the pictures of :mod:`ui.rendered`).

Example (in a module of ``ui/``)::

    @private_cache.data(max_entries=12, max_size="384MB")
    def raw_maps(config, layers, digest, _item): ...
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import streamlit as st
from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

__all__ = ["data", "session_data", "is_upload"]

_ITEM_ARGS = ("_items", "_item")


def is_upload(items: Any) -> bool:
    """Whether ``items`` (one item or a sequence of them) holds anything that is not a plain array.

    >>> is_upload(np.zeros((2, 2, 3), np.uint8)), is_upload([np.zeros(3), np.zeros(3)])
    (False, False)
    >>> is_upload([np.zeros(3), object()]), is_upload(object()), is_upload(None)
    (True, True, False)
    """
    if items is None or isinstance(items, np.ndarray):
        return False
    if isinstance(items, list | tuple):
        return any(not isinstance(item, np.ndarray) for item in items)
    return True


def data(*, max_entries: int, max_size: str | int | None = None, show_spinner: bool | str = False) -> Callable:
    """Decorator: a shared ``st.cache_data`` for demo items and a session-scoped one for uploads."""

    def wrap(fn: Callable) -> Callable:
        shared = st.cache_data(max_entries=max_entries, max_size=max_size, show_spinner=show_spinner)(fn)
        private = st.cache_data(max_entries=max_entries, max_size=max_size, show_spinner=show_spinner,
                                scope="session")(fn)
        signature = inspect.signature(fn)
        item_arg = next((name for name in _ITEM_ARGS if name in signature.parameters), None)
        if item_arg is None:
            raise TypeError(f"{fn.__qualname__}: private_cache.data needs an argument named _items or _item.")

        def private_for(args, kwargs) -> bool:
            items = signature.bind(*args, **kwargs).arguments.get(item_arg)
            return is_upload(items) and get_script_run_ctx(suppress_warning=True) is not None

        @functools.wraps(fn)
        def call(*args, **kwargs):
            return (private if private_for(args, kwargs) else shared)(*args, **kwargs)

        def clear() -> None:
            shared.clear()
            if get_script_run_ctx(suppress_warning=True) is not None:
                private.clear()

        call.clear = clear
        call.shared, call.private = shared, private
        return call

    return wrap


def session_data(*, max_entries: int, max_size: str | int | None = None) -> Callable:
    """Decorator: ``st.cache_data(scope="session")`` with these bounds (per session). Outside a
    script run (a doctest, a worker thread) there is no session to cache in, so the function just runs."""

    def wrap(fn: Callable) -> Callable:
        cached = st.cache_data(max_entries=max_entries, max_size=max_size, show_spinner=False, scope="session")(fn)

        @functools.wraps(fn)
        def call(*args, **kwargs):
            if get_script_run_ctx(suppress_warning=True) is None:
                return fn(*args, **kwargs)
            return cached(*args, **kwargs)

        return call

    return wrap
