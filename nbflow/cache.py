"""The result cache from Python: list, summarise and clear persisted task results.

>>> import nbflow.cache
>>> nbflow.cache.clear(task="fetch_data")            # doctest: +SKIP
3
>>> nbflow.cache.clear(older_than="7d")              # doctest: +SKIP
12

The same as ``nbflow cache ls / stats / clear`` on the command line.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from nbflow._cache.disk import CacheStats, Entry, ResultDisk

__all__ = ["CacheStats", "Entry", "clear", "entries", "parse_duration", "stats"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)


def entries(task: str | None = None) -> list[Entry]:
    """Every persisted result (of ``task``, by task name), oldest first."""
    return list(_disk().entries(task))


def stats() -> CacheStats:
    """Entries, bytes on disk and per-task totals of the result cache."""
    from nbflow._runtime import get_runtime

    return _disk().stats(get_runtime().clock.now())


def clear(task: str | None = None, older_than: timedelta | float | str | None = None) -> int:
    """Delete persisted results; returns how many. ``older_than``: a timedelta, seconds, or "7d"."""
    from nbflow._runtime import get_runtime

    cutoff = None
    if older_than is not None:
        cutoff = get_runtime().clock.now() - parse_duration(older_than)
    return _disk().clear(task, cutoff)


def parse_duration(value: timedelta | float | str) -> float:
    """Seconds in ``value``: a timedelta, a number of seconds, or ``"90s"``, ``"30m"``, ``"12h"``, ``"7d"``, ``"2w"``.

    >>> parse_duration("36h")
    129600.0
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if match is None:
            raise ValueError(f"{value!r} is not a duration: write a number and a unit, e.g. 90s, 30m, 12h, 7d or 2w")
        seconds = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if seconds < 0:
        raise ValueError(f"a duration must not be negative, got {value!r}")
    return seconds


def _disk() -> ResultDisk:
    """The current runtime's cache folder, its queued writes flushed first."""
    from nbflow._runtime import get_runtime

    runtime = get_runtime()
    cache: Any = runtime.cache
    if cache is not None:
        cache.flush(timeout=30)
        return cache.disk
    settings = runtime.settings
    return ResultDisk(settings.home / "cache", settings.cache_size_limit)
