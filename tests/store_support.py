"""Helpers for the run store tests: a runtime recording into a temp home, raw reads, fresh processes."""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nbflow._app.wiring import build_runtime
from nbflow._core.settings import Settings
from nbflow._engine.runtime import Runtime, use_runtime

REPO = Path(__file__).resolve().parent.parent


@contextmanager
def recording(home: Path, clock: Any = None, **settings: Any) -> Iterator[Runtime]:
    """A runtime with the store on (console captured, not printed), entered; the store closed after."""
    runtime = build_runtime(Settings(home=str(home), **settings), clock=clock)
    assert runtime.store is not None
    runtime.console._stream = io.StringIO()  # type: ignore[union-attr]
    try:
        with use_runtime(runtime):
            yield runtime
    finally:
        runtime.store.close()


def db(home: Path) -> sqlite3.Connection:
    """A plain connection to the store, as another program would open it (no flush, no nbflow)."""
    return sqlite3.connect(str(home / "nbflow.db"), timeout=30)


def env(home: Path, **extra: str) -> dict[str, str]:
    values = {k: v for k, v in os.environ.items() if not k.startswith("NBFLOW_")}
    values["NBFLOW_HOME"] = str(home)
    values["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), extra.pop("PYTHONPATH", "")) if p)
    values.update(extra)
    return values


def script(path: Path, code: str) -> Path:
    path.write_text(textwrap.dedent(code))
    return path


def start(args: list[str], home: Path, **extra: str) -> subprocess.Popen[str]:
    """A fresh Python process (``args`` after ``python``) using ``home``; output captured."""
    return subprocess.Popen(
        [sys.executable, *args], env=env(home, **extra), cwd=str(home.parent),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def nbflow(home: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """``nbflow ARGS`` in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "nbflow", *args], env=env(home, **extra), cwd=str(home.parent),
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
    )


def wait_for(condition: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    """Poll ``condition`` until it is truthy; fail the test (not hang) after ``timeout``."""
    give_up = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > give_up:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def count(home: Path, sql: str, *args: Any) -> int:
    try:
        with db(home) as conn:
            return int(conn.execute(sql, args).fetchone()[0])
    except sqlite3.OperationalError:  # no such table yet
        return 0
