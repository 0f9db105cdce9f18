"""The two-lane scheduler (ui.work_lanes): order, fairness, admission and cancellation.

No timing assertions: threads are held by events and released one step at a time; the tests
only *wait* (bounded) for the scheduler to reach a state, then assert on the order of events.
"""

from __future__ import annotations

import doctest
import threading
import time

import pytest

from ui import work_lanes
from ui.work_lanes import JobCancelled, WorkLanes

WAIT_S = 20


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.005)


class Worker(threading.Thread):
    """Runs ``fn`` in a thread, keeping its result or exception for the test to check."""

    def __init__(self, fn):
        super().__init__(daemon=True)
        self.fn, self.result, self.error = fn, None, None

    def run(self):
        try:
            self.result = self.fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            self.error = exc

    def finish(self):
        self.join(WAIT_S)
        assert not self.is_alive(), "worker did not finish"
        return self


def blocking_chunk(log, name, started: threading.Event, release: threading.Event):
    def chunk():
        started.set()
        assert release.wait(WAIT_S)
        log.append(name)
        return name
    return chunk


def logging_chunk(log, name):
    def chunk():
        log.append(name)
        return name
    return chunk


@pytest.mark.parametrize("slots", [1, 2])
def test_interactive_request_completes_before_the_running_batch_job(slots):
    lanes = WorkLanes(slots=slots, max_batch_jobs=2)
    log: list[str] = []
    started, release = threading.Event(), threading.Event()
    chunks = [blocking_chunk(log, "batch 0", started, release)] + [logging_chunk(log, f"batch {i}") for i in (1, 2, 3)]

    def batch():
        out = lanes.run_batch("teacher", chunks)
        log.append("batch done")
        return out

    def click():
        with lanes.interactive():
            log.append("interactive")

    b = Worker(batch)
    b.start()
    assert started.wait(WAIT_S)
    i = Worker(click)
    i.start()
    if slots == 1:  # the only slot is busy with a chunk: the click waits for the chunk boundary
        wait_until(lambda: lanes.snapshot().waiting_interactive == 1, "the click waits")
    else:  # one slot is always kept for clicks: it runs while the chunk still runs
        i.finish()
    release.set()
    i.finish(), b.finish()
    assert b.error is None and b.result == ["batch 0", "batch 1", "batch 2", "batch 3"]
    assert log.index("interactive") < log.index("batch done")
    # Not only before the job ends: before its next chunk.
    assert log.index("interactive") < log.index("batch 1")
    snap = lanes.snapshot()
    assert (snap.busy_batch, snap.busy_interactive, snap.running_jobs) == (0, 0, ())


def test_a_closed_sessions_queued_jobs_never_run():
    lanes = WorkLanes(slots=2, max_batch_jobs=1)
    log: list[str] = []
    started, release = threading.Event(), threading.Event()
    first = Worker(lambda: lanes.run_batch("a", [blocking_chunk(log, "a0", started, release)]))
    first.start()
    assert started.wait(WAIT_S)
    queued = [Worker(lambda n=n: lanes.run_batch("b", [logging_chunk(log, f"b{n}")])) for n in range(2)]
    for w in queued:
        w.start()
    wait_until(lambda: len(lanes.snapshot().queued_jobs) == 2, "both of b's jobs wait in line")
    assert lanes.sessions() == {"a", "b"}
    assert lanes.cancel_session("b") == 2
    for w in queued:
        w.finish()
        assert isinstance(w.error, JobCancelled)
    release.set()
    first.finish()
    assert first.error is None
    later = lanes.run_batch("c", [logging_chunk(log, "c0")])  # the line moves on
    assert later == ["c0"] and log == ["a0", "c0"]  # no chunk of b ever ran
    assert lanes.sessions() == set()


