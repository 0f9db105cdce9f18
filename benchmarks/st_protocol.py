"""A Streamlit session spoken over Streamlit's own WebSocket protocol, without a browser.

The load test's cheap client: it does to the server what the browser's frontend does — connects to
``/_stcore/stream``, asks for runs with ``BackMsg.rerun_script`` carrying the widget states and the
page, reads the ``ForwardMsg`` stream (the page's elements, the run's end) and fetches the media
files the page refers to — but draws nothing, so a dozen of them cost the machine little of the CPU
that a dozen Chromium pages drawing feature-map grids would take from the server they measure.

What it does not do: file uploads (the load test's sweep sessions stay in real browsers), custom
components, and the forward-message cache (it reports no cached messages, so every message comes
whole).

Example (a server on port 8501)::

    session = ProtocolSession("http://127.0.0.1:8501")
    await session.open()                                   # the default page's first run
    await session.choose("Block", "block3")                # seconds until that run finished
    await session.open_page("Embeddings")
    await session.close()
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass

__all__ = ["ProtocolError", "ProtocolSession", "RunEnd"]

#: ``ForwardMsg.script_finished`` values that end a run the client asked for (0: the script ran;
#: 3: a fragment ran). 2 is a run stopped for the next one, 1 a script that did not compile.
_RUN_ENDS = (0, 3)


class ProtocolError(RuntimeError):
    """The server closed the session, or a run did not end as a browser's would."""


@dataclass(frozen=True)
class RunEnd:
    """The end of one run: how long after the request it came, and how it ended."""

    seconds: float
    status: int


