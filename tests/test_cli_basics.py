"""The ``nbflow`` command: help, config view, and bad input as one line with exit status 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def nbflow(*args, env=None):
    return subprocess.run([sys.executable, "-m", "nbflow", *args], capture_output=True, text=True, env={**os.environ, **(env or {})})


def test_config_view_shows_home_and_settings(tmp_path):
    result = nbflow("config", "view", "--json", env={"NBFLOW_HOME": str(tmp_path), "NBFLOW_LOGGING_LEVEL": "debug"})
    assert result.returncode == 0
    shown = json.loads(result.stdout)
    assert shown["NBFLOW_HOME"] == str(tmp_path) and shown["NBFLOW_LOGGING_LEVEL"] == "DEBUG"


def test_a_bad_setting_is_one_clear_line_with_status_2(tmp_path):
    result = nbflow("config", "view", env={"NBFLOW_CACHE_SIZE_LIMIT": "lots"})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("nbflow: error: Invalid nbflow setting: NBFLOW_CACHE_SIZE_LIMIT='lots'")


def test_unknown_command_is_a_usage_error():
    result = nbflow("frobnicate")
    assert result.returncode == 2 and "invalid choice" in result.stderr


def test_a_setting_out_of_range_is_refused_with_what_is_allowed(tmp_path):
    result = nbflow("config", "view", env={"NBFLOW_HOME": str(tmp_path), "NBFLOW_HEARTBEAT_SECONDS": "0"})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "NBFLOW_HEARTBEAT_SECONDS='0': must be more than 0" in result.stderr
