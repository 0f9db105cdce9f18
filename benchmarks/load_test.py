"""Load test: N sessions against one ``streamlit run app.py`` server on loopback, timed in real browsers.

What it does (bounded in sessions, clicks and wall time; loopback only — the server listens on
127.0.0.1 and Chromium resolves no other host; it stops by itself):

1. **Single-session reference** on a fresh server: one session per demo set (shapes, digits) does
   the display-click cycle alone on Feature maps (these are the "0 sweeps, 1 session" figures),
   and each sweep zip is swept alone (the "one sweep alone" times). The numbers the page shows
   are kept: the zero-activation caption of each (block, image) and each sweep's recommendation.
2. **Load** on a second fresh server (so nothing is cached from step 1). First a **warm-up**, one
   session at a time: the display cycle on each demo set, Embeddings, and one sweep of a zip of its
   own on the same backbone, so every shared network and extractor the load uses is built. Then the
   server is left alone past Streamlit's reconnect window (``--session-ttl``) and the app's clean-up
   of closed sessions: that is the **start** memory (TensorFlow, the shared models, the demo sets'
   shared caches; no session open). Then ``--sessions`` Streamlit sessions: the *display* sessions
   (half on shapes, half on digits) open the app and keep switching the block and the image on
   Feature maps, then open Embeddings. ``--browser-sessions`` of them (default 2) are browser
   contexts on one headless Chromium, where the user's wait is timed; the others speak Streamlit's
   WebSocket protocol (``st_protocol.ProtocolSession``: the same widget values, pages and media
   requests, nothing drawn), since on this machine every Chromium page drawing grids takes CPU from
   the server it measures, as a class's browsers on their own machines would not. Each display
   session first visits its 8 views once with no sweep running (the **first look**, reported
   apart: a first visit computes what a revisit finds cached), then the stages begin. The *sweep*
   sessions (always in browsers: they upload a zip): in each stage, 0, 2, then 4 of them (as many
   as ``--sweep-sessions``) open a fresh session, upload their own zip of labelled images (generated here, one per sweep so no
   sweep hits another's cache), and run the Layer-selection sweep, while the display sessions click.
   All sessions close; after the same wait, the **end** memory.
3. Prints: p50/p95 click→settled of display clicks by the number of sweeps running when the
   click was made (0, 2, 4; the clicks made while a sweep session was still opening the app and
   uploading its zip apart, since that is neither), for the browsers (the user's wait) and, apart, for the protocol
   sessions (request → run finished); the sweep times (alone and under load); the server's peak resident
   memory (the whole process tree, sampled from /proc), start and end; any error a session saw
   (``stException`` or the app's "Something went wrong", a click that never settled); and
   whether every number a session saw equals the single-session reference.

"Settled" is measured in the page: a hook on the page's WebSocket timestamps each "script finished"
message from the server (``tests/browser_support.WS_HOOK``); a click's time is from just before the
click to the last run end after it, once Streamlit's ``data-test-script-state`` shows no run going.

Usage:
    python benchmarks/load_test.py --sessions 12 --sweep-sessions 4   # the issue's N: stages 0, 2 and 4 sweeps
    python benchmarks/load_test.py --sessions 12 --sweep-sessions 4 --think-ms 0   # back-to-back clicks (stress)
    python benchmarks/load_test.py --sessions 3 --sweep-sessions 2 --quick --session-ttl 10   # a small check
    python benchmarks/load_test.py --sessions 16        # a quarter sweeping (4): all three stages too
    python benchmarks/load_test.py --sessions 12 --sweep-sessions 4 --browser-sessions 8   # every session a browser
    python benchmarks/load_test.py --sessions 12 --sweep-sessions 4 --memory-report   # and what the server holds

``--quick``: demo-shapes sweeps of 28 images and fewer clicks (proves the script works);
otherwise 350-image sweeps on mobilenetv2 with random weights. At most ``--sessions`` contexts are
open at once (display sessions plus the sweeps of the current stage).

Memory: each Chromium context costs roughly 100–200 MiB on this machine; the server's figures are
printed. Other processes on the machine (other work in parallel) slow every figure down alike.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from browser_support import WS_HOOK  # noqa: E402  (the real-browser tests' hook: one definition of a run's end)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync",
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]  # loopback only
READY = '[data-testid="stApp"][data-test-script-state="notRunning"]'
STARTUP_S = 120
BLOCKS = ["block3", "block4", "block1", "block2"]  # demo-shapes; the default is block2, so each pick changes it
IMAGES = [1, 2, 3, 0]  # option positions in the Image selectbox; the default is 0
PlaywrightTimeout = Exception  # replaced by Playwright's TimeoutError once it is imported (main_async)
ZERO_CAPTION = re.compile(r"\d+% of the values are exactly 0")

# A run's end is the server's "script finished" message (tests/browser_support.WS_HOOK: the state
# attribute alone misses a run that begins while the previous one still shows "running", or one that
# starts and ends within one render); the page must show no run going, too.
SETTLED_AFTER = """t0 => window.__leWs.finished.some(t => t > t0)
  && document.querySelector('[data-testid="stApp"]')?.getAttribute('data-test-script-state') === 'notRunning'"""
FINISHED_AFTER = """t0 => Math.max(...window.__leWs.finished.filter(t => t > t0))"""


# ------------------------------------------------------------------------------------ server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``streamlit run app.py`` on a free loopback port, with a /proc memory sampler of its process tree."""

    def __init__(self, tmp: Path, name: str, port: int = 0, session_ttl: int = 120, probe: bool = False,
                 holders: str = ""):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / f"{name}.log"
        env = dict(os.environ, KERAS_HOME=str(tmp / "keras-home"), TF_CPP_MIN_LOG_LEVEL="2")
        env.pop("LAYER_EXPLORER_ALLOW_LOCAL_WEIGHTS", None)
        # --memory-report: memory_probe/sitecustomize.py answers snapshot requests from inside the server.
        self.probe_dir = tmp / f"{name}-probe" if probe else None
        if self.probe_dir:
            self.probe_dir.mkdir()
            env["LAYER_EXPLORER_MEMORY_PROBE"] = str(self.probe_dir)
            env["LAYER_EXPLORER_MEMORY_PROBE_TYPES"] = holders
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "benchmarks" / "memory_probe"),
                                                              env.get("PYTHONPATH")]))
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
                 "--server.port", str(self.port), "--server.address", "127.0.0.1",
                 "--server.disconnectedSessionTTL", str(session_ttl), "--browser.gatherUsageStats", "false"],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.peak = 0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"streamlit exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        self._sampler.start()
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise SystemExit(f"streamlit was not healthy after {STARTUP_S} s")

    def _tree(self) -> list[int]:
        return process_tree(self.proc.pid)

    def rss(self) -> int:
        """Resident bytes of the server and all its descendants now."""
        total = 0
        for pid in self._tree():
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1]) * 1024
            except OSError:
                pass
        return total

    def rss_by_kind(self) -> dict[str, int]:
        """Resident bytes of the process tree by kind of mapping (from /proc/PID/smaps).

        ``heap``: the main thread's brk heap; ``anonymous``: other anonymous mappings (glibc's
        per-thread arenas, large mallocs, TensorFlow's and OpenVINO's own pools, thread stacks);
        ``files``: mapped files (the shared libraries' code and data). Where growth after the
        sessions close sits tells the allocator's fragmentation (heap, anonymous) from code.
        """
        kinds = {"heap": 0, "anonymous": 0, "files": 0}
        for pid in self._tree():
            try:
                with open(f"/proc/{pid}/smaps") as f:
                    kind = "anonymous"
                    for line in f:
                        head = line.split(None, 6)
                        if head and "-" in head[0] and len(head) >= 5:  # a mapping's header line
                            path = head[5].strip() if len(head) > 5 else ""
                            kind = "heap" if path == "[heap]" else "files" if path.startswith("/") else "anonymous"
                        elif head and head[0] == "Rss:":
                            kinds[kind] += int(head[1]) * 1024
            except OSError:
                pass
        return kinds

    async def snapshot(self, name: str, timeout_s: float = 180) -> dict | None:
        """The memory probe's snapshot from inside the server (``--memory-report``), or None."""
        if not self.probe_dir:
            return None
        answer = self.probe_dir / f"{name}.json"
        (self.probe_dir / f"{name}.request").touch()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if answer.exists():
                return json.loads(answer.read_text())
            await asyncio.sleep(0.5)
        print(f"  (the memory probe gave no {name} snapshot within {timeout_s:.0f} s)", flush=True)
        return None

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server and its descendants have used so far, reaped children included."""
        return cpu_seconds(self._tree())

    def _sample(self) -> None:
        while not self._stop.wait(0.25):
            self.peak = max(self.peak, self.rss())

    def stop(self) -> None:
        self._stop.set()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants now (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(children.get(pid, []))
    return pids


def cpu_seconds(pids: list[int], *, reaped: bool = True) -> float:
    """CPU time (user + system) these processes have used so far; ``reaped``: their reaped children's too."""
    ticks = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks += sum(int(v) for v in fields[11:15 if reaped else 13])  # utime stime [cutime cstime]
        except (OSError, IndexError, ValueError):
            pass
    return ticks / os.sysconf("SC_CLK_TCK")


