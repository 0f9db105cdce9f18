"""The one gate in front of inference: at most two forward passes compete for the CPU.

Every place that builds, warms or runs a network (shared caches, a session's uploaded model,
the Layer-selection cost probe) holds a slot through :func:`inference_slot`, and only through
it, so the policy behind it (today a ``BoundedSemaphore(2)``) can change in this one module.

Example:
    >>> with inference_slot():
    ...     pass
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["inference_slot"]

# Module-level on purpose: the bound is shared by every session of the server.
_INFERENCE = threading.BoundedSemaphore(2)


@contextmanager
def inference_slot() -> Iterator[None]:
    """Hold one of the two inference slots while building or running a network."""
    with _INFERENCE:
        yield
