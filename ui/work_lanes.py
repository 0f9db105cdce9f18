"""Two lanes of work on the server's CPU: one-image clicks go ahead of batch runs.

A class on one server shares a few cores. One-image work (the raw maps of one image, Grad-CAM
of one image, a re-render) must not wait behind a 350-image sweep, and one session's sweep must
not starve another's. :class:`WorkLanes` hands out a small number of *slots* (concurrent forward
passes) with two rules:

* **Interactive first.** A waiting interactive request gets the next free slot, before any
  batch chunk. At most ``batch_slots`` slots (default: all but one) ever run batch chunks, so a
  click usually finds a slot free at once, and otherwise waits for at most one chunk.
* **Batch in chunks, in turn.** A batch job asks for a slot per chunk (one batch of images) and
  gives it back after; between two chunks every waiting click goes first, and among waiting
  batch chunks the session served longest ago goes next (round-robin by session). One long
  computation with a progress callback (scoring a sweep) marks boundaries with
  :meth:`BatchJob.checkpoint`.

Rule for callers: never wait for anything another slot holder may need while holding a slot —
in particular, get the (cached) extractor first, then take the slot for the forward pass, as
``ui.cache`` already does.

Admission: at most ``max_batch_jobs`` batch jobs are in progress; a further one waits in line,
and its :class:`JobStatus` says "queued behind N other runs" (``on_status`` is called whenever
that changes, in the job's own thread, so a page can update its status box). It never times
out: it runs when its turn comes, or is cancelled.

Cancellation: :meth:`WorkLanes.cancel_session` (the session went away) or :meth:`BatchJob.cancel`
(a Cancel button). A queued job never runs; a running job stops at the next chunk boundary (a
chunk that has started finishes: TensorFlow cannot be interrupted mid-pass). The job's thread then
raises :class:`JobCancelled`. ``is_alive`` (see ``ui.session_watch``) is also checked at every
boundary and while waiting, so a job whose session is gone stops even if nobody called cancel.

Work runs in the caller's thread (the session's script thread), so chunks may update Streamlit
elements and use ``st.cache_data``; this module itself never imports Streamlit.

Example:
    >>> lanes = WorkLanes(slots=2, max_batch_jobs=2)
    >>> with lanes.interactive():             # one image: replaces ``with inference_slot():``
    ...     answer = 6 * 7
    >>> lanes.run_batch("session-a", [lambda: 1, lambda: 2, lambda: 3])   # chunked work
    [1, 2, 3]
    >>> with lanes.batch("session-a", chunks=2) as job:                  # or chunk by chunk
    ...     for i in range(2):
    ...         with job.chunk():
    ...             pass
    >>> job.status.state, job.status.chunks_done
    ('done', 2)
    >>> JobStatus("s", 1, "queued", ahead=3).message()
    'Queued behind 3 other runs.'
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from extractor.errors import LayerExplorerError

from .server_limits import default_max_batch_jobs

__all__ = [
    "JobCancelled",
    "JobStatus",
    "LanesSnapshot",
    "BatchJob",
    "WorkLanes",
]

T = TypeVar("T")

# How often a waiting thread re-checks ``is_alive`` (a session that vanished without a cancel).
# Not a timeout: waiting goes on for as long as the session is alive.
_LIVENESS_POLL_S = 0.5


class JobCancelled(LayerExplorerError):
    """The batch run was cancelled (its session ended or the user pressed Cancel) before it finished."""


@dataclass(frozen=True)
class JobStatus:
    """Where one batch job stands; plain data a page shows (``message()``) or tests compare.

    ``state`` is "new" (no chunk asked for yet), "queued" (waiting for admission), "running", "done", "cancelled" or "failed".
    ``ahead`` is the number of other runs before it (in progress, plus queued earlier) while
    queued, 0 otherwise.
    """

    session_id: str
    job_id: int
    state: str
    ahead: int = 0
    chunks_done: int = 0
    chunks_total: int | None = None

    def message(self) -> str:
        """The status in words, for a status box.

        >>> JobStatus("s", 1, "running", chunks_done=1, chunks_total=4).message()
        'Running: 1 of 4 batches done.'
        """
        done = f"{self.chunks_done} batch{'es' if self.chunks_done != 1 else ''}"
        if self.state == "new":
            return "Starting."
        if self.state == "queued":
            return f"Queued behind {self.ahead} other run{'s' if self.ahead != 1 else ''}."
        if self.state == "running":
            if self.chunks_total is None:
                return f"Running: {done} done."
            return f"Running: {self.chunks_done} of {self.chunks_total} batches done."
        if self.state == "done":
            return f"Done: {done}."
        if self.state == "cancelled":
            return f"Cancelled after {done}."
        return f"Stopped by an error after {done}."


@dataclass(frozen=True)
class LanesSnapshot:
    """The scheduler at one moment (for tests, logs and the "About this server" expander)."""

    slots: int
    batch_slots: int
    max_batch_jobs: int
    busy_interactive: int
    busy_batch: int
    waiting_interactive: int
    waiting_batch: int
    running_jobs: tuple[JobStatus, ...]
    queued_jobs: tuple[JobStatus, ...]


class BatchJob:
    """One batch run of one session: admitted (or queued) by :meth:`WorkLanes.batch`.

    Use :meth:`chunk` around each batch of images; :meth:`cancel` from any thread.
    """

    def __init__(self, lanes: WorkLanes, job_id: int, session_id: str, chunks: int | None,
                 on_status: Callable[[JobStatus], None] | None, is_alive: Callable[[], bool] | None):
        self._lanes = lanes
        self._on_status = on_status
        self._is_alive = is_alive
        self._reported: JobStatus | None = None
        self.job_id = job_id
        self.session_id = session_id
        self.cancelled = False
        self._holding = False  # this job's thread holds a batch slot now
        # Fields below change under the lanes' lock only.
        self._state = "new"  # not admitted yet: admission waits for its first chunk
        self._chunks_done = 0
        self._chunks_total = chunks

    @property
    def status(self) -> JobStatus:
        return self._lanes._status_of(self)

    def cancel(self) -> None:
        """Stop this job: before it starts if queued, else at its next chunk boundary."""
        self._lanes._cancel_jobs([self])

    @contextmanager
    def chunk(self) -> Iterator[None]:
        """Hold a batch slot for one chunk; raises :class:`JobCancelled` instead if the job was cancelled."""
        self._lanes._acquire_chunk(self)
        try:
            yield
        finally:
            if self._holding:
                self._lanes._release(self)

    def checkpoint(self) -> None:
        """A chunk boundary inside one long computation (e.g. from its progress callback).

        Inside :meth:`chunk`, gives the slot back and waits for it again, so waiting clicks go
        first; raises :class:`JobCancelled` if the job was cancelled meanwhile.
        """
        if not self._holding:
            if self.cancelled:
                raise JobCancelled(f"The run was cancelled after {self._chunks_done} batches.")
            return
        self._lanes._release(self)
        self._lanes._acquire_chunk(self)

    # -- called by WorkLanes in this job's own thread, outside the lock

    def _alive(self) -> bool:
        return self._is_alive is None or bool(self._is_alive())

    def _report(self) -> None:
        status = self.status
        if self._on_status is not None and status != self._reported:
            self._reported = status
            self._on_status(status)


class WorkLanes:
    """The scheduler: ``slots`` concurrent passes, interactive first, batch jobs in turn.

    ``slots``: passes at once (2 matches the old inference semaphore). ``batch_slots``: how many
    of them batch chunks may take (default ``slots - 1``, at least 1) — the rest stay free for
    clicks. ``max_batch_jobs``: batch jobs in progress at once (default: the core count); more
    wait in line.
    """

    def __init__(self, slots: int = 2, max_batch_jobs: int | None = None, batch_slots: int | None = None):
        max_batch_jobs = default_max_batch_jobs() if max_batch_jobs is None else max_batch_jobs
        batch_slots = max(1, slots - 1) if batch_slots is None else batch_slots
        for name, value in (("slots", slots), ("max_batch_jobs", max_batch_jobs), ("batch_slots", batch_slots)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"WorkLanes({name}={value!r}): expected a whole number of at least 1.")
        if batch_slots > slots:
            raise ValueError(f"WorkLanes(batch_slots={batch_slots}) is more than slots={slots}; "
                             "batch chunks can only use the slots there are.")
        self.slots, self.batch_slots, self.max_batch_jobs = slots, batch_slots, max_batch_jobs
        self._cond = threading.Condition()
        self._ids = itertools.count(1)
        self._tickets = itertools.count()  # arrival order of waiters
        self._busy_interactive = 0
        self._busy_batch = 0
        self._waiting_interactive: list[int] = []  # tickets, FIFO
        self._granted: set[int] = set()  # tickets granted a slot, not yet picked up
        self._waiting_batch: dict[int, tuple[int, BatchJob]] = {}  # ticket -> (ticket, job)
        self._served: dict[str, int] = {}  # session -> sequence number of its last chunk
        self._serve_seq = itertools.count(1)
        self._running: list[BatchJob] = []  # admitted, in admission order
        self._queued: list[BatchJob] = []  # waiting for admission, FIFO
        self._jobs: list[BatchJob] = []  # every job not finished (new, queued or running)
        self._local = threading.local()  # .depth (slots held by this thread), .job (current batch job)

    # ---------------------------------------------------------------- public API

    @contextmanager
    def interactive(self) -> Iterator[None]:
        """Hold a slot for one-image work, ahead of every waiting batch chunk.

        Re-entrant: inside a slot this thread already holds (e.g. a build inside a chunk), it is
        a no-op, so nesting never deadlocks.
        """
        if self._depth() > 0:
            yield
            return
        with self._cond:
            ticket = next(self._tickets)
            self._waiting_interactive.append(ticket)
            self._dispatch()
            while ticket not in self._granted:
                self._cond.wait()
            self._granted.discard(ticket)
        self._local.depth = 1
        try:
            yield
        finally:
            self._local.depth = 0
            with self._cond:
                self._busy_interactive -= 1
                self._dispatch()

    @contextmanager
    def slot(self) -> Iterator[None]:
        """A chunk slot of this thread's current batch job (inside :meth:`batch`), else an interactive one.

        For code shared by both lanes (a cached chunk function, a network build): one call site,
        and the lane follows from who called it.
        """
        job = getattr(self._local, "job", None)
        if job is None or self._depth() > 0:
            with self.interactive():
                yield
        else:
            with job.chunk():
                yield

    @contextmanager
    def batch(self, session_id: str, *, chunks: int | None = None,
              on_status: Callable[[JobStatus], None] | None = None,
              is_alive: Callable[[], bool] | None = None) -> Iterator[BatchJob]:
        """Admit a batch job of ``session_id`` (waiting in line past ``max_batch_jobs``), yield it.

        ``chunks``: how many chunks, for the status only. ``on_status(JobStatus)`` is called in
        this thread whenever the status changes. Raises :class:`JobCancelled` if the job is
        cancelled (or ``is_alive()`` turns false) before it is done.

        Admission happens at the first :meth:`BatchJob.chunk`: work that is all cache hits never
        asks for a chunk, so it never waits in line. Inside another batch job of this thread it
        yields that job (one sweep is one job, however many helpers open a batch inside it).
        """
        current = getattr(self._local, "job", None)
        if current is not None:  # nested (a sweep's feature extraction): one job, admitted once
            yield current
            return
        job = BatchJob(self, next(self._ids), str(session_id), chunks, on_status, is_alive)
        with self._cond:
            self._jobs.append(job)
        self._local.job = job
        try:
            if not job._alive():
                self._cancel_jobs([job])
                raise JobCancelled("The run was not started: its session has ended.")
            yield job
        except BaseException:
            self._finish(job, "cancelled" if job.cancelled else "failed")
            raise
        else:
            self._finish(job, "done")
        finally:
            self._local.job = None

    def run_batch(self, session_id: str, chunks: Iterable[Callable[[], T]], *,
                  on_status: Callable[[JobStatus], None] | None = None,
                  is_alive: Callable[[], bool] | None = None) -> list[T]:
        """Run ``chunks`` (callables, one batch of images each) as one batch job; their results in order."""
        chunks = list(chunks)
        results: list[T] = []
        with self.batch(session_id, chunks=len(chunks), on_status=on_status, is_alive=is_alive) as job:
            for fn in chunks:
                with job.chunk():
                    results.append(fn())
        return results

    def cancel_session(self, session_id: str) -> int:
        """Drop every queued or running batch job of ``session_id``; how many were dropped."""
        with self._cond:
            jobs = [j for j in self._jobs if j.session_id == str(session_id)]
        self._cancel_jobs(jobs)
        return len(jobs)

    def sessions(self) -> set[str]:
        """Sessions with batch jobs queued or running (what a session watcher has to check)."""
        with self._cond:
            return {j.session_id for j in self._jobs}

    def snapshot(self) -> LanesSnapshot:
        with self._cond:
            return LanesSnapshot(
                self.slots, self.batch_slots, self.max_batch_jobs, self._busy_interactive, self._busy_batch,
                len(self._waiting_interactive), len(self._waiting_batch),
                tuple(self._status_locked(j) for j in self._running),
                tuple(self._status_locked(j) for j in self._queued),
            )

    # ---------------------------------------------------------------- internals (lock held unless said)

    def _depth(self) -> int:
        return getattr(self._local, "depth", 0)

    def _status_locked(self, job: BatchJob) -> JobStatus:
        ahead = 0
        if job._state == "queued" and job in self._queued:
            ahead = len(self._running) + self._queued.index(job)
        return JobStatus(job.session_id, job.job_id, job._state, ahead, job._chunks_done, job._chunks_total)

    def _status_of(self, job: BatchJob) -> JobStatus:
        with self._cond:
            return self._status_locked(job)

    def _admit(self) -> None:
        while self._queued and len(self._running) < self.max_batch_jobs:
            job = self._queued.pop(0)
            job._state = "running"
            self._running.append(job)
        self._cond.notify_all()

    def _dispatch(self) -> None:
        """Hand free slots out: waiting interactive requests first, then batch chunks by session turn."""
        changed = False
        while self._busy_interactive + self._busy_batch < self.slots:
            if self._waiting_interactive:
                self._granted.add(self._waiting_interactive.pop(0))
                self._busy_interactive += 1
            elif self._waiting_batch and self._busy_batch < self.batch_slots:
                # The session served longest ago (never: -1) goes next; ties by arrival.
                ticket, _ = min(self._waiting_batch.values(),
                                key=lambda tj: (self._served.get(tj[1].session_id, -1), tj[0]))
                _, job = self._waiting_batch.pop(ticket)
                self._served[job.session_id] = next(self._serve_seq)
                self._granted.add(ticket)
                self._busy_batch += 1
            else:
                break
            changed = True
        if changed:
            self._cond.notify_all()

    def _wait_admitted(self, job: BatchJob) -> None:
        """In the job's thread: wait for admission, reporting the place in line as it changes."""
        while True:
            job._report()
            with self._cond:
                if job.cancelled:
                    raise JobCancelled(f"The run was cancelled while it waited ({self._status_locked(job).message()})")
                if job._state == "running":
                    break
                self._cond.wait(_LIVENESS_POLL_S)
            if not job._alive():
                self._cancel_jobs([job])
        job._report()

    def _acquire_chunk(self, job: BatchJob) -> None:
        """In the job's thread: wait for a batch slot for the next chunk (a chunk boundary)."""
        if not job._alive():
            self._cancel_jobs([job])
        if job._state == "new":  # first chunk: join the line for admission
            with self._cond:
                if not job.cancelled:
                    job._state = "queued"
                    self._queued.append(job)
                    self._admit()
            self._wait_admitted(job)
        with self._cond:
            ticket = next(self._tickets)
            while True:
                if job.cancelled:
                    self._waiting_batch.pop(ticket, None)
                    if ticket in self._granted:  # granted in the meantime: give it back
                        self._granted.discard(ticket)
                        self._busy_batch -= 1
                        self._dispatch()
                    raise JobCancelled(f"The run was cancelled after {job._chunks_done} batches.")
                if ticket in self._granted:
                    self._granted.discard(ticket)
                    job._holding = True
                    break
                if ticket not in self._waiting_batch:
                    self._waiting_batch[ticket] = (ticket, job)
                    self._dispatch()
                    continue
                self._cond.wait(_LIVENESS_POLL_S)
                # A session that vanished without a cancel: is_alive is a cheap lookup, fine under the lock.
                if not job.cancelled and not job._alive():
                    job.cancelled = True
        self._local.depth = 1

    def _release(self, job: BatchJob) -> None:
        self._local.depth = 0
        job._holding = False
        with self._cond:
            self._busy_batch -= 1
            job._chunks_done += 1
            self._dispatch()
        job._report()

    def _cancel_jobs(self, jobs: list[BatchJob]) -> None:
        with self._cond:
            for job in jobs:
                job.cancelled = True
                if job in self._queued:  # never admitted: it will never run
                    self._queued.remove(job)
                    job._state = "cancelled"
            self._cond.notify_all()

    def _finish(self, job: BatchJob, state: str) -> None:
        with self._cond:
            if job in self._running:
                self._running.remove(job)
            if job in self._queued:
                self._queued.remove(job)
            if job in self._jobs:
                self._jobs.remove(job)
            job._state = state
            self._admit()
        job._report()