def client_cpu_seconds() -> tuple[float, float]:
    """CPU seconds so far of this script's own process (the protocol sessions, the orchestration) and of
    its descendants (Playwright's driver and Chromium with its pages), each."""
    own = cpu_seconds([os.getpid()], reaped=False)
    return own, cpu_seconds(process_tree(os.getpid())[1:])


def machine_busy_seconds() -> float:
    """CPU time every core of this machine has spent busy (not idle, not waiting for I/O) since boot."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------------------ data


def make_zip(path: Path, per_class: int, seed: int) -> int:
    """A zip of labelled PNGs (one folder per class) drawn from the shapes generator; its image count."""
    from PIL import Image

    from extractor.demo import make_shapes

    ds = make_shapes(per_class=per_class, size=64, seed=seed)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for i, (pixels, label) in enumerate(zip(ds.images, ds.labels, strict=True)):
            buf = io.BytesIO()
            Image.fromarray(pixels).save(buf, format="PNG")
            zf.writestr(f"{label}/img_{seed}_{i:04d}.png", buf.getvalue())
    return len(ds.images)


@dataclass
class Click:
    seconds: float
    sweeps_at_start: int
    sweeps_at_end: int
    client: str = "browser"  # "browser": click to page settled; "protocol": request to the run's end
    first_look: bool = False  # one of a session's first visits to each view (nothing of it in its own caches)
    joining: int = 0  # sweep sessions opening the app, uploading or choosing when the click was made


def click_plan(k: int) -> tuple[str, int, str, str | int]:
    """Display click ``k`` of a session: the (block, image) the page shows after it, and what it changes.

    Even clicks change the block, odd ones the image, so every (block, image) pair comes round.

    Example:
        >>> [click_plan(k)[2:] for k in range(3)]
        [('Block', 'block3'), ('Image', 1), ('Block', 'block4')]
    """
    t = k // 2
    block = BLOCKS[t % 4]
    image = IMAGES[t % 4] if k % 2 else (IMAGES[(t - 1) % 4] if t else 0)
    return block, image, *(("Block", block) if k % 2 == 0 else ("Image", image))


@dataclass
class Results:
    clicks: list[Click] = field(default_factory=list)
    sweeps_alone: dict[str, float] = field(default_factory=dict)
    sweeps_load: list[tuple[int, str, float]] = field(default_factory=list)  # (stage, zip, seconds)
    page_opens: list[tuple[str, float]] = field(default_factory=list)  # (client, seconds)
    embeddings_opens: list[tuple[str, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seen: dict[tuple, set] = field(default_factory=dict)  # key -> every value any session saw
    reference: dict[tuple, str] = field(default_factory=dict)
    running_sweeps: int = 0
    joining: int = 0  # sweep sessions between opening the app and starting their sweep
    looking_around: bool = False  # the load's first cycle: every display session visits each view once
    stages_run: list[int] = field(default_factory=list)
    # (sweeps, wall seconds, CPU seconds of: the server, this script, Chromium, the whole machine) per load stage
    stage_cpu: list[tuple[int, float, float, float, float, float]] = field(default_factory=list)

    def see(self, view: tuple, image_shown: str, zero_caption: re.Match | None) -> None:
        """Record what a session showed for ``view`` (demo, block, image), to compare with the reference."""
        self.seen.setdefault(view, set()).add(f"{image_shown} | {zero_caption.group(0) if zero_caption else '?'}")


# ------------------------------------------------------------------------------------ one session


class Session:
    #: Seconds a display session looks at the page before its next click (``--think-ms``): a student
    #: reads the new maps first. 0 makes every display session a back-to-back clicker (a stress test).
    think_s = 2.5

    def __init__(self, browser, url: str, name: str, results: Results, step_ms: int):
        self.browser, self.url, self.name, self.results, self.step_ms = browser, url, name, results, step_ms
        self.context = self.page = None

    async def open(self) -> None:
        self.context = await self.browser.new_context(viewport={"width": 1400, "height": 2400})
        await self.context.add_init_script(WS_HOOK)
        self.page = await self.context.new_page()
        start = time.perf_counter()
        await self.page.goto(self.url, timeout=self.step_ms)
        await self.page.wait_for_selector('img[alt="Feature-map grid"]', timeout=self.step_ms)
        await self.page.wait_for_selector(READY, timeout=self.step_ms)
        self.results.page_opens.append(("browser", time.perf_counter() - start))
        await self.check_errors("opening the app")

    async def close(self) -> None:
        if self.context is not None:
            await self.context.close()
            self.context = None

    async def settle_after(self, t0: float, timeout_ms: int) -> float:
        """Seconds from ``t0`` (page clock) to the end of the run it started."""
        await self.page.wait_for_function(SETTLED_AFTER, arg=t0, timeout=timeout_ms, polling=100)
        t1 = await self.page.evaluate(FINISHED_AFTER, t0)
        return (t1 - t0) / 1000

    async def timed(self, action, timeout_ms: int | None = None) -> tuple[float, int, int]:
        t0 = await self.page.evaluate("() => performance.now()")
        before = self.results.running_sweeps
        await action()
        seconds = await self.settle_after(t0, timeout_ms or self.step_ms)
        return seconds, before, self.results.running_sweeps

    async def check_errors(self, doing: str) -> None:
        page = self.page
        n = await page.locator('[data-testid="stException"]').count()
        n += await page.get_by_text("Something went wrong").count()
        if n:
            self.results.errors.append(f"{self.name}: error shown while {doing}")

    async def pick(self, combobox: str, option) -> None:
        await self.page.get_by_role("combobox", name=combobox).click()
        options = self.page.get_by_role("option")
        target = options.nth(option) if isinstance(option, int) else self.page.get_by_role(
            "option", name=option, exact=True)
        await target.click()

    async def choose_demo(self, demo: str) -> None:
        if demo == "digits":
            sidebar = self.page.locator('[data-testid="stSidebar"]')
            await self.timed(lambda: self._pick_in(sidebar, "Demo set", "Digits (10 classes, 8×8 scans)"))
            await self.page.wait_for_selector('img[alt="Feature-map grid"]', timeout=self.step_ms)

    async def _pick_in(self, scope, combobox: str, option: str) -> None:
        await scope.get_by_role("combobox", name=combobox).click()
        await self.page.get_by_role("option", name=option, exact=True).click()

    async def observe(self, demo: str, block: str, image: int) -> None:
        caption = self.page.get_by_text(ZERO_CAPTION).first
        text = ZERO_CAPTION.search(await caption.text_content(timeout=self.step_ms) or "")
        value = await self.page.get_by_role("combobox", name="Image").input_value()
        self.results.see((demo, block, image), value, text)

    async def display_click(self, demo: str, k: int) -> None:
        block, image, combobox, option = click_plan(k)
        await asyncio.sleep(self.think_s)
        joining = self.results.joining
        try:
            seconds, s0, s1 = await self.timed(lambda: self.pick(combobox, option))
        except PlaywrightTimeout:
            # Counted, not fatal: the run goes on, and the report says how many clicks never settled.
            self.results.errors.append(f"{self.name}: click {k} ({combobox} → {option}) did not settle "
                                       f"within {self.step_ms // 1000} s")
            await self.page.keyboard.press("Escape")
            return
        self.results.clicks.append(Click(seconds, s0, s1, "browser", self.results.looking_around, joining))
        await self.observe(demo, block, image)
        await self.check_errors(f"switching to {block}, image {image}")

    async def open_page(self, link: str, heading: str) -> tuple[str, float]:
        nav = self.page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=link)
        seconds, _, _ = await self.timed(nav.click)
        await self.page.get_by_role("heading", name=heading).first.wait_for(timeout=self.step_ms)
        await self.check_errors(f"opening {link}")
        return "browser", seconds

    async def sweep(self, zip_path: Path, n_images: int, backbone: str | None, timeout_ms: int,
                    on_start=lambda: None) -> tuple[float, str]:
        page = self.page
        sidebar = page.locator('[data-testid="stSidebar"]')
        await sidebar.get_by_text("Upload", exact=True).click()
        dropzone = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
        await dropzone.wait_for(state="attached", timeout=self.step_ms)
        # Each step waits for the end of the run it caused (not for "notRunning", which the previous
        # run's end still shows right after a click): a click during a run in flight is lost or merged.
        await self.timed(lambda: dropzone.set_input_files(str(zip_path)))
        await sidebar.get_by_text(f"{n_images} images", exact=False).first.wait_for(timeout=self.step_ms)
        if backbone:
            await sidebar.get_by_role("combobox", name="Backbone").click()

            async def choose():
                await page.get_by_role("option", name=re.compile(rf"^{re.escape(backbone)}\b")).first.click()

            await self.timed(choose, timeout_ms)
            await self.timed(sidebar.get_by_text("Random (untrained)", exact=True).click, timeout_ms)
        await self.open_page("Layer selection", "Layer selection")
        button = page.get_by_role("button", name=re.compile("^Run sweep"))

        async def run():
            self.results.running_sweeps += 1
            on_start()
            await button.click()

        try:
            seconds, _, _ = await self.timed(run, timeout_ms)
        finally:
            self.results.running_sweeps -= 1
        success = page.locator('[data-testid="stAlertContentSuccess"]').first
        text = (await success.text_content(timeout=self.step_ms)) or ""
        await self.check_errors("sweeping")
        return seconds, " ".join(text.split())


class ProtocolDisplay:
    """A display session without a browser: the same clicks over Streamlit's WebSocket protocol.

    It asks the server for exactly what the browser's page does (the same widget values, the same
    pages, the media files the page refers to) and reads back the same numbers, but draws nothing:
    the server's load without the cost of drawing on this machine. Its times run from the request
    to the run's end, the server's share of a click; the user's wait is timed in the real browsers.
    """

    def __init__(self, url: str, name: str, results: Results, step_ms: int):
        from st_protocol import ProtocolSession

        self.session = ProtocolSession(url)
        self.name, self.results, self.step_s = name, results, step_ms / 1000

    async def open(self) -> None:
        from st_protocol import ProtocolError

        start = time.perf_counter()
        try:
            await self.session.open(timeout_s=self.step_s)
        except (ProtocolError, OSError) as exc:
            self.results.errors.append(f"{self.name}: could not open the app ({exc})")
            raise
        self.results.page_opens.append(("protocol", time.perf_counter() - start))
        self.check_errors("opening the app")

    async def close(self) -> None:
        await self.session.close()

    def check_errors(self, doing: str) -> None:
        shown = self.session.exceptions + [t for t in self.session.texts() if "Something went wrong" in t]
        if shown:
            self.results.errors.append(f"{self.name}: error shown while {doing}: {shown[0][:200]}")
            self.session.exceptions.clear()

    async def choose_demo(self, demo: str) -> None:
        if demo == "digits":
            await self.session.choose("Demo set", "Digits (10 classes, 8×8 scans)", timeout_s=self.step_s)

    async def display_click(self, demo: str, k: int) -> None:
        from st_protocol import ProtocolError

        block, image, combobox, option = click_plan(k)
        await asyncio.sleep(Session.think_s)  # the same think time as the browsers'
        before, joining = self.results.running_sweeps, self.results.joining
        try:
            end = await self.session.choose(combobox, option, timeout_s=self.step_s)
        except ProtocolError as exc:
            self.results.errors.append(f"{self.name}: click {k} ({combobox} → {option}): {exc}")
            return
        self.results.clicks.append(Click(end.seconds, before, self.results.running_sweeps, "protocol",
                                         self.results.looking_around, joining))
        caption = next((m for m in map(ZERO_CAPTION.search, self.session.texts()) if m), None)
        self.results.see((demo, block, image), self.session.selected("Image"), caption)
        self.check_errors(f"switching to {block}, image {image}")

    async def open_page(self, link: str, heading: str) -> tuple[str, float]:
        end = await self.session.open_page(link, timeout_s=self.step_s)
        if not any(t.lstrip("# ").startswith(heading) for t in self.session.texts()):
            self.results.errors.append(f"{self.name}: {link} opened without its heading {heading!r}")
        self.check_errors(f"opening {link}")
        return "protocol", end.seconds


# ------------------------------------------------------------------------------------ phases


def scores_only(text: str | None) -> str | None:
    """A sweep's recommendation up to its cheaper alternative: which configuration is cheap enough
    depends on extraction times measured on the spot, which differ under load by design; the best
    layer, pooling and scores must not.

    Example:
        >>> scores_only("Use b7 with gem. b7 scores 35.1%. For a cheaper vector, b5 gets 34.9%, faster (6.4 ms vs 7.7 ms).")
        'Use b7 with gem. b7 scores 35.1%.'
    """
    return None if text is None else re.split(r" (?:For a cheaper vector|No smaller configuration)", text)[0]


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    pos = (len(values) - 1) * q
    lo, hi = int(pos), min(len(values) - 1, int(pos) + 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


async def reference_run(url, browser, results: Results, zips, args, step_ms) -> dict[str, str]:
    """One session at a time: the display cycle per demo set, then each sweep zip alone."""
    sweep_texts = {}
    for demo in ("shapes", "digits"):
        s = Session(browser, url, f"reference-{demo}", results, step_ms)
        await s.open()
        await s.choose_demo(demo)
        for k in range(8):  # one full cycle of (block, image) pairs
            await s.display_click(demo, k)
        await s.close()
    results.reference = {key: next(iter(values)) for key, values in results.seen.items()}
    results.seen.clear()
    for name, (path, n) in zips.items():
        if name == WARM_ZIP:
            continue
        s = Session(browser, url, f"reference-sweep-{name}", results, step_ms)
        await s.open()
        seconds, text = await s.sweep(path, n, args.backbone, args.sweep_timeout * 1000)
        await s.close()
        results.sweeps_alone[name] = seconds
        sweep_texts[name] = text
    return sweep_texts


async def warm_up(url, browser, zips, args, step_ms) -> None:
    """One session at a time, what the load will do: both demo sets' display cycle, Embeddings, one sweep.

    Its own results (nothing is counted): it only builds every shared network and extractor the load
    uses, so the start memory holds them (the pool keeps them by design) and the end can be compared.
    """
    scratch = Results()
    for demo in ("shapes", "digits"):
        s = Session(browser, url, f"warm-up-{demo}", scratch, step_ms)
        await s.open()
        await s.choose_demo(demo)
        for k in range(8):
            await s.display_click(demo, k)
        await s.open_page("Embeddings", "Embeddings")
        await s.close()
    if WARM_ZIP in zips:
        path, n = zips[WARM_ZIP]
        s = Session(browser, url, "warm-up-sweep", scratch, step_ms)
        await s.open()
        await s.sweep(path, n, args.backbone, args.sweep_timeout * 1000)
        await s.close()
    if scratch.errors:
        print(f"  warm-up saw {len(scratch.errors)} error(s): {scratch.errors[:3]}", flush=True)


async def settle(server: Server, seconds: float, what: str) -> int:
    """Wait ``seconds`` with no session open, then the server's resident bytes (the lowest of the last few samples)."""
    print(f"  waiting {seconds:.0f} s with no session open ({what}) …", flush=True)
    await asyncio.sleep(max(0.0, seconds - 5))
    samples = []
    for _ in range(5):
        samples.append(server.rss())
        await asyncio.sleep(1)
    return min(samples)


