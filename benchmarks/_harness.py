"""Fresh-process plumbing for the benchmarks: environments, subprocess runs, peak RSS."""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import SPAWNED_AT

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
WORKER = BENCH_DIR / "_worker.py"

# Prefect without a server: the ephemeral API server it starts by itself in a subprocess,
# with its database under a throw-away PREFECT_HOME. Analytics off because this machine has
# no internet and a telemetry call that cannot resolve a host is not Prefect's cost.
PREFECT_ENV = {
    "PREFECT_SERVER_EPHEMERAL_ENABLED": "true",
    "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "true",  # the spelling of Prefect 3.0
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # A brand-new PREFECT_HOME migrates its database on the first start, which takes longer
    # than the default 20 s on a 2-core machine; we want a number, not a timeout.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300",
}


@dataclass
class ProcResult:
    """What one fresh worker process measured, plus what the harness saw from outside."""

    data: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0
    peak_rss_mb: float | None = None
    error: str | None = None
    skipped: str | None = None
    traceback: str | None = None


class Homes:
    """Throw-away home folders (NBFLOW_HOME, PREFECT_HOME), one set per benchmark run."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="nbflow-bench-")
        self.root = Path(self._tmp.name)

    def new(self, name: str) -> Path:
        """A fresh, empty, not-yet-created folder path (the frameworks create it themselves)."""
        path = self.root / name
        suffix = 1
        while path.exists():
            suffix += 1
            path = self.root / f"{name}-{suffix}"
        return path

    def cleanup(self) -> None:
        self._tmp.cleanup()


def base_env(**extra: str) -> dict[str, str]:
    """The caller's environment with this checkout's nbflow first on the path."""
    env = dict(os.environ)
    for key in list(env):
        # A user's own Prefect profile or API URL would turn the comparison into a network one.
        if key.startswith("PREFECT_") or key.startswith("NBFLOW_"):
            del env[key]
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), str(BENCH_DIR), os.environ.get("PYTHONPATH", "")) if p
    )
    # An installed package has its bytecode compiled (pip does it); a source checkout run with
    # PYTHONDONTWRITEBYTECODE would recompile nbflow in every process and time the compiler.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(PREFECT_ENV)
    env.update(extra)
    return env


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def one_line(message: str, limit: int = 200) -> str:
    """The last meaningful line of an error (a kernel traceback comes coloured and long)."""
    lines = [ln.strip() for ln in _ANSI.sub("", message).splitlines() if ln.strip()]
    line = lines[-1] if lines else message.strip()
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _tree_rss(proc: Any) -> int:
    """Resident bytes of a process and all of its descendants (Prefect's server is a child)."""
    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except Exception:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except Exception:
            pass
    return total


def _poll_peak(pid: int, stop: threading.Event, out: list[int]) -> None:
    try:
        import psutil
    except ImportError:
        return
    try:
        proc = psutil.Process(pid)
    except Exception:
        return
    peak = 0
    while not stop.is_set():
        peak = max(peak, _tree_rss(proc))
        stop.wait(0.01)
    out.append(peak)


def run_worker(
    framework: str, job: str, env: dict[str, str], timeout: float = 900.0, **params: Any
) -> ProcResult:
    """Run one job of one framework in a fresh interpreter; stdout/stderr go to /dev/null.

    Console logging stays on inside the worker, its output is discarded, as a user's
    terminal would be if they ran the flow with output redirected.
    """
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        out_path = Path(fh.name)
    cmd = [sys.executable, str(WORKER), framework, job, str(out_path), json.dumps(params)]
    peaks: list[int] = []
    stop = threading.Event()
    env = {**env, SPAWNED_AT: repr(time.time())}  # so the worker can time "new process to first run"
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    poller = threading.Thread(target=_poll_peak, args=(proc.pid, stop, peaks), daemon=True)
    poller.start()
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        code = None
    wall = time.perf_counter() - start
    stop.set()
    poller.join()
    result = ProcResult(wall_s=wall)
    try:
        payload = json.loads(out_path.read_text() or "{}")
    except (OSError, ValueError):
        payload = {}
    finally:
        out_path.unlink(missing_ok=True)
    result.data = payload.get("result") or {}
    result.skipped = payload.get("skipped")
    result.error = one_line(payload["error"]) if payload.get("error") else None
    result.traceback = payload.get("traceback")
    self_peak = payload.get("maxrss_bytes") or 0
    peak = max([self_peak, *peaks])
    result.peak_rss_mb = peak / 2**20 if peak else None
    if code is None:
        result.error = f"timed out after {timeout:.0f} s"
    elif code != 0 and not (result.error or result.skipped):
        result.error = f"worker exited with code {code} and wrote no result"
    return result


def time_command(argv: list[str], env: dict[str, str], repeats: int) -> list[float]:
    """Wall seconds of `repeats` fresh runs of a command (for import times)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise RuntimeError(one_line(done.stderr.decode(errors="replace") or "?"))
    return times


def time_import(statement: str, env: dict[str, str], repeats: int) -> tuple[list[float], list[float]]:
    """Wall seconds of `python -c "<statement>"` and, from inside, of the statement alone.

    The inside figure leaves out interpreter start-up and `site` (which on some machines
    imports certifi and friends): it is the framework's own import cost.
    """
    code = (f"import time as _t; _s = _t.perf_counter(); {statement}; "
            "print(_t.perf_counter() - _s)")
    walls, inside = [], []
    # One untimed run first: writes bytecode where it is missing and warms the file cache,
    # so every framework is timed as it is after the first import on a machine.
    subprocess.run([sys.executable, "-c", statement], env=env, stdin=subprocess.DEVNULL,
                   capture_output=True)
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", code], env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True)
        walls.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise RuntimeError(one_line(done.stderr or "?"))
        inside.append(float(done.stdout.strip().splitlines()[-1]))
    return walls, inside


def median(values: list[float]) -> float:
    return statistics.median(values)