class ProtocolSession:
    """One Streamlit session over the WebSocket protocol.

    Elements are kept as the frontend keeps them: by delta path, replaced by each new run, those a
    finished full run did not send dropped. Widgets are found by their label among the current
    elements, and the values set on them are sent with every later run, as the frontend sends every
    widget's value.
    """

    def __init__(self, url: str, *, fetch_media: bool = True):
        self.base = url.rstrip("/")
        self.fetch_media = fetch_media
        self.elements: dict[tuple[int, ...], object] = {}
        self.pages: dict[str, str] = {}  # page name -> page script hash (from the navigation message)
        self.page_hash = ""
        self.exceptions: list[str] = []  # st.exception elements the server sent, any run
        self.media_errors: list[str] = []  # media files the server did not serve
        self._incoming: dict[tuple[int, ...], object] = {}
        self._widget_states: dict[str, object] = {}  # widget id -> WidgetState, as last set
        self._ends: list[tuple[float, int]] = []
        self._changed = asyncio.Event()
        self._fetched: set[str] = set()
        self._media_tasks: set[asyncio.Task] = set()
        self._ws = None
        self._reader: asyncio.Task | None = None
        self._closed_why: str | None = None

    # ------------------------------------------------------------------ connection
    async def open(self, timeout_s: float = 240) -> RunEnd:
        """Connect and run the default page (the frontend's first rerun request); the run's end."""
        from websockets.asyncio.client import connect

        parts = urllib.parse.urlsplit(self.base)
        scheme = "wss" if parts.scheme == "https" else "ws"
        self._ws = await connect(f"{scheme}://{parts.netloc}/_stcore/stream", subprotocols=["streamlit"],
                                 max_size=None, open_timeout=timeout_s)
        self._reader = asyncio.create_task(self._read())
        return await self.rerun(timeout_s=timeout_s)

    async def close(self) -> None:
        """Close the WebSocket (the server ends the session after its reconnect window)."""
        for task in list(self._media_tasks):
            task.cancel()
        if self._ws is not None:
            await self._ws.close()
            self._ws = None
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except (asyncio.CancelledError, Exception):
                pass
            self._reader = None

    # ------------------------------------------------------------------ runs
    async def rerun(self, *, timeout_s: float = 240) -> RunEnd:
        """Ask for a run with the current widget states; wait for its end (``ProtocolError`` on timeout)."""
        from streamlit.proto.BackMsg_pb2 import BackMsg

        if self._ws is None:
            raise ProtocolError("the session is not open")
        msg = BackMsg()
        state = msg.rerun_script
        state.query_string = ""
        state.page_script_hash = self.page_hash
        state.widget_states.widgets.extend(self._widget_states.values())
        state.context_info.timezone = "UTC"
        state.context_info.timezone_offset = 0
        state.context_info.locale = "en-US"
        state.context_info.url = self.base + "/"
        seen = len(self._ends)
        start = time.perf_counter()
        await self._ws.send(msg.SerializeToString())
        deadline = start + timeout_s
        while True:
            for finished_at, status in self._ends[seen:]:
                if status in _RUN_ENDS:
                    return RunEnd(finished_at - start, status)
            if self._closed_why is not None:
                raise ProtocolError(f"the server closed the session: {self._closed_why}")
            left = deadline - time.perf_counter()
            if left <= 0:
                raise ProtocolError(f"no run ended within {timeout_s:.0f} s")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=left)
            except TimeoutError:
                pass

    async def choose(self, label: str, option: str | int, *, timeout_s: float = 240) -> RunEnd:
        """Pick ``option`` (its shown text, or its position) in the selectbox labelled ``label``; the run's end."""
        box = self.selectbox(label)
        text = box.options[option] if isinstance(option, int) else option
        if text not in box.options:
            raise ProtocolError(f"{label!r} has no option {text!r}; it offers {list(box.options)}")
        from streamlit.proto.WidgetStates_pb2 import WidgetState

        self._widget_states[box.id] = WidgetState(id=box.id, string_value=text)
        return await self.rerun(timeout_s=timeout_s)

    async def open_page(self, name: str, *, timeout_s: float = 240) -> RunEnd:
        """Go to the page called ``name`` in the app's navigation; the run's end."""
        if name not in self.pages:
            raise ProtocolError(f"no page {name!r}; the app has {sorted(self.pages)}")
        self.page_hash = self.pages[name]
        return await self.rerun(timeout_s=timeout_s)

    # ------------------------------------------------------------------ the page
    def selectbox(self, label: str):
        """The current selectbox labelled ``label`` (its proto: ``id``, ``options``, ``default``)."""
        for element in self.elements.values():
            if element.WhichOneof("type") == "selectbox" and element.selectbox.label == label:
                return element.selectbox
        raise ProtocolError(f"the page shows no selectbox {label!r}")

    def selected(self, label: str) -> str:
        """The option the selectbox labelled ``label`` shows."""
        box = self.selectbox(label)
        state = self._widget_states.get(box.id)
        if state is not None and state.string_value in box.options:
            return state.string_value
        return box.options[box.default] if box.options else ""

    def texts(self) -> list[str]:
        """The body of every text element (markdown, captions, headings, alerts) on the page, in delta order."""
        out = []
        for _, element in sorted(self.elements.items()):
            kind = element.WhichOneof("type")
            if kind in ("markdown", "heading", "alert"):
                out.append(getattr(element, kind).body)
        return out

    def image_alts(self) -> list[str]:
        return [img.alt for _, e in sorted(self.elements.items()) if e.WhichOneof("type") == "imgs"
                for img in e.imgs.imgs]

    # ------------------------------------------------------------------ the stream
    async def _read(self) -> None:
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        try:
            async for data in self._ws:
                msg = ForwardMsg()
                msg.ParseFromString(data)
                self._handle(msg)
        except Exception as exc:  # noqa: BLE001 — any end of the stream ends the session
            self._closed_why = f"{type(exc).__name__}: {exc}"
        else:
            self._closed_why = "the WebSocket closed"
        self._changed.set()

    def _handle(self, msg) -> None:
        kind = msg.WhichOneof("type")
        if kind == "new_session":
            self.page_hash = msg.new_session.page_script_hash
            self._incoming = {}
        elif kind == "navigation":
            self.pages = {page.page_name: page.page_script_hash for page in msg.navigation.app_pages}
        elif kind == "delta":
            path = tuple(msg.metadata.delta_path)
            if msg.delta.WhichOneof("type") == "new_element":
                element = msg.delta.new_element
                self._incoming[path] = element
                self._note(element)
        elif kind == "script_finished":
            status = msg.script_finished
            if status == 0:  # a full run: what it did not send is gone from the page
                self.elements = self._incoming
            elif status == 3:
                self.elements = {**self.elements, **self._incoming}
            self._incoming = {}
            self._ends.append((time.perf_counter(), status))
            self._changed.set()

    def _note(self, element) -> None:
        kind = element.WhichOneof("type")
        if kind == "exception":
            self.exceptions.append(f"{element.exception.type}: {element.exception.message}")
        elif kind == "imgs" and self.fetch_media:
            for img in element.imgs.imgs:
                self._fetch(img.url)

    def _fetch(self, url: str) -> None:
        """GET a media file once per session, in the background, as the browser loads an <img>."""
        if not url or url in self._fetched or url.startswith("data:"):
            return
        self._fetched.add(url)
        full = url if "://" in url else self.base + (url if url.startswith("/") else "/" + url)

        def get() -> None:
            try:
                with urllib.request.urlopen(full, timeout=60) as response:
                    response.read()
            except OSError as exc:
                self.media_errors.append(f"{url}: {exc}")

        task = asyncio.get_running_loop().create_task(asyncio.to_thread(get))
        self._media_tasks.add(task)
        task.add_done_callback(self._media_tasks.discard)