async def load_run(url, browser, results: Results, zips, args, step_ms, deadline: float, *,
                   server_cpu) -> dict[str, str]:
    n_sweepers = args.sweep_sessions
    n_display = max(1, args.sessions - n_sweepers)
    levels = sorted({0, *(lvl for lvl in (2, 4) if lvl <= n_sweepers)} | ({n_sweepers} if n_sweepers < 2 else set()))
    # The first --browser-sessions display sessions are real browsers (their clicks are the user's wait);
    # the others speak Streamlit's protocol: the same requests, no drawing on this machine's cores.
    display = [Session(browser, url, f"display-{i}", results, step_ms) if i < args.browser_sessions
               else ProtocolDisplay(url, f"display-{i}-protocol", results, step_ms) for i in range(n_display)]
    demos = ["shapes" if i % 2 == 0 else "digits" for i in range(n_display)]
    await asyncio.gather(*(s.open() for s in display))
    await asyncio.gather(*(s.choose_demo(d) for s, d in zip(display, demos, strict=True)))
    counters = [0] * n_display
    sweep_texts: dict[str, str] = {}
    # First every session looks at each of its 8 views once, with no sweep running (reported apart): a
    # first visit computes what a revisit finds in the session's caches, so the stages that follow all
    # measure the same mix (revisits) and differ only in the sweeps running.

    async def keep_clicking(i: int, stop: asyncio.Event, at_least: int) -> None:
        done = 0
        while (done < at_least or not stop.is_set()) and time.monotonic() < deadline:
            await display[i].display_click(demos[i], counters[i])
            counters[i] += 1
            done += 1

    print(f"  first look: each of {n_display} sessions visits its 8 views once …", flush=True)
    results.looking_around = True
    stopped = asyncio.Event()
    stopped.set()  # exactly the 8 clicks of one cycle
    await asyncio.gather(*(keep_clicking(i, stopped, 8) for i in range(n_display)))
    results.looking_around = False

    async def one_sweep(level: int, j: int) -> None:
        name = f"stage{level}-sweep{j}"
        path, n = zips[name]
        s = Session(browser, url, name, results, step_ms)
        # Joining (opening the app, uploading the zip, choosing the backbone) until the sweep starts: the
        # display clicks made meanwhile are reported apart, since a joining session is neither 0 sweeps
        # nor one more sweep.
        results.joining += 1
        joining = True

        def started() -> None:
            nonlocal joining
            results.joining, joining = results.joining - 1, False

        try:
            await s.open()
            seconds, text = await s.sweep(path, n, args.backbone, args.sweep_timeout * 1000, on_start=started)
            results.sweeps_load.append((level, name, seconds))
            sweep_texts[name] = text
        except PlaywrightTimeout as exc:
            results.errors.append(f"{name}: did not finish ({str(exc).splitlines()[0]})")
        finally:
            if joining:
                started()
            await s.close()

    for level in levels:
        if level and time.monotonic() > deadline:
            print(f"  time limit reached before the {level}-sweep stage", flush=True)
            break
        print(f"  stage: {level} sweeps while {n_display} sessions click …", flush=True)
        results.stages_run.append(level)
        stop = asyncio.Event()
        # Who used the CPU: the server, or the browsers (they share this machine's cores here, not in a class).
        t0, server0, busy0 = time.monotonic(), server_cpu(), machine_busy_seconds()
        script0, browsers0 = client_cpu_seconds()
        clickers = [asyncio.create_task(keep_clicking(i, stop, args.clicks)) for i in range(n_display)]
        if level:
            await asyncio.gather(*(one_sweep(level, j) for j in range(level)), return_exceptions=False)
        stop.set()
        await asyncio.gather(*clickers)
        script1, browsers1 = client_cpu_seconds()
        results.stage_cpu.append((level, time.monotonic() - t0, server_cpu() - server0, script1 - script0,
                                  browsers1 - browsers0, machine_busy_seconds() - busy0))
    for s in display:  # every display session ends on Embeddings
        results.embeddings_opens.append(await s.open_page("Embeddings", "Embeddings"))
    for s in display:
        await s.close()
    return sweep_texts


