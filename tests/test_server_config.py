"""The server settings a shared deployment relies on (.streamlit/config.toml)."""

from __future__ import annotations

import tomllib
from pathlib import Path

CONFIG = Path(__file__).resolve().parent.parent / ".streamlit" / "config.toml"


def test_server_config_is_safe_for_a_shared_deployment():
    config = tomllib.loads(CONFIG.read_text())
    server, client, browser = config["server"], config["client"], config["browser"]
    assert server["enableXsrfProtection"] is True
    assert server["fileWatcherType"] == "none"
    assert server["runOnSave"] is False
    assert 0 < server["maxUploadSize"] <= 200
    assert server["showEmailPrompt"] is False  # nothing to answer on a fresh machine
    assert client["showErrorDetails"] == "none"  # no tracebacks or server paths in the browser
    assert browser["gatherUsageStats"] is False
    assert browser["serverAddress"]  # no external-IP lookup at start-up


def test_streamlit_accepts_every_option():
    """A misspelt option is silently ignored by Streamlit; check each one is real."""
    from streamlit import config as st_config

    for section, options in tomllib.loads(CONFIG.read_text()).items():
        for name in options:
            assert f"{section}.{name}" in st_config._config_options_template, f"{section}.{name} is not a Streamlit option"
