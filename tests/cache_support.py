"""Helpers for the result-cache tests: a runtime with a real cache folder, and fresh Python processes."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from nbflow._app.wiring import build_runtime
from nbflow._core.events import LogEmitted
from nbflow._core.settings import Settings
from nbflow._engine.runtime import use_runtime

REPO = Path(__file__).resolve().parent.parent


class CacheHarness:
    """A runtime whose result cache lives in a temp home; events recorded, console captured."""

    def __init__(self, home: Path, clock: Any = None, **settings: Any) -> None:
        from conftest import Recorder

        self.home = home
        self.recorder = Recorder()
        self.console_text = io.StringIO()
        values = {"home": str(home), "store_enabled": False, **settings}
        self.runtime = build_runtime(Settings(**values), clock=clock, subscribers=(self.recorder,))
        assert self.runtime.console is not None and self.runtime.cache is not None
        self.runtime.console._stream = self.console_text
        self.cache = self.runtime.cache

    def __enter__(self) -> CacheHarness:
        self._cm = use_runtime(self.runtime)
        self._cm.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.cache.flush(10)
        self._cm.__exit__(*exc)

    @property
    def console(self) -> str:
        return self.console_text.getvalue()

    def warnings(self) -> list[str]:
        return [e.message for e in self.recorder.events if isinstance(e, LogEmitted) and e.level == 30]

    def states(self, run_name: str) -> list[str]:
        return self.recorder.states(run_name)

    def final_states(self, task_name: str) -> list[str]:
        """Final state names of every run of ``task_name``, in creation order."""
        runs = [r for r in self.recorder.runs("task") if r.task_name == task_name]
        return [r.state.name for r in runs]

    def entries(self, task: str | None = None) -> list[Any]:
        self.cache.flush(10)
        return list(self.cache.disk.entries(task))


def run_python(code: str, home: Path, *, env: dict[str, str] | None = None, cwd: Path | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter with NBFLOW_HOME=home; fails the test on a non-zero exit."""
    full_env = {**os.environ, "NBFLOW_HOME": str(home), "PYTHONPATH": os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p), **(env or {})}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            env=full_env, cwd=cwd, timeout=timeout)
    assert result.returncode == 0, f"subprocess failed:\n{result.stdout}\n{result.stderr}"
    return result


def nbflow_cli(*args: str, home: Path, cwd: Path | None = None, env: dict[str, str] | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "NBFLOW_HOME": str(home), **(env or {})}
    return subprocess.run([sys.executable, "-m", "nbflow", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=timeout)