def test_a_queued_job_whose_session_is_gone_never_runs_without_any_cancel():
    lanes = WorkLanes(slots=2, max_batch_jobs=1)
    log: list[str] = []
    started, release = threading.Event(), threading.Event()
    first = Worker(lambda: lanes.run_batch("a", [blocking_chunk(log, "a0", started, release)]))
    first.start()
    assert started.wait(WAIT_S)
    alive = threading.Event()
    alive.set()
    gone = Worker(lambda: lanes.run_batch("b", [logging_chunk(log, "b0")], is_alive=alive.is_set))
    gone.start()
    wait_until(lambda: len(lanes.snapshot().queued_jobs) == 1, "b waits in line")
    alive.clear()  # the browser tab closed; nobody called cancel_session
    gone.finish()
    assert isinstance(gone.error, JobCancelled)
    release.set()
    first.finish()
    assert log == ["a0"]


def test_a_running_job_stops_at_the_next_chunk_boundary_after_cancel():
    lanes = WorkLanes(slots=2, max_batch_jobs=2)
    log: list[str] = []
    seen = []
    started, release = threading.Event(), threading.Event()
    chunks = [blocking_chunk(log, "0", started, release), logging_chunk(log, "1"), logging_chunk(log, "2")]
    w = Worker(lambda: lanes.run_batch("a", chunks, on_status=seen.append))
    w.start()
    assert started.wait(WAIT_S)
    assert lanes.cancel_session("a") == 1
    release.set()  # the chunk that had started finishes ...
    w.finish()
    assert log == ["0"]  # ... and no other starts
    assert isinstance(w.error, JobCancelled)
    assert seen[-1].state == "cancelled" and seen[-1].chunks_done == 1
    assert seen[-1].message() == "Cancelled after 1 batch."
    assert lanes.snapshot().busy_batch == 0


def test_batch_jobs_of_two_sessions_take_turns():
    lanes = WorkLanes(slots=1, max_batch_jobs=2)
    log: list[str] = []
    hold, held = threading.Event(), threading.Event()

    def click():  # keeps the only slot busy until both jobs wait for it
        with lanes.interactive():
            held.set()
            assert hold.wait(WAIT_S)

    c = Worker(click)
    c.start()
    assert held.wait(WAIT_S)
    a = Worker(lambda: lanes.run_batch("a", [logging_chunk(log, f"a{i}") for i in range(4)]))
    a.start()
    wait_until(lambda: lanes.snapshot().waiting_batch == 1, "a waits for a slot")
    b = Worker(lambda: lanes.run_batch("b", [logging_chunk(log, f"b{i}") for i in range(4)]))
    b.start()
    wait_until(lambda: lanes.snapshot().waiting_batch == 2, "b waits for a slot")
    hold.set()
    for w in (c, a, b):
        w.finish()
        assert w.error is None
    assert log == ["a0", "b0", "a1", "b1", "a2", "b2", "a3", "b3"]


def test_a_job_past_the_limit_says_how_many_runs_are_ahead():
    lanes = WorkLanes(slots=2, max_batch_jobs=1)
    log: list[str] = []
    a_started, a_release = threading.Event(), threading.Event()
    b_started, b_release = threading.Event(), threading.Event()
    seen_b, seen_c = [], []
    a = Worker(lambda: lanes.run_batch("a", [blocking_chunk(log, "a", a_started, a_release)]))
    a.start()
    assert a_started.wait(WAIT_S)
    b = Worker(lambda: lanes.run_batch("b", [blocking_chunk(log, "b", b_started, b_release)], on_status=seen_b.append))
    b.start()
    wait_until(lambda: seen_b, "b reports its place")
    c = Worker(lambda: lanes.run_batch("c", [logging_chunk(log, "c")], on_status=seen_c.append))
    c.start()
    wait_until(lambda: seen_c, "c reports its place")
    assert seen_b[0].message() == "Queued behind 1 other run."
    assert seen_c[0].message() == "Queued behind 2 other runs."
    assert [s.ahead for s in lanes.snapshot().queued_jobs] == [1, 2]
    a_release.set()
    wait_until(lambda: any(s.state == "queued" and s.ahead == 1 for s in seen_c), "c moves up the line")
    assert b_started.wait(WAIT_S)
    b_release.set()
    for w in (a, b, c):
        w.finish()
        assert w.error is None
    messages = [s.message() for s in seen_c]
    assert messages[:2] == ["Queued behind 2 other runs.", "Queued behind 1 other run."]
    assert messages[-1] == "Done: 1 batch."
    assert "Running: 0 of 1 batches done." in messages
    assert log == ["a", "b", "c"]


