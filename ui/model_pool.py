"""Networks and compiled extractors shared by every session: one copy per configuration, a bounded number kept.

What is shared and what is not (the memory model):

* **Shared** (this pool): a backbone (the Keras model, built once per backbone × weights × input
  size) and the compiled :class:`~extractor.FeatureExtractor` objects built on it (per layer tuple ×
  poolings × precision × resize). They hold no user data. At most ``max_models`` *configurations*
  (backbones, each with its extractors) stay in memory; using one makes it the most recent, and
  adding one past the bound drops the least recently used configuration with all its extractors
  (an extractor keeps its backbone alive, so they go together or memory would not be freed).
  A dropped configuration is rebuilt on demand, with the same numbers.
* **Per session** (not here): images, thumbnails, raw maps, pooled features, embeddings and sweep
  results live in ``st.session_state`` or in ``st.cache_data`` entries keyed by content digests
  (bounded by ``max_entries``/``max_size``) and go when the session ends or the entry is evicted.
  A user's uploaded model stays in that user's session too (``ui.custom_model``).

Thread-safe: two sessions asking for the same missing key build it once (the second waits for the
first); different keys build at the same time; the pool's lock is never held while building, so a
builder may itself call :meth:`ModelPool.get` (an extractor's builder gets its backbone).

Example:
    >>> pool = ModelPool(max_models=1)
    >>> pool.get(("demo", "none"), lambda: "net A")
    'net A'
    >>> pool.get(("fx", "block1"), lambda: "extractor on A", group=("demo", "none"))
    'extractor on A'
    >>> pool.get(("vgg", "none"), lambda: "net B")          # a second configuration: A goes
    'net B'
    >>> pool.keys()
    [('vgg', 'none')]
    >>> pool.stats().evictions
    1
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["ModelPool", "PoolStats"]

T = TypeVar("T")


@dataclass(frozen=True)
class PoolStats:
    """Counters since the pool was made; ``groups`` configurations (``entries`` objects) are held now."""

    hits: int
    builds: int
    evictions: int
    groups: int
    entries: int
    max_models: int


class _Building:
    """A build in progress: later callers for the same key wait on ``done``."""

    def __init__(self):
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None


class ModelPool:
    """A bounded, least-recently-used, thread-safe pool of built objects, grouped by configuration.

    ``get(key, build, group=None)``: the object for ``key``, built with ``build()`` if missing.
    ``group`` names the configuration it belongs to (default: its own key); the bound
    ``max_models`` counts groups, and a group is dropped whole.
    """

    def __init__(self, max_models: int = 4, on_evict: Callable[[Hashable, list[Any]], None] | None = None):
        if not isinstance(max_models, int) or isinstance(max_models, bool) or max_models < 1:
            raise ValueError(f"ModelPool(max_models={max_models!r}): expected a whole number of at least 1.")
        self.max_models = max_models
        self._on_evict = on_evict
        self._lock = threading.Lock()
        self._groups: OrderedDict[Hashable, dict[Hashable, Any]] = OrderedDict()  # least recent first
        self._group_of: dict[Hashable, Hashable] = {}
        self._building: dict[Hashable, _Building] = {}
        self._hits = self._builds = self._evictions = 0

    def get(self, key: Hashable, build: Callable[[], T], group: Hashable | None = None) -> T:
        group = key if group is None else group
        while True:
            with self._lock:
                found = self._lookup(key)
                if found is not _MISSING:
                    self._hits += 1
                    return found
                pending = self._building.get(key)
                if pending is None:
                    pending = self._building[key] = _Building()
                    break  # this caller builds
            pending.done.wait()
            if pending.error is None:
                return pending.value
            if isinstance(pending.error, Exception):
                raise pending.error  # the build failed: the same reason for every caller
            # The builder's own run was stopped (Streamlit's rerun/stop control flow is a BaseException
            # raised in that thread only). Re-raising it here would stop *this* run halfway through
            # drawing its page, so build again instead (or wait for whoever got there first).
        try:
            value = build()
        except BaseException as exc:
            pending.error = exc  # handed to whoever waited; nothing is kept, the next call tries again
            raise
        else:
            pending.value = value
            evicted = self._insert(key, group, value)
        finally:
            with self._lock:
                self._building.pop(key, None)
            pending.done.set()
        for gone_group, objects in evicted:
            if self._on_evict is not None:
                self._on_evict(gone_group, objects)
        return value

    def peek(self, key: Hashable, default: Any = None) -> Any:
        """The object held for ``key``, or ``default``; never builds, and counts as no use (no LRU move, no hit).

        >>> pool = ModelPool()
        >>> pool.peek("a"), pool.get("a", lambda: 1), pool.peek("a")
        (None, 1, 1)
        """
        with self._lock:
            group = self._group_of.get(key)
            return default if group is None else self._groups[group][key]

    def discard(self, group: Hashable) -> bool:
        """Drop one configuration (e.g. a file that changed on disk); whether it was held."""
        with self._lock:
            entries = self._groups.pop(group, None)
            for key in entries or ():
                self._group_of.pop(key, None)
        return entries is not None

    def clear(self) -> None:
        with self._lock:
            self._groups.clear()
            self._group_of.clear()

    def keys(self) -> list[Hashable]:
        """Every key held, least recently used configuration first."""
        with self._lock:
            return [key for entries in self._groups.values() for key in entries]

    def groups(self) -> list[Hashable]:
        with self._lock:
            return list(self._groups)

    def stats(self) -> PoolStats:
        with self._lock:
            return PoolStats(self._hits, self._builds, self._evictions, len(self._groups),
                             len(self._group_of), self.max_models)

    # -- lock held

    def _lookup(self, key: Hashable) -> Any:
        group = self._group_of.get(key)
        if group is None:
            return _MISSING
        self._groups.move_to_end(group)
        return self._groups[group][key]

    def _insert(self, key: Hashable, group: Hashable, value: Any) -> list[tuple[Hashable, list[Any]]]:
        with self._lock:
            self._builds += 1
            self._groups.setdefault(group, {})[key] = value
            self._group_of[key] = group
            self._groups.move_to_end(group)
            evicted = []
            while len(self._groups) > self.max_models:
                gone, entries = self._groups.popitem(last=False)
                for k in entries:
                    self._group_of.pop(k, None)
                self._evictions += 1
                evicted.append((gone, list(entries.values())))
            return evicted


_MISSING = object()
