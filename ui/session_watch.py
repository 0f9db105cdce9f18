"""Which Streamlit session is this, and is it still there? The one Streamlit-dependent piece of the lanes.

Streamlit (1.67) has no public "session ended" callback (streamlit/streamlit#8545 asks for one).
What it does have: the script thread's ``get_script_run_ctx().session_id``, and
``streamlit.runtime.get_instance().is_active_session(session_id)``, documented in its source as
safe to call from any thread. A session stops being *active* as soon as its browser tab
disconnects (closed tab, reload, lost network); Streamlit keeps it a little longer for a
reconnect. So:

* :func:`alive_check` gives a batch job an ``is_alive`` callable (checked by ``ui.work_lanes`` at
  every chunk boundary and while the job waits in line), with a grace period so a short network
  blip does not cancel a sweep;
* :class:`SessionWatcher` is a daemon thread that, every few seconds, cancels the queued and
  running jobs of every session that has been inactive longer than the grace period — this covers
  jobs whose thread is busy inside a long chunk.

Outside a Streamlit server (AppTest, tests, the command line) there is no runtime: every session
counts as alive, so nothing is cancelled behind anyone's back.

Example (in a page)::

    sid = session_watch.current_session_id()
    session_watch.watch(lanes)                       # once per process; idempotent
    lanes.run_batch(sid, chunks, is_alive=session_watch.alive_check(sid))
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from streamlit import runtime
from streamlit.runtime.scriptrunner_utils.script_requests import ScriptRequestType
from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

from .work_lanes import WorkLanes

__all__ = ["GRACE_S", "current_session_id", "session_active", "alive_check", "rerun_requested", "SessionWatcher",
           "watch"]

GRACE_S = 10.0  # a session inactive this long is gone (Streamlit's reconnect window is longer; work stops sooner)
_INTERVAL_S = 2.0

_watchers: dict[int, SessionWatcher] = {}  # one watcher thread per lanes object, for the whole process
_watchers_lock = threading.Lock()


def current_session_id() -> str:
    """The session of the calling script thread; "local" outside a Streamlit run (tests, AppTest without a runtime)."""
    ctx = get_script_run_ctx(suppress_warning=True)
    return ctx.session_id if ctx is not None else "local"


def session_active(session_id: str) -> bool:
    """Whether a browser is connected to ``session_id`` now; True when there is no Streamlit runtime."""
    if not runtime.exists():
        return True
    return runtime.get_instance().is_active_session(session_id)


class _Grace:
    """True until ``is_active`` has been false for ``grace_s`` in a row."""

    def __init__(self, session_id: str, is_active: Callable[[str], bool], grace_s: float,
                 clock: Callable[[], float] = time.monotonic):
        self.session_id, self.is_active, self.grace_s, self.clock = session_id, is_active, grace_s, clock
        self.inactive_since: float | None = None

    def __call__(self) -> bool:
        if self.is_active(self.session_id):
            self.inactive_since = None
            return True
        now = self.clock()
        if self.inactive_since is None:
            self.inactive_since = now
        return now - self.inactive_since < self.grace_s


def alive_check(session_id: str, grace_s: float = GRACE_S,
                is_active: Callable[[str], bool] = session_active) -> Callable[[], bool]:
    """An ``is_alive`` callable for ``WorkLanes.batch``/``run_batch``: false once the session is gone."""
    return _Grace(session_id, is_active, grace_s)


def rerun_requested() -> Callable[[], bool]:
    """For the calling script run: a callable, true once Streamlit wants this run to stop.

    That is when the user used a widget (pressed Cancel, clicked elsewhere) or the session is
    stopping. Streamlit interrupts a run at its next element call; a batch job waiting in line or
    for a slot makes none, so it asks this instead (and stops, as the run would have). Reads
    Streamlit's pending request the way ``ScriptRequests.on_scriptrunner_yield`` does, without
    consuming it: a fragment's rerun that would not pre-empt the run does not count. Outside a
    script run (tests, threads) it is always false.
    """
    ctx = get_script_run_ctx(suppress_warning=True)
    requests = getattr(ctx, "script_requests", None) if ctx is not None else None

    def pending() -> bool:
        state = getattr(requests, "_state", None)
        if state == ScriptRequestType.STOP:
            return True
        if state != ScriptRequestType.RERUN:
            return False
        data = getattr(requests, "_rerun_data", None)
        return not (data is not None and bool(data.fragment_id_queue) and not data.is_fragment_scoped_rerun)

    return pending


class SessionWatcher:
    """Cancels the batch work of sessions that went away; :meth:`check_once` is one sweep over them."""

    def __init__(self, lanes: WorkLanes, interval_s: float = _INTERVAL_S, grace_s: float = GRACE_S,
                 is_active: Callable[[str], bool] = session_active, clock: Callable[[], float] = time.monotonic):
        self.lanes, self.interval_s, self.grace_s = lanes, interval_s, grace_s
        self._is_active, self._clock = is_active, clock
        self._checks: dict[str, _Grace] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check_once(self) -> list[str]:
        """Cancel the jobs of every gone session; the sessions cancelled."""
        sessions = self.lanes.sessions()
        for sid in list(self._checks):
            if sid not in sessions:
                del self._checks[sid]
        gone = []
        for sid in sorted(sessions):
            check = self._checks.setdefault(sid, _Grace(sid, self._is_active, self.grace_s, self._clock))
            if not check():
                self.lanes.cancel_session(sid)
                gone.append(sid)
        return gone

    def start(self) -> SessionWatcher:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="layer-explorer-session-watch", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.check_once()


def watch(lanes: WorkLanes) -> SessionWatcher:
    """Start (once per process and lanes object) the watcher thread; return it."""
    with _watchers_lock:
        watcher = _watchers.get(id(lanes))
        if watcher is None:
            watcher = _watchers[id(lanes)] = SessionWatcher(lanes).start()
        return watcher