def test_slot_follows_the_lane_of_its_caller_and_nests_without_deadlock():
    lanes = WorkLanes(slots=1, max_batch_jobs=1)
    with lanes.interactive():
        with lanes.slot():  # nested in a held slot: no second slot needed
            with lanes.interactive():
                pass
    with lanes.batch("a", chunks=2) as job:
        for _ in range(2):
            with lanes.slot():  # inside a batch job: one chunk of that job
                with lanes.slot():
                    pass
    assert job.status.state == "done" and job.status.chunks_done == 2


def test_a_failing_chunk_frees_its_slot_and_the_line_moves_on():
    lanes = WorkLanes(slots=1, max_batch_jobs=1)

    def broken():
        raise RuntimeError("boom")

    seen = []
    with pytest.raises(RuntimeError):
        lanes.run_batch("a", [broken], on_status=seen.append)
    assert seen[-1].state == "failed"
    assert lanes.run_batch("b", [lambda: 1]) == [1]
    snap = lanes.snapshot()
    assert (snap.busy_batch, snap.busy_interactive, snap.running_jobs, snap.queued_jobs) == (0, 0, (), ())


@pytest.mark.parametrize("kwargs", [{"slots": 0}, {"max_batch_jobs": -1}, {"slots": 1, "batch_slots": 2},
                                    {"slots": True}])
def test_bad_settings_are_refused_with_what_was_passed(kwargs):
    with pytest.raises(ValueError, match="WorkLanes"):
        WorkLanes(**kwargs)


def test_docstring_examples():
    assert doctest.testmod(work_lanes).failed == 0


# ------------------------------------------------------------------ ui.session_watch (the Streamlit adapter)


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_session_watcher_cancels_the_work_of_a_session_gone_longer_than_the_grace_period():
    from ui.session_watch import SessionWatcher

    lanes = WorkLanes(slots=2, max_batch_jobs=1)
    active = {"a": True, "b": True}
    clock = FakeClock()
    watcher = SessionWatcher(lanes, grace_s=10, is_active=active.__getitem__, clock=clock)
    log: list[str] = []
    started, release = threading.Event(), threading.Event()
    a = Worker(lambda: lanes.run_batch("a", [blocking_chunk(log, "a0", started, release), logging_chunk(log, "a1")]))
    a.start()
    assert started.wait(WAIT_S)
    b = Worker(lambda: lanes.run_batch("b", [logging_chunk(log, "b0")]))
    b.start()
    wait_until(lambda: len(lanes.snapshot().queued_jobs) == 1, "b waits in line")
    active["b"] = False  # b's tab closes
    assert watcher.check_once() == []  # within the grace period (a reconnect would keep it)
    clock.now = 11.0
    assert watcher.check_once() == ["b"]
    b.finish()
    assert isinstance(b.error, JobCancelled)
    active["a"] = False  # a's tab closes while its chunk runs
    clock.now = 12.0
    watcher.check_once()
    clock.now = 30.0
    assert watcher.check_once() == ["a"]
    release.set()
    a.finish()
    assert isinstance(a.error, JobCancelled)
    assert log == ["a0"]


def test_outside_a_streamlit_server_every_session_is_alive():
    from ui.session_watch import alive_check, current_session_id, session_active

    assert current_session_id() == "local"
    assert session_active("whatever")
    assert alive_check("whatever")()


