"""One BLAS thread for the whole server process, set once, before any session computes.

NumPy's OpenBLAS starts a thread pool of its own beside TensorFlow's and OpenVINO's. In this server
that pool is a hazard, not a help: a Channels-page CKA product (``a @ b.T``) was seen spinning in
OpenBLAS's ``exec_blas_async`` for minutes, waiting on a worker that never came, while the same
test with ``OPENBLAS_NUM_THREADS=1`` passed in 47 s. Changing the pool's size at run time while another
thread is inside BLAS (what a per-call ``threadpool_limits`` does) is what OpenBLAS cannot take;
setting it once, before the first session computes, and never again, is safe. The scores already ran
single-threaded for speed (``extractor.scoring``: 10-100x faster on a busy 2-core machine), and the
networks run on TensorFlow's and OpenVINO's own threads, so nothing the user waits for gets slower
that way by more than the large products' 2x.

The library (``extractor``) leaves the process alone: this is the app's policy, for its process.

Example:
    >>> pin_blas_threads() and pin_blas_threads()   # idempotent
    True
"""

from __future__ import annotations

import threading

__all__ = ["pin_blas_threads"]

_lock = threading.Lock()
_pinned = False


def pin_blas_threads() -> bool:
    """Limit BLAS to one thread for the rest of the process (the first call does it); True when pinned."""
    global _pinned
    with _lock:
        if not _pinned:
            from threadpoolctl import threadpool_limits

            threadpool_limits(limits=1, user_api="blas")  # kept: never restored, never changed again
            _pinned = True
        return _pinned
