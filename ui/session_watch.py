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
  jobs whose thread is busy inside a long chunk;
* it also frees what a closed session leaves behind. Streamlit keeps a disconnected session (its
  session state, its uploaded files) for ``server.disconnectedSessionTTL`` seconds in case the tab
  reconnects, but past that it only drops it from its storage at some later write, without shutting
  it down — so the uploaded files stay in its file manager. Every session that ran the app is
  noted (:meth:`SessionWatcher.note`); shortly *before* that window runs out
  (:func:`close_after`), the watcher closes it through Streamlit's thread-safe
  ``Runtime.clear_user_info_for_session`` (for a stored session: a full shutdown on the event loop —
  session state, uploaded files, media, session-scoped caches), then runs
  :func:`ui.reclaim.after_sessions_ended` (a full collection through the frozen heap and
  ``malloc_trim``, at most once a minute; retried at the next check when too soon).
  Before, not after: once the window has passed, Streamlit's storage reports the session as absent
  (its entry has expired but is not yet removed), so a close finds nothing to shut down and the
  whole session — state, features, uploads — stays in memory until some later disconnect's write
  reaps it. The load test's memory probe found 5 of 6 closed sweep sessions held that way.

Outside a Streamlit server (AppTest, tests, the command line) there is no runtime: every session
counts as alive, so nothing is cancelled behind anyone's back.

Example (in a page)::

    sid = session_watch.current_session_id()
    session_watch.watch(lanes)                       # once per process; idempotent
    lanes.run_batch(sid, chunks, is_alive=session_watch.alive_check(sid))
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from streamlit import config, runtime
from streamlit.runtime.scriptrunner_utils.script_requests import ScriptRequestType
from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

from . import reclaim
from .work_lanes import WorkLanes

__all__ = ["GRACE_S", "current_session_id", "session_active", "alive_check", "rerun_requested", "reconnect_window",
           "close_after", "close_stored_session", "SessionWatcher", "watch"]

_LOGGER = logging.getLogger("layer_explorer.ui")

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


def reconnect_window() -> float:
    """Seconds Streamlit keeps a disconnected session for a reconnect (``server.disconnectedSessionTTL``)."""
    try:
        return float(config.get_option("server.disconnectedSessionTTL"))
    except (KeyError, TypeError, ValueError):
        return 120.0


def close_after(window_s: float, interval_s: float = _INTERVAL_S) -> float:
    """Seconds a session may stay disconnected before the watcher closes it: a little less than ``window_s``.

    Streamlit's session storage hides an entry once its reconnect window has passed, so the close must
    come before that. The watcher first sees a disconnect up to one check interval late, and the close
    itself runs on the event loop, so the margin is at least two intervals, and a quarter of the window
    up to 15 s. A reconnect within what is left still resumes the session.

    Example:
        >>> close_after(120.0)      # Streamlit's default window
        105.0
        >>> close_after(10.0)       # a short window: two 2-second checks of margin
        6.0
        >>> close_after(3.0)
        0.0
    """
    margin = max(2 * interval_s, min(15.0, window_s / 4))
    return max(0.0, window_s - margin)


def close_stored_session(session_id: str) -> bool:
    """Shut down a disconnected session Streamlit still stores; whether it asked (False if active or no runtime).

    ``Runtime.clear_user_info_for_session`` is Streamlit's thread-safe way to do it: for a session
    that exists only in storage, it closes it on the event loop (``AppSession.shutdown``: uploaded
    files, media references and session-scoped caches go, and the session state with the session).
    """
    if not runtime.exists():
        return False
    instance = runtime.get_instance()
    if instance.is_active_session(session_id):
        return False
    instance.clear_user_info_for_session(session_id)
    return True


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
    """Cancels the batch work of sessions that went away and frees what they leave; :meth:`check_once` is one pass.

    ``note(session_id)``: a session that ran the app. Once it has been inactive ``reconnect_s``
    (default: :func:`close_after` of Streamlit's reconnect window) it is closed with ``close_session`` and, if any went,
    ``on_ended()`` runs (it returns whether it ran; if not, it is asked again at the next check).
    """

    def __init__(self, lanes: WorkLanes, interval_s: float = _INTERVAL_S, grace_s: float = GRACE_S,
                 is_active: Callable[[str], bool] = session_active, clock: Callable[[], float] = time.monotonic,
                 reconnect_s: float | None = None, close_session: Callable[[str], object] = close_stored_session,
                 on_ended: Callable[[], bool] = reclaim.after_sessions_ended):
        self.lanes, self.interval_s, self.grace_s = lanes, interval_s, grace_s
        self.reconnect_s = close_after(reconnect_window(), interval_s) if reconnect_s is None else reconnect_s
        self._is_active, self._clock = is_active, clock
        self._close, self._on_ended = close_session, on_ended
        self._checks: dict[str, _Grace] = {}
        self._seen: dict[str, _Grace] = {}
        self._lock = threading.Lock()
        self._reclaim_due = False
        self.ended = 0  # sessions closed so far
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def note(self, session_id: str) -> None:
        """Remember a session that ran the app (cheap; called on every run)."""
        if session_id in self._seen:
            return
        with self._lock:
            self._seen.setdefault(session_id, _Grace(session_id, self._is_active, self.reconnect_s, self._clock))

    def sessions_seen(self) -> set[str]:
        with self._lock:
            return set(self._seen)

    def check_once(self) -> list[str]:
        """Cancel the jobs of every gone session, close sessions past the reconnect window; the sessions cancelled."""
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
        with self._lock:
            seen = list(self._seen.items())
        ended = [sid for sid, check in seen if not check()]
        for sid in ended:
            self.lanes.cancel_session(sid)
            self._close(sid)
            with self._lock:
                self._seen.pop(sid, None)
        self.ended += len(ended)
        if ended:
            _LOGGER.info("session watcher: closed %d session(s) gone past the reconnect window", len(ended))
            self._reclaim_due = True
        if self._reclaim_due and self._on_ended():
            self._reclaim_due = False
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
            try:
                self.check_once()
            except Exception:  # the watcher must outlive one bad pass (logged, tried again next time)
                _LOGGER.exception("session watcher: one pass failed")


def watch(lanes: WorkLanes) -> SessionWatcher:
    """Start (once per process and lanes object) the watcher thread; return it."""
    with _watchers_lock:
        watcher = _watchers.get(id(lanes))
        if watcher is None:
            watcher = _watchers[id(lanes)] = SessionWatcher(lanes).start()
        return watcher
