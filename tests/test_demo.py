"""``nbflow demo``, the Quick start's main job, runs a pipeline and reruns it from the cache."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # runs `nbflow demo` in a subprocess


def test_demo_runs_then_reruns_from_the_cache(tmp_path):
    env = {**os.environ, "NBFLOW_HOME": str(tmp_path / "home")}
    result = subprocess.run([sys.executable, "-m", "nbflow", "demo"], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Task run 'extract-4' - Retrying in" in result.stderr  # the flaky source was retried
    assert "Created subflow run" in result.stderr and "Report: 5000 rows" in result.stderr
    first, rerun = result.stderr.split("for flow 'demo-pipeline'")[1:3]
    assert "Cached" not in first
    assert rerun.count("Finished in state Cached(type=COMPLETED)") == 11  # 5 extract, 5 transform, combine
    assert "First run:  Completed()" in result.stdout and "Rerun:      Completed()" in result.stdout
