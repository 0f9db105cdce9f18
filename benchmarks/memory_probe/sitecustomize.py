"""What the load test's server holds, asked from inside it (``load_test.py --memory-report``).

Python imports ``sitecustomize`` at start-up from the first folder on its path that has one; the
load test puts this folder first on the server's ``PYTHONPATH`` only under ``--memory-report``,
with ``LAYER_EXPLORER_MEMORY_PROBE`` set to a folder of its own. Nothing here runs otherwise, and
the app's code does not know about it.

A daemon thread looks for ``<folder>/<name>.request`` once a second; for each it writes
``<folder>/<name>.json``, a snapshot taken after a full collection:

* ``objects``: live objects the collector tracks, counted by type (the top 400);
* ``arrays``: NumPy arrays reachable from those objects that own their memory: count and bytes;
* ``malloc``: glibc's ``mallinfo2``: bytes in use and free in its arenas, and in ``mmap`` blocks;
* ``pymalloc``: Python's small-object allocator (``sys._debugmallocstats``): arenas and bytes;
* ``anonymous``: the process's anonymous resident bytes when asked, after the collection, and after
  one more ``malloc_trim`` (if that gives pages back, the app's own trim ran too early).

The load test compares the start and end snapshots, so growth after all sessions closed can be
told apart: more live Python objects (something keeps them), more arrays (data kept), or the
same live bytes in more pages (fragmentation in glibc's or Python's allocator).
"""

from __future__ import annotations

import collections
import ctypes
import gc
import json
import os
import re
import sys
import tempfile
import threading
import time
import types

_FOLDER = os.environ.get("LAYER_EXPLORER_MEMORY_PROBE")


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _malloc() -> dict:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        info = libc.mallinfo2()
    except (OSError, AttributeError):
        return {}
    return {"arena_bytes": info.arena, "in_use": info.uordblks, "free": info.fordblks,
            "mmap_blocks": info.hblks, "mmap_bytes": info.hblkhd}


def _pymalloc() -> dict:
    """The totals of ``sys._debugmallocstats``, which writes to the C stderr: read back from a file."""
    with tempfile.TemporaryFile("w+") as out:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(out.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read()
    wanted = {"arenas allocated current": "arenas", "bytes in allocated blocks": "allocated_bytes",
              "bytes in available blocks": "available_bytes", "Total": "total_bytes"}
    found = {}
    for line in text.splitlines():
        for label, key in wanted.items():
            # The first "Total" is the small-object allocator's; the free lists' come later.
            if key not in found and (line.startswith(f"# {label}") or line.startswith(label)):
                number = re.findall(r"[\d,]+", line.split("=")[-1])
                if number:
                    found[key] = int(number[-1].replace(",", ""))
    return found


def _anonymous_bytes() -> int:
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith("Anonymous:"):
                return int(line.split()[1]) * 1024
    return 0


def _type_name(o) -> str:
    module = type(o).__module__
    # Some classes define __module__ as a property: on the class that is the property object itself.
    return f"{module if isinstance(module, str) else '?'}.{type(o).__qualname__}"


def _describe(holder, held) -> str:
    name = _type_name(holder)
    if isinstance(holder, dict):
        keys = [k for k, v in holder.items() if v is held][:1]
        return f"{name}[{keys[0]!r}]" if keys else name
    if isinstance(holder, types.ModuleType):
        return f"module {holder.__name__}"
    if isinstance(holder, types.FunctionType):
        return f"function {holder.__module__}.{holder.__qualname__}"
    return name


def _chains(objects: list, wanted: list[str], samples: int = 2, depth: int = 14) -> dict:
    """Who holds objects of the ``wanted`` types: for a few of each, a chain of referrers upward."""
    found: dict[str, list] = {}
    for o in objects:
        kind = _type_name(o)
        if kind in wanted and len(found.setdefault(kind, [])) < samples:
            found[kind].append(o)
    ignore = {id(objects), id(found)} | {id(v) for v in found.values()}
    chains = {}
    for kind, samples_of_kind in found.items():
        chains[kind] = []
        for start in samples_of_kind:
            chain, node, seen = [], start, {id(start)}
            for _ in range(depth):
                holders = [h for h in gc.get_referrers(node)
                           if id(h) not in ignore and id(h) not in seen and not isinstance(h, types.FrameType)]
                if not holders:
                    chain.append("(no more referrers)")
                    break
                # Prefer what names its holder (a dict entry, an instance, a module) over bare containers.
                holders.sort(key=lambda h: (isinstance(h, (list, tuple, set)), isinstance(h, types.MethodType)))
                held, node = node, holders[0]
                seen.add(id(node))
                chain.append(_describe(node, held))
                if isinstance(node, types.ModuleType):
                    break
            chains[kind].append(chain)
    return chains


def _snapshot() -> dict:
    anonymous = _anonymous_bytes()
    # The app freezes its heap (ui.heap), and frozen objects are invisible to gc.get_objects():
    # unfreeze to count them, and freeze again as the app's own full collection does (ui.reclaim).
    was_frozen = gc.get_freeze_count() > 0
    gc.unfreeze()
    try:
        gc.collect()
        objects = gc.get_objects()
        counts = collections.Counter(_type_name(o) for o in objects)
        arrays: dict[int, int] = {}
        numpy = sys.modules.get("numpy")
        if numpy is not None:
            for o in objects:
                for ref in gc.get_referents(o):
                    if type(ref) is numpy.ndarray and ref.base is None:
                        arrays[id(ref)] = ref.nbytes
        wanted = [w for w in os.environ.get("LAYER_EXPLORER_MEMORY_PROBE_TYPES", "").split(",") if w]
        chains = _chains(objects, wanted) if wanted else {}
        del objects
    finally:
        # Whatever happened: an unfrozen heap makes every full collection walk all of TensorFlow's
        # objects again, which slowed a whole load run down (a probe that failed here once did that).
        if was_frozen:
            gc.freeze()
    before_trim = _anonymous_bytes()
    from ui.reclaim import trim  # the app's own trim (loaded by now: snapshots come after the warm-up)

    trim()  # does trimming again give pages back? (then the app's own trim ran too early)
    return {"anonymous": {"at_request": anonymous, "after_collection": before_trim,
                          "after_trim": _anonymous_bytes()},
            "objects": dict(counts.most_common(400)), "chains": chains, "tracked": sum(counts.values()),
            "arrays": {"count": len(arrays), "bytes": sum(arrays.values())},
            "malloc": _malloc(), "pymalloc": _pymalloc(), "threads": threading.active_count()}


def _watch(folder: str) -> None:
    while True:
        time.sleep(1.0)
        try:
            names = [n[:-len(".request")] for n in os.listdir(folder) if n.endswith(".request")]
        except OSError:
            continue
        for name in names:
            os.remove(os.path.join(folder, f"{name}.request"))
            try:
                report = _snapshot()
            except Exception as exc:  # noqa: BLE001 - the probe must answer, whatever it met
                report = {"error": f"{type(exc).__name__}: {exc}"}
            path = os.path.join(folder, f"{name}.json")
            with open(path + ".part", "w") as out:
                json.dump(report, out)
            os.replace(path + ".part", path)


if _FOLDER:
    threading.Thread(target=_watch, args=(_FOLDER,), name="memory-probe", daemon=True).start()
