"""mypy (strict, configured in pyproject.toml) finds nothing in the modules it lists: the pure core and the engine."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _listed() -> list[str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["files"]


def test_every_listed_module_exists():
    missing = [f for f in _listed() if not (ROOT / f).is_file()]
    assert not missing, f"[tool.mypy] files lists modules that do not exist: {missing}"


@pytest.mark.slow  # 5 s and more cold (the first run fills .mypy_cache), 1 s after
def test_mypy_finds_nothing():
    pytest.importorskip("mypy", reason="mypy comes with the test extra (pip install -e '.[test]')")
    done = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"mypy found type errors:\n{done.stdout}{done.stderr}"
    # A config that checks nothing passes too: make sure every listed module was checked.
    assert f"no issues found in {len(_listed())} source files" in done.stdout, done.stdout
