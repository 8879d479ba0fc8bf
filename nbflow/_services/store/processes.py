"""Is the process that left a run ``Running`` still alive? (pid plus start time, so a reused pid is caught)."""

from __future__ import annotations

import os
from functools import lru_cache

__all__ = ["start_time", "own_start_time", "is_alive", "START_TOLERANCE_S"]

# /proc and psutil both derive the start time from clock ticks since boot: equal to within rounding.
START_TOLERANCE_S = 1.0


@lru_cache(maxsize=1)
def _boot_time() -> float | None:
    try:
        with open("/proc/stat", "rb") as fh:
            for line in fh:
                if line.startswith(b"btime "):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


def _proc_stat(pid: int) -> tuple[bytes, float] | None:
    """(state letter, start time) from ``/proc/<pid>/stat`` (Linux): cheap, no import. None: no such pid."""
    boot = _boot_time()
    if boot is None:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    # Field 2 (the command) is in parentheses and may contain spaces: split after its last ')'.
    fields = stat[stat.rfind(b")") + 2:].split()
    try:
        ticks = int(fields[19])  # field 22 overall: starttime, in clock ticks after boot
    except (IndexError, ValueError):
        return None
    return fields[0], boot + ticks / os.sysconf("SC_CLK_TCK")


def start_time(pid: int) -> float | None:
    """When process ``pid`` started (epoch seconds), or None if it does not exist or we cannot tell."""
    if _HAS_PROC:
        stat = _proc_stat(pid)
        return None if stat is None else stat[1]
    try:
        import psutil  # macOS, Windows: psutil if it is installed
    except ImportError:
        return None
    try:
        return float(psutil.Process(pid).create_time())
    except Exception:  # NoSuchProcess, AccessDenied, ZombieProcess
        return None


_own: tuple[int, float | None] | None = None


def own_start_time() -> float | None:
    """This process's start time, computed once per process (and again after a fork)."""
    global _own  # a per-process fact; keyed by pid so a forked child recomputes it
    pid = os.getpid()
    if _own is None or _own[0] != pid:
        _own = (pid, start_time(pid))
    return _own[1]


def _pid_exists(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def is_alive(pid: int, recorded_start: float | None) -> bool | None:
    """True: process ``pid`` is the one that recorded ``recorded_start``. False: it is gone (or a zombie),
    or the pid now belongs to another process. None: alive, but we cannot tell whether the pid was reused.
    """
    if _HAS_PROC and _boot_time() is not None:
        stat = _proc_stat(pid)
        if stat is None or stat[0] == b"Z":
            return False
        return None if recorded_start is None else abs(stat[1] - recorded_start) <= START_TOLERANCE_S
    if not _pid_exists(pid):
        return False
    now_start = start_time(pid)
    if recorded_start is None or now_start is None:
        return None
    return abs(now_start - recorded_start) <= START_TOLERANCE_S


_HAS_PROC = os.path.isdir("/proc/self")
