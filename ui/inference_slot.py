"""The one gate in front of inference, and the server-wide objects behind it.

Everything that builds, warms or runs a network goes through this module, so the policy behind
it can change here alone:

* :data:`LANES` — a :class:`~ui.work_lanes.WorkLanes` with two slots (two forward passes at
  once). One-image work (:func:`inference_slot`, the interactive lane) goes ahead of batch work;
  batch work (:func:`batch_job`, :func:`chunk_slot`) runs chunk by chunk, sessions in turn, at
  most ``LIMITS.max_batch_jobs`` jobs at once (the rest wait in line and say so).
* :data:`MODELS` — the :class:`~ui.model_pool.ModelPool` of networks and compiled extractors
  shared by every session, at most ``LIMITS.max_models`` configurations (least recently used
  dropped, rebuilt on demand).
* :data:`LIMITS` — the deployment's limits (:func:`ui.server_limits.load_limits`).

Rule: never wait for a cached value (``st.cache_data``/``MODELS.get``) while holding a slot —
the value may be being built by someone who needs a slot. Get the extractor first, then take the
slot for the forward pass.

Module-level on purpose: these objects are shared by every session of the server (they hold no
user data).

Example:
    >>> with inference_slot():                    # one image, ahead of batch work
    ...     pass
    >>> with batch_job("a-session") as job:       # a whole set, chunk by chunk
    ...     with chunk_slot():
    ...         pass
    >>> job.status.state
    'done'
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from . import session_watch
from .model_pool import ModelPool
from .server_limits import load_limits
from .work_lanes import BatchJob, JobCancelled, JobStatus, WorkLanes

__all__ = [
    "LIMITS",
    "LANES",
    "MODELS",
    "JobCancelled",
    "JobStatus",
    "inference_slot",
    "chunk_slot",
    "batch_job",
    "batch_slot",
    "shared_model",
    "shared_models",
    "start_watch",
]

T = TypeVar("T")

LIMITS = load_limits()
LANES = WorkLanes(slots=2, max_batch_jobs=LIMITS.max_batch_jobs)
MODELS = ModelPool(max_models=LIMITS.max_models)


@contextmanager
def inference_slot() -> Iterator[None]:
    """Hold a slot for one-image work (the interactive lane: ahead of every waiting batch chunk).

    Re-entrant inside a slot this thread already holds.
    """
    with LANES.interactive():
        yield


@contextmanager
def chunk_slot() -> Iterator[None]:
    """A slot for one chunk of this thread's batch job (inside :func:`batch_job`), else an interactive one.

    Raises :class:`JobCancelled` at the chunk boundary when the job was cancelled.
    """
    with LANES.slot():
        yield


@contextmanager
def batch_job(session_id: str | None = None, *, chunks: int | None = None,
              on_status: Callable[[JobStatus], None] | None = None) -> Iterator[BatchJob]:
    """One batch job of ``session_id`` (default: the calling Streamlit session), stopped when it goes away.

    It also stops (at its next chunk, or while it waits in line) when Streamlit asks the run to
    stop: the user pressed Cancel or used another widget, which would interrupt the run anyway.

    Inside a batch job of this thread it is that job (a sweep's extraction is part of the sweep).
    """
    sid = session_watch.current_session_id() if session_id is None else session_id
    if on_status is not None:
        # The job asks for its first slot (and waits in line) inside a cached function (the chunk's
        # ``st.cache_data`` body), where Streamlit records element calls for replay and refuses
        # containers made outside. Its recording is context-local (contextvars), so the callback
        # runs in the context of this call, outside any cached function, and draws where it should.
        context, report = contextvars.copy_context(), on_status

        def on_status(status: JobStatus) -> None:
            context.run(report, status)

    connected, interrupted = session_watch.alive_check(sid), session_watch.rerun_requested()

    def is_alive() -> bool:  # the tab is there, and the user has not moved on (Cancel, another widget)
        return connected() and not interrupted()

    with LANES.batch(sid, chunks=chunks, on_status=on_status, is_alive=is_alive) as job:
        yield job


@contextmanager
def batch_slot(heavy: bool = True) -> Iterator[None]:
    """A one-chunk batch job for one piece of heavy work outside any other (a t-SNE map); nothing if not ``heavy``.

    Inside this thread's batch job it is that job's next chunk.
    """
    if not heavy:
        yield
        return
    with batch_job(chunks=1), chunk_slot():
        yield


def shared_model(key, build: Callable[[], T], group=None) -> T:
    """``MODELS.get``: the network or extractor for ``key`` (plain values), built with ``build()`` once for everyone."""
    return MODELS.get(key, build, group=group)


def shared_models(kind: str) -> list:
    """``(key, object)`` for every pooled key whose first element is ``kind`` ("backbone", "extractor"); no use counted."""
    return [(key, MODELS.peek(key)) for key in MODELS.keys() if isinstance(key, tuple) and key and key[0] == kind]


def start_watch() -> None:
    """Start (once per process) the thread that cancels the batch work of sessions that went away, and note this one.

    Called on every run (by the sidebar): the watcher remembers the calling session, so that it
    can free what the session leaves once its tab has been gone for (almost) Streamlit's reconnect window.
    """
    session_watch.watch(LANES).note(session_watch.current_session_id())
