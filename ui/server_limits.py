"""The deployment's limits for a shared server: batch jobs at once, models kept, images per session.

Each limit comes from, in order: an environment variable, else the optional file
``.streamlit/layer_explorer.toml`` next to Streamlit's own ``config.toml`` (a ``[limits]`` table
with the same names in lower case, without the prefix), else a default:

=====================================  =============================  ==========================
environment variable                   meaning                        default
=====================================  =============================  ==========================
``LAYER_EXPLORER_MAX_BATCH_JOBS``      sweeps / whole-set extractions the core count
                                       in progress at once; more
                                       wait in line
``LAYER_EXPLORER_MAX_MODELS``          network configurations kept    4
                                       in memory (least recently
                                       used dropped)
``LAYER_EXPLORER_MAX_IMAGES_PER_SESSION`` images one session may       500
                                       upload or pick
=====================================  =============================  ==========================

A bad value stops the server at start-up with a message naming the variable, the value and what
is accepted (:class:`ServerLimitError`), rather than running with a limit nobody chose.

Example:
    >>> limits = load_limits({"LAYER_EXPLORER_MAX_MODELS": "2"}, config_file=None)
    >>> limits.max_models, limits.source("max_models")
    (2, 'environment')
    >>> try:
    ...     load_limits({"LAYER_EXPLORER_MAX_MODELS": "lots"}, config_file=None)
    ... except ServerLimitError as exc:
    ...     print(exc)
    LAYER_EXPLORER_MAX_MODELS='lots' is not a whole number; set it to a number from 1 to 64 (e.g. LAYER_EXPLORER_MAX_MODELS=4), or unset it for the default.
    >>> [row["setting"] for row in limits_table(limits)]
    ['Batch runs at once', 'Networks kept in memory', 'Images per session']
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from extractor.errors import LayerExplorerError

__all__ = [
    "ENV_PREFIX",
    "CONFIG_FILE",
    "ServerLimitError",
    "ServerLimits",
    "default_max_batch_jobs",
    "load_limits",
    "limits_table",
]

ENV_PREFIX = "LAYER_EXPLORER_"
CONFIG_FILE = Path(__file__).resolve().parent.parent / ".streamlit" / "layer_explorer.toml"


class ServerLimitError(LayerExplorerError):
    """A deployment limit (environment variable or layer_explorer.toml) has a value that cannot be used."""


def default_max_batch_jobs() -> int:
    """One batch job at a time per core this process may use (at least 1)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores)


@dataclass(frozen=True)
class _Limit:
    field: str
    label: str
    meaning: str
    low: int
    high: int
    example: int


_LIMITS = (
    _Limit("max_batch_jobs", "Batch runs at once",
           "Sweeps and whole-set extractions in progress together; a further one waits in line.", 1, 256, 2),
    _Limit("max_models", "Networks kept in memory",
           "Network configurations shared by all sessions; the least recently used is dropped and rebuilt "
           "when needed again.", 1, 64, 4),
    _Limit("max_images_per_session", "Images per session",
           "Images one session may upload or pick at once.", 1, 100_000, 500),
)


@dataclass(frozen=True)
class ServerLimits:
    """The limits in force, and where each came from ("environment", "config file" or "default")."""

    max_batch_jobs: int
    max_models: int = 4
    max_images_per_session: int = 500
    sources: Mapping[str, str] = field(default_factory=dict)

    def source(self, name: str) -> str:
        return self.sources.get(name, "default")


def _env_name(limit: _Limit) -> str:
    return ENV_PREFIX + limit.field.upper()


def _parse(raw: object, where: str, limit: _Limit) -> int:
    fix = (f"set it to a number from {limit.low} to {limit.high} (e.g. {_env_name(limit)}={limit.example}), "
           "or unset it for the default.")
    if isinstance(raw, bool):
        raise ServerLimitError(f"{where}={raw!r} is not a whole number; {fix}")
    if isinstance(raw, int):
        value = raw
    else:
        text = str(raw).strip()
        try:
            value = int(text, 10)
        except ValueError:
            raise ServerLimitError(f"{where}={raw!r} is not a whole number; {fix}") from None
    if not limit.low <= value <= limit.high:
        raise ServerLimitError(f"{where}={raw!r} is out of range; {fix}")
    return value


def _read_file(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ServerLimitError(f"{path.name} could not be read ({exc}); fix the file or remove it.") from None
    table = data.get("limits", {})
    if not isinstance(table, dict):
        raise ServerLimitError(f"{path.name}: 'limits' must be a table ([limits]); found {type(table).__name__}.")
    known = {limit.field for limit in _LIMITS}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ServerLimitError(f"{path.name} [limits] has unknown setting(s) {unknown}; "
                               f"the settings are {sorted(known)}.")
    return table


def load_limits(environ: Mapping[str, str] | None = None, config_file: Path | None = CONFIG_FILE) -> ServerLimits:
    """The limits from ``environ`` (default ``os.environ``), then ``config_file``, then defaults.

    An empty environment variable counts as unset. Raises :class:`ServerLimitError` on a bad value.
    """
    environ = os.environ if environ is None else environ
    from_file = _read_file(config_file) if config_file is not None else {}
    values: dict[str, int] = {"max_batch_jobs": default_max_batch_jobs()}
    sources: dict[str, str] = {}
    for limit in _LIMITS:
        name = _env_name(limit)
        raw = environ.get(name, "")
        if str(raw).strip():
            values[limit.field] = _parse(raw, name, limit)
            sources[limit.field] = "environment"
        elif limit.field in from_file:
            values[limit.field] = _parse(from_file[limit.field], f"{config_file.name} [limits] {limit.field}", limit)
            sources[limit.field] = "config file"
    return ServerLimits(**values, sources=sources)


def limits_table(limits: ServerLimits) -> list[dict[str, object]]:
    """One plain row per limit (setting, value, meaning, how to change it, where the value came from).

    For the "About this server" expander: ``st.dataframe(limits_table(load_limits()), hide_index=True)``.
    """
    return [
        {
            "setting": limit.label,
            "value": getattr(limits, limit.field),
            "meaning": limit.meaning,
            "variable": _env_name(limit),
            "from": limits.source(limit.field),
        }
        for limit in _LIMITS
    ]