WARM_ZIP = "warm-up"


def sweep_zips(args, tmp: Path) -> dict[str, tuple[Path, int]]:
    """Zips for the load stages (one per sweep, distinct content) — the reference sweeps the same ones —
    and one of its own for the warm-up."""
    zips = {}
    if args.sweep_sessions:
        path = tmp / f"{WARM_ZIP}.zip"
        zips[WARM_ZIP] = (path, make_zip(path, args.per_class, seed=7))
    levels = [lvl for lvl in (2, 4) if lvl <= args.sweep_sessions] or ([args.sweep_sessions] if args.sweep_sessions else [])
    for level in levels:
        for j in range(level):
            name = f"stage{level}-sweep{j}"
            path = tmp / f"{name}.zip"
            zips[name] = (path, make_zip(path, args.per_class, seed=100 * level + j))
    return zips


async def main_async(args) -> int:
    from playwright.async_api import TimeoutError as _Timeout
    from playwright.async_api import async_playwright

    global PlaywrightTimeout
    PlaywrightTimeout = _Timeout

    started = time.monotonic()
    step_ms = 240_000
    tmp = Path(tempfile.mkdtemp(prefix="layer-explorer-load-"))
    zips = sweep_zips(args, tmp)
    results = Results()
    print(f"Layer Explorer load test: {args.sessions} sessions ({args.sweep_sessions} sweep sessions), "
          f"sweeps of {args.per_class * 7} images on {args.backbone or 'demo-shapes'}; "
          f"{Session.think_s:g} s of think time before each display click; {os.cpu_count()} CPUs; "
          "other processes on this machine share them.", flush=True)
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            print("1. single-session reference on a fresh server …", flush=True)
            ref = Server(tmp, "reference", args.port, args.session_ttl)
            try:
                ref.wait_healthy()
                ref_texts = await reference_run(ref.url, browser, results, zips, args, step_ms)
            finally:
                ref.stop()
            single_clicks = [c.seconds for c in results.clicks]
            results.clicks.clear()
            results.page_opens.clear()
            print("2. load on a second fresh server …", flush=True)
            server = Server(tmp, "load", args.port + 1 if args.port else 0, args.session_ttl,
                            probe=args.memory_report, holders=args.memory_holders)
            try:
                server.wait_healthy()
                print("   warm-up: one session at a time, every view and a sweep the load will use …", flush=True)
                await warm_up(server.url, browser, zips, args, step_ms)
                rss_start = await settle(server, args.settle_s, "the start")
                kinds_start = server.rss_by_kind()
                inside_start = await server.snapshot("start")
                server.peak = rss_start  # the peak under load, not the warm-up's
                # The time limit counts from here: the reference and the warm-up are not the load.
                deadline = time.monotonic() + args.max_seconds
                load_texts = await load_run(server.url, browser, results, zips, args, step_ms, deadline,
                                            server_cpu=server.cpu_seconds)
                peak = server.peak
                rss_end = await settle(server, args.settle_s, "the end")
                kinds_end = server.rss_by_kind()
                inside_end = await server.snapshot("end")
            finally:
                server.stop()
        finally:
            await browser.close()

    # ---------------------------------------------------------------- report
    gib, mib = 2**30, 2**20
    print("\nDisplay clicks on Feature maps (click → page settled):")
    print(f"  single session on a fresh server, nothing else running (first visits): n={len(single_clicks)}  "
          f"p50 {percentile(single_clicks, .5):.2f} s  p95 {percentile(single_clicks, .95):.2f} s")
    n_display = max(1, args.sessions - args.sweep_sessions)
    n_browsers = min(args.browser_sessions, n_display)
    print(f"  {n_display} display sessions clicking ({n_browsers} in real browsers, {n_display - n_browsers} over "
          "Streamlit's protocol), by the sweeps running when the click was made:")
    levels = sorted({0, 2, 4} | {c.sweeps_at_start for c in results.clicks if not c.first_look})
    kinds = (("browser", "in the browsers, click → page settled (what the user waits for)"),
             ("protocol", "over the protocol, request → run finished (the server's share; nothing drawn)"))
    for client, what in kinds:
        if not any(c.client == client for c in results.clicks):
            continue
        print(f"  {what}:")
        first = [c.seconds for c in results.clicks if c.first_look and c.client == client]
        if first:
            print(f"    first look (each session's first visit to each view, 0 sweeps): n={len(first)}  "
                  f"p50 {percentile(first, .5):.2f} s  p95 {percentile(first, .95):.2f} s")
        for level in levels:
            clicks = [c for c in results.clicks if c.sweeps_at_start == level and c.client == client
                      and not c.first_look]
            times = [c.seconds for c in clicks if not c.joining]
            label = f"    {level} sweep{'' if level == 1 else 's'} running:"
            if times:
                print(f"{label} n={len(times)}  p50 {percentile(times, .5):.2f} s  p95 {percentile(times, .95):.2f} s")
            elif level > args.sweep_sessions:
                print(f"{label} not run (--sweep-sessions {args.sweep_sessions}; --sweep-sessions 4 runs it)")
            elif level in (0, 2, 4) and level not in results.stages_run:
                print(f"{label} not run (the time limit, --max-seconds {args.max_seconds}, came first)")
            else:
                print(f"{label} no click fell in this stage")
            joined = [c.seconds for c in clicks if c.joining]
            if joined:
                print(f"      … and while sweep sessions were opening the app and uploading their zips: "
                      f"n={len(joined)}  p50 {percentile(joined, .5):.2f} s  p95 {percentile(joined, .95):.2f} s")
    print("Sweeps:")
    for name, seconds in results.sweeps_alone.items():
        print(f"  {name}: alone {seconds:.1f} s")
    for level, name, seconds in sorted(results.sweeps_load):
        print(f"  {name}: with {level} sweeps running and the display sessions clicking: {seconds:.1f} s")
    for what, opens in (("Opening the app under load", results.page_opens),
                        ("Opening Embeddings", results.embeddings_opens)):
        for client in ("browser", "protocol"):
            times = [seconds for kind, seconds in opens if kind == client]
            if times:
                print(f"{what} ({client}): n={len(times)}  p50 {percentile(times, .5):.2f} s  "
                      f"p95 {percentile(times, .95):.2f} s")
    print(f"Server memory (process tree): peak under load {peak / gib:.2f} GiB; start {rss_start / gib:.2f} GiB, "
          f"after all sessions closed {rss_end / gib:.2f} GiB ({(rss_end - rss_start) / max(rss_start, 1):+.1%}).")
    print(f"  start = after the warm-up (the shared networks and extractors of every view the load uses are "
          f"built; the pool keeps them by design), no session open, {args.settle_s:.0f} s after the last closed; "
          f"end = the same wait after the load's last session closed (Streamlit's reconnect window here: "
          f"{args.session_ttl} s).")
    print("  by kind of mapping, start → end: " + "; ".join(
        f"{kind} {kinds_start[kind] / mib:.0f} → {kinds_end[kind] / mib:.0f} MiB ({(kinds_end[kind] - kinds_start[kind]) / mib:+.0f})"
        for kind in kinds_start))
    if inside_start and inside_end:
        if "error" in inside_start or "error" in inside_end:
            print(f"  memory probe failed: {inside_start.get('error') or inside_end.get('error')}")
        else:
            print_inside(inside_start, inside_end)
    print(f"CPU by stage ({os.cpu_count()} cores; the browser sessions run on this machine too, unlike a class's):")
    for level, wall, server_s, script_s, browsers_s, busy_s in results.stage_cpu:
        other = max(0.0, busy_s - server_s - script_s - browsers_s)
        print(f"  {level} sweeps: {wall:.0f} s; cores used by the server {server_s / wall:.2f}, Chromium with its "
              f"pages {browsers_s / wall:.2f}, this script (the protocol sessions) {script_s / wall:.2f}, "
              f"anything else {other / wall:.2f}")
    print(f"Errors seen by sessions: {len(results.errors)}")
    for e in results.errors[:20]:
        print(f"  {e}")
    mismatches = []
    for key, values in results.seen.items():
        expected = results.reference.get(key)
        if expected is not None and values != {expected}:
            mismatches.append(f"{key}: reference {expected!r}, seen {sorted(values)}")
    unchecked = [key for key in results.seen if key not in results.reference]
    for name, text in load_texts.items():
        if scores_only(ref_texts.get(name)) != scores_only(text):
            mismatches.append(f"{name}: reference {ref_texts.get(name)!r}, under load {text!r}")
    checked = len(results.seen) - len(unchecked) + len(load_texts)
    print(f"Numbers equal to the single-session run: {'yes' if not mismatches else 'NO'} "
          f"({checked} (block, image) views and sweeps compared)")
    for m in mismatches[:20]:
        print(f"  {m}")
    print(f"Wall time {time.monotonic() - started:.0f} s; logs in {tmp}")
    if not results.stages_run:
        print("No load stage ran: nothing was measured under load.")
    return 1 if (results.errors or mismatches or not results.stages_run) else 0


