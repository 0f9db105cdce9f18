"""Giving memory back after sessions end: the collector's frozen heap, and what the allocator keeps.

Two things hold on to memory after a session's data is dropped:

* **The frozen heap** (:mod:`ui.heap`): ``gc.freeze()`` moves everything alive at that moment
  into the permanent generation, including the objects of the sessions open then. Streamlit's
  sessions are full of reference cycles (the session, its script runner, their callbacks), so a
  session that ends after a freeze stays in memory, with its session state, until the frozen heap
  is collected again. :func:`full_collection` unfreezes, collects everything and freezes what is
  left (about a second with TensorFlow loaded).
* **The C allocator**: glibc keeps freed blocks in its arenas; ``malloc_trim(0)`` hands the free
  pages back to the system (:func:`trim`; nothing on other C libraries).

:func:`after_sessions_ended` does both, at most once per ``min_interval_s`` (one full collection
per minute, however many tabs close at once): the session watcher (:mod:`ui.session_watch`)
calls it when sessions have gone. No Streamlit here; the bookkeeping is process-wide and holds no
user data.

Example:
    >>> full_collection() >= 0
    True
    >>> after_sessions_ended(min_interval_s=3600, clock=lambda: 0.0)   # just collected: too soon
    False
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import threading
import time
from collections.abc import Callable

__all__ = ["full_collection", "reclaimed_at", "note_first_freeze", "trim", "after_sessions_ended", "forget"]

_lock = threading.Lock()
_book = {"reclaimed_at": 0, "last": None}  # frozen count after the last full collection; when it ran


def reclaimed_at() -> int:
    """How many objects were frozen right after the last full collection (0: none yet)."""
    return _book["reclaimed_at"]


def note_first_freeze(count: int) -> None:
    """The baseline of the frozen heap when none was taken yet (the first freeze counts as collected)."""
    with _lock:
        if not _book["reclaimed_at"]:
            _book["reclaimed_at"] = count


def forget() -> None:
    """Back to no collection taken (for tests)."""
    with _lock:
        _book.update(reclaimed_at=0, last=None)


def full_collection(freeze: bool | None = None, clock: Callable[[], float] = time.monotonic) -> int:
    """Unfreeze, collect everything, and freeze again if the heap was frozen (or ``freeze``); the frozen count."""
    with _lock:
        was_frozen = gc.get_freeze_count() > 0
        gc.unfreeze()
        gc.collect()
        if was_frozen if freeze is None else freeze:
            gc.freeze()
        _book["reclaimed_at"] = gc.get_freeze_count()
        _book["last"] = clock()
        return gc.get_freeze_count()


def trim() -> bool:
    """Return the allocator's free pages to the system (glibc ``malloc_trim``); whether it could."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.malloc_trim(0))
    except (OSError, AttributeError, TypeError):
        return False


def after_sessions_ended(min_interval_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> bool:
    """A full collection and a trim, unless one ran less than ``min_interval_s`` ago; whether it ran."""
    last = _book["last"]
    if last is not None and clock() - last < min_interval_s:
        return False
    full_collection(clock=clock)
    trim()
    return True
