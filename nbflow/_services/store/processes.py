"""Is the process that left a run ``Running`` still alive? (pid plus start time, so a reused pid is caught)."""

from __future__ import annotations

import os
import time

__all__ = ["start_time", "own_start_time", "is_alive", "START_TOLERANCE_S"]

# /proc and psutil both derive the start time from clock ticks since boot: equal to within rounding.
START_TOLERANCE_S = 1.0


def _boot_time() -> float | None:
    """When the machine booted, in wall-clock (epoch) seconds, as of now.

    Never cached: it moves whenever the wall clock is set (NTP, a laptop's resume, a VM restored from a
    snapshot) while the time since boot does not. The process that records its start time and the one
    that checks it later each compute it at that moment; a value one of them kept from long before
    would differ by every correction since, and a live run would be taken for a reused pid (Crashed).
    """
    clock = getattr(time, "CLOCK_BOOTTIME", None)  # Linux: the clock /proc/<pid>/stat's starttime counts
    if clock is not None:
        return time.time() - time.clock_gettime(clock)
    try:  # /proc/stat's btime is the same, in whole seconds
        with open("/proc/stat", "rb") as fh:
            for line in fh:
                if line.startswith(b"btime "):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


def _since_boot(pid: int) -> tuple[bytes, float] | None:
    """(state letter, seconds after boot it started) from ``/proc/<pid>/stat`` (Linux): cheap, no
    import. None: no such pid."""
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
    return fields[0], ticks / os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: int) -> tuple[bytes, float] | None:
    """(state letter, start time in epoch seconds) of ``pid`` (Linux). None: no such pid."""
    boot = _boot_time()
    stat = None if boot is None else _since_boot(pid)
    return None if stat is None else (stat[0], boot + stat[1])


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


_own: tuple[int, float | None, float | None] | None = None  # (pid, seconds after boot, or else start time)


def own_start_time() -> float | None:
    """This process's start time, read once per process (and again after a fork); on Linux the time
    after boot is kept, and the boot time is added at every call (see ``_boot_time``)."""
    global _own  # a per-process fact; keyed by pid so a forked child recomputes it
    pid = os.getpid()
    if _own is None or _own[0] != pid:
        stat = _since_boot(pid) if _HAS_PROC else None
        _own = (pid, stat[1], None) if stat is not None else (pid, None, start_time(pid))
    _pid, since_boot, fixed = _own
    boot = None if since_boot is None else _boot_time()
    return fixed if since_boot is None or boot is None else boot + since_boot


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