def print_inside(start: dict, end: dict, top: int = 15) -> None:
    """What the memory probe saw inside the server, start → end (``--memory-report``)."""
    mib = 2**20

    def line(label: str, a: float, b: float, unit: float = mib, fmt: str = ".0f", suffix: str = " MiB") -> str:
        return f"{label} {a / unit:{fmt}} → {b / unit:{fmt}}{suffix} ({(b - a) / unit:+{fmt}})"

    m0, m1 = start.get("malloc", {}), end.get("malloc", {})
    p0, p1 = start.get("pymalloc", {}), end.get("pymalloc", {})
    print("  inside the server (memory probe), start → end:")
    parts = [line("NumPy arrays", start["arrays"]["bytes"], end["arrays"]["bytes"]),
             line("objects the collector tracks", start["tracked"], end["tracked"], 1, ".0f", ""),
             line("threads", start["threads"], end["threads"], 1, ".0f", "")]
    print("    " + "; ".join(parts))
    a0, a1 = start["anonymous"], end["anonymous"]
    print("    anonymous resident: " + "; ".join([
        line("when asked", a0["at_request"], a1["at_request"]),
        line("after a full collection", a0["after_collection"], a1["after_collection"]),
        line("after one more malloc_trim", a0["after_trim"], a1["after_trim"])]))
    if m0 and m1:
        print("    glibc malloc: " + "; ".join([
            line("in use", m0["in_use"], m1["in_use"]), line("free in its arenas", m0["free"], m1["free"]),
            line("arenas", m0["arena_bytes"], m1["arena_bytes"]), line("mmap blocks", m0["mmap_bytes"], m1["mmap_bytes"])]))
    if p0 and p1:
        print("    Python's small-object allocator: " + "; ".join([
            line("arenas", p0.get("total_bytes", 0), p1.get("total_bytes", 0)),
            line("in live blocks", p0.get("allocated_bytes", 0), p1.get("allocated_bytes", 0))]))
    grown = sorted(((end["objects"].get(k, 0) - start["objects"].get(k, 0), k) for k in end["objects"]), reverse=True)
    print("    most grown types: " + ", ".join(f"{k} {n:+d}" for n, k in grown[:top] if n > 0))
    for kind, chains in end.get("chains", {}).items():
        for chain in chains:
            print(f"    who holds a {kind} at the end: " + " ← ".join(chain))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=12, help="browser sessions at once (default 12)")
    parser.add_argument("--sweep-sessions", type=int, default=None,
                        help="how many of them run sweeps (default: a quarter, at least 1)")
    parser.add_argument("--browser-sessions", type=int, default=2,
                        help="how many display sessions are real browsers, timing the user's wait (default 2, one "
                             "per demo set); the other display sessions speak Streamlit's WebSocket protocol, the "
                             "same requests without drawing (each browser drawing grids takes CPU from the server "
                             "it measures here, unlike a class's); sweep sessions always run in browsers")
    parser.add_argument("--quick", action="store_true",
                        help="small sweeps (28 images on demo-shapes) and fewer clicks: proves the script works")
    parser.add_argument("--clicks", type=int, default=None, help="display clicks per session per stage, at least")
    parser.add_argument("--think-ms", type=int, default=2500,
                        help="a display session's pause before each click, as a person looks at the page "
                             "(default 2500; 0: back-to-back clicks, a stress test)")
    parser.add_argument("--max-seconds", type=int, default=None,
                        help="stop starting new load stages this long after the load began (the 0-sweep stage always runs)")
    parser.add_argument("--port", type=int, default=0,
                        help="loopback port of the reference server (the load server takes the next); default: free ones")
    parser.add_argument("--memory-report", action="store_true",
                        help="also ask the server from inside (benchmarks/memory_probe) what its memory holds "
                             "at the start and the end: live objects by type, NumPy arrays, the allocators")
    parser.add_argument("--memory-holders", default="extractor.sources.ImageSource,"
                        "streamlit.runtime.state.common.WidgetMetadata,extractor.feature_health.FeatureHealth",
                        help="with --memory-report: types (module.qualname, comma-separated) whose holders the "
                             "end snapshot traces, a chain of referrers for a few objects of each")
    parser.add_argument("--session-ttl", type=int, default=120,
                        help="Streamlit's server.disconnectedSessionTTL for both servers, seconds (default 120, "
                             "Streamlit's own); the memory is measured after this plus the app's clean-up")
    args = parser.parse_args(argv)
    if not 1 <= args.session_ttl <= 600:
        parser.error(f"--session-ttl {args.session_ttl}: expected 1 to 600 seconds")
    if not 1 <= args.sessions <= 40:
        parser.error(f"--sessions {args.sessions}: expected 1 to 40 (each costs this machine a client)")
    args.sweep_sessions = max(1, args.sessions // 4) if args.sweep_sessions is None else args.sweep_sessions
    if not 0 <= args.sweep_sessions < max(2, args.sessions):
        parser.error(f"--sweep-sessions {args.sweep_sessions}: expected 0 to {args.sessions - 1}")
    if args.browser_sessions < 1:
        parser.error(f"--browser-sessions {args.browser_sessions}: expected at least 1 (the user's wait is timed there)")
    args.per_class = 4 if args.quick else 50  # 7 classes: 28 or 350 images
    args.backbone = None if args.quick else "mobilenetv2"
    args.clicks = args.clicks or (4 if args.quick else 8)
    if not 0 <= args.think_ms <= 60_000:
        parser.error(f"--think-ms {args.think_ms}: expected 0 to 60000")
    Session.think_s = args.think_ms / 1000
    args.max_seconds = args.max_seconds or (900 if args.quick else 2400)
    args.sweep_timeout = 600 if args.quick else 1500
    # The app closes sessions gone past the reconnect window (a check every 2 s), then reclaims memory at most
    # once a minute (ui.reclaim): wait for both.
    args.settle_s = args.session_ttl + 70
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    raise SystemExit(main())
