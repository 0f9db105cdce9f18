"""Deployment limits (ui.server_limits): environment first, then layer_explorer.toml, then defaults."""

from __future__ import annotations

import doctest

import pytest

from extractor.errors import LayerExplorerError
from ui import server_limits
from ui.server_limits import ServerLimitError, default_max_batch_jobs, limits_table, load_limits


def test_defaults_without_settings(tmp_path):
    limits = load_limits({}, config_file=tmp_path / "missing.toml")
    assert limits.max_batch_jobs == default_max_batch_jobs() >= 1
    assert (limits.max_models, limits.max_images_per_session) == (4, 500)
    assert {limits.source(f) for f in ("max_batch_jobs", "max_models", "max_images_per_session")} == {"default"}


def test_environment_wins_over_the_file_and_blank_means_unset(tmp_path):
    toml = tmp_path / "layer_explorer.toml"
    toml.write_text("[limits]\nmax_models = 2\nmax_batch_jobs = 3\nmax_images_per_session = 120\n")
    env = {"LAYER_EXPLORER_MAX_MODELS": " 7 ", "LAYER_EXPLORER_MAX_BATCH_JOBS": ""}
    limits = load_limits(env, config_file=toml)
    assert (limits.max_models, limits.max_batch_jobs, limits.max_images_per_session) == (7, 3, 120)
    assert limits.source("max_models") == "environment"
    assert limits.source("max_batch_jobs") == "config file"


@pytest.mark.parametrize(("value", "why"), [("0", "out of range"), ("-2", "out of range"), ("2.5", "not a whole"),
                                            ("many", "not a whole"), ("100000", "out of range")])
def test_bad_environment_values_name_the_variable_the_value_and_the_fix(value, why):
    with pytest.raises(ServerLimitError) as info:
        load_limits({"LAYER_EXPLORER_MAX_BATCH_JOBS": value}, config_file=None)
    message = str(info.value)
    assert f"LAYER_EXPLORER_MAX_BATCH_JOBS={value!r}" in message and why in message
    assert "from 1 to 256" in message and "unset it" in message
    assert isinstance(info.value, LayerExplorerError)


def test_bad_file_values_and_unknown_settings_are_refused(tmp_path):
    toml = tmp_path / "layer_explorer.toml"
    toml.write_text("[limits]\nmax_models = true\n")
    with pytest.raises(ServerLimitError, match="max_models=True is not a whole number"):
        load_limits({}, config_file=toml)
    toml.write_text("[limits]\nmax_modles = 3\n")
    with pytest.raises(ServerLimitError, match=r"unknown setting\(s\) \['max_modles'\]"):
        load_limits({}, config_file=toml)
    toml.write_text("[limits\n")
    with pytest.raises(ServerLimitError, match="could not be read"):
        load_limits({}, config_file=toml)


def test_table_for_the_about_expander_is_plain_data():
    limits = load_limits({"LAYER_EXPLORER_MAX_IMAGES_PER_SESSION": "64"}, config_file=None)
    rows = limits_table(limits)
    assert [r["variable"] for r in rows] == ["LAYER_EXPLORER_MAX_BATCH_JOBS", "LAYER_EXPLORER_MAX_MODELS",
                                             "LAYER_EXPLORER_MAX_IMAGES_PER_SESSION"]
    assert rows[2]["value"] == 64 and rows[2]["from"] == "environment"
    assert all(isinstance(v, (str, int)) for row in rows for v in row.values())


def test_docstring_examples():
    assert doctest.testmod(server_limits).failed == 0


def _about_script():
    from ui import about_server
    from ui.model_pool import ModelPool
    from ui.server_limits import load_limits
    from ui.work_lanes import WorkLanes

    pool = ModelPool(max_models=3)
    pool.get("demo-shapes", lambda: "net")
    about_server.render(load_limits({"LAYER_EXPLORER_MAX_MODELS": "3"}, config_file=None),
                        lanes=WorkLanes(slots=2, max_batch_jobs=5), pool=pool)


def test_about_this_server_expander_shows_the_limits_and_the_load():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_about_script, default_timeout=120).run()
    assert not at.exception
    assert at.expander[0].label == "About this server"
    frame = at.table[0].value
    assert list(frame["variable"]) == ["LAYER_EXPLORER_MAX_BATCH_JOBS", "LAYER_EXPLORER_MAX_MODELS",
                                       "LAYER_EXPLORER_MAX_IMAGES_PER_SESSION"]
    assert int(frame["value"][1]) == 3
    text = " ".join(m.value for m in at.markdown)
    assert "0 in progress (at most 5)" in text and "Networks in memory: 1 of at most 3" in text
