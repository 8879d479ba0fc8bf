"""mypy (strict, configured in pyproject.toml) finds nothing in the modules it lists: the pure core, the
engine and the composition root, whole, and the public faces."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _listed() -> list[str]:
    """The listed files, with each listed folder (a whole layer) expanded to its modules."""
    files = []
    for entry in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["files"]:
        path = ROOT / entry
        files += sorted(str(p.relative_to(ROOT)) for p in path.rglob("*.py")) if path.is_dir() else [entry]
    return files


def test_every_listed_module_exists():
    missing = [f for f in _listed() if not (ROOT / f).is_file()]
    assert not missing, f"[tool.mypy] files lists modules that do not exist: {missing}"


def test_the_core_the_engine_and_the_composition_root_are_checked_whole():
    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["files"]
    assert {"nbflow/_core", "nbflow/_engine", "nbflow/_app"} <= set(listed)


@pytest.mark.slow  # 5 s and more cold (the first run fills .mypy_cache), 1 s after
def test_mypy_finds_nothing():
    pytest.importorskip("mypy", reason="mypy comes with the test extra (pip install -e '.[test]')")
    done = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"mypy found type errors:\n{done.stdout}{done.stderr}"
    # A config that checks nothing passes too: make sure every listed module was checked.
    assert f"no issues found in {len(_listed())} source files" in done.stdout, done.stdout