def test_checkpoint_inside_one_long_chunk_lets_a_waiting_click_in_and_stops_a_cancelled_job():
    lanes = WorkLanes(slots=1, max_batch_jobs=1)
    log: list[str] = []
    at_step, go_on = threading.Event(), threading.Event()

    def long_job():
        with lanes.batch("a") as job, job.chunk():
            for step in range(3):
                log.append(f"step {step}")
                if step == 0:
                    at_step.set()
                    assert go_on.wait(WAIT_S)
                job.checkpoint()  # e.g. from score_sweep's progress callback

    def click():
        with lanes.interactive():
            log.append("interactive")

    a = Worker(long_job)
    a.start()
    assert at_step.wait(WAIT_S)
    c = Worker(click)
    c.start()
    wait_until(lambda: lanes.snapshot().waiting_interactive == 1, "the click waits")
    go_on.set()
    a.finish(), c.finish()
    assert a.error is None
    assert log == ["step 0", "interactive", "step 1", "step 2"]

    cancelled_log: list[str] = []
    at_step.clear()
    go_on.clear()

    def cancelled_job():
        with lanes.batch("b") as job, job.chunk():
            for step in range(3):
                cancelled_log.append(step)
                at_step.set()
                assert go_on.wait(WAIT_S)
                job.checkpoint()

    b = Worker(cancelled_job)
    b.start()
    assert at_step.wait(WAIT_S)
    lanes.cancel_session("b")
    go_on.set()
    b.finish()
    assert isinstance(b.error, JobCancelled) and cancelled_log == [0]
    snap = lanes.snapshot()
    assert (snap.busy_batch, snap.busy_interactive, snap.running_jobs) == (0, 0, ())


def test_a_batch_inside_a_batch_is_one_job_and_work_without_chunks_never_waits_in_line():
    lanes = WorkLanes(slots=2, max_batch_jobs=1)
    with lanes.batch("a") as sweep:
        with lanes.batch("a") as extraction:  # e.g. pooled_features inside the sweep
            assert extraction is sweep
            with extraction.chunk():
                pass
        with sweep.chunk():
            pass
        # The line is full (the sweep holds the only admission), yet another session's work that
        # turns out to be all cache hits (no chunk) finishes without waiting.
        def all_cache_hits():
            with lanes.batch("b") as job:
                return job.status.state

        w = Worker(all_cache_hits)
        w.start()
        w.finish()
        assert w.error is None and w.result == "new"
    assert sweep.status.state == "done" and sweep.status.chunks_done == 2


def test_a_job_of_a_session_already_gone_does_not_start():
    lanes = WorkLanes(slots=2, max_batch_jobs=2)
    ran = []
    with pytest.raises(JobCancelled, match="session has ended"):
        lanes.run_batch("gone", [lambda: ran.append(1)], is_alive=lambda: False)
    assert ran == [] and lanes.sessions() == set()


def test_a_closed_session_is_shut_down_after_the_reconnect_window_and_memory_is_reclaimed_once():
    """Streamlit stores a disconnected session for a reconnect but never shuts it down when that
    window passes (its uploaded files stay); the watcher closes it and then reclaims memory."""
    from ui.session_watch import SessionWatcher

    lanes = WorkLanes(slots=2, max_batch_jobs=1)
    active = {"a": True, "b": True}
    clock = FakeClock()
    closed: list[str] = []
    reclaims = {"asked": 0, "allowed": False}

    def on_ended():
        reclaims["asked"] += 1
        return reclaims["allowed"]  # False: "too soon", ask again at the next check

    watcher = SessionWatcher(lanes, grace_s=10, is_active=active.__getitem__, clock=clock, reconnect_s=120,
                             close_session=closed.append, on_ended=on_ended)
    watcher.note("a")
    watcher.note("b")
    watcher.note("a")
    assert watcher.sessions_seen() == {"a", "b"}
    watcher.check_once()
    assert closed == [] and reclaims["asked"] == 0
    active["b"] = False  # b's tab closes
    clock.now = 60.0
    watcher.check_once()
    assert closed == [], "within the reconnect window the session is kept (a reconnect resumes it)"
    active["b"] = True  # it came back: the window starts again next time
    clock.now = 100.0
    watcher.check_once()
    active["b"] = False
    clock.now = 200.0
    watcher.check_once()
    clock.now = 319.0
    watcher.check_once()
    assert closed == []
    clock.now = 321.0
    watcher.check_once()
    assert closed == ["b"] and watcher.sessions_seen() == {"a"} and watcher.ended == 1
    assert reclaims["asked"] == 1
    watcher.check_once()
    assert reclaims["asked"] == 2, "a reclaim refused as too soon is asked for again"
    reclaims["allowed"] = True
    watcher.check_once()
    watcher.check_once()
    assert reclaims["asked"] == 3 and closed == ["b"], "once done, nothing more until another session ends"


def test_without_a_streamlit_server_no_session_is_closed():
    from ui.session_watch import close_stored_session

    assert close_stored_session("whatever") is False
