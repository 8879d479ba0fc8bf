"""The result cache from Python: list, summarise and clear persisted task results.

>>> import nbflow.cache
>>> nbflow.cache.clear(task="fetch_data")            # doctest: +SKIP
3
>>> nbflow.cache.clear(older_than="7d")              # doctest: +SKIP
12

The same as ``nbflow cache ls / stats / clear`` on the command line.
"""

from __future__ import annotations

from datetime import timedelta

from nbflow._core.durations import parse_duration
from nbflow._services.cache.disk import CacheStats, Entry, ResultDisk

__all__ = ["CacheStats", "Entry", "clear", "entries", "parse_duration", "stats"]



def entries(task: str | None = None) -> list[Entry]:
    """Every persisted result (of ``task``, by task name), oldest first."""
    return list(_disk().entries(task))


def stats() -> CacheStats:
    """Entries, bytes on disk and per-task totals of the result cache."""
    from nbflow._engine.runtime import get_runtime

    return _disk().stats(get_runtime().clock.now())


def clear(task: str | None = None, older_than: timedelta | float | str | None = None) -> int:
    """Delete persisted results; returns how many. ``older_than``: a timedelta, seconds, or "7d"."""
    from nbflow._engine.runtime import get_runtime

    cutoff = None
    if older_than is not None:
        cutoff = get_runtime().clock.now() - parse_duration(older_than)
    return _disk().clear(task, cutoff)


def _disk() -> ResultDisk:
    """The current runtime's cache folder, its queued writes flushed first."""
    from nbflow._engine.runtime import get_runtime
    from nbflow._services.cache.service import ResultCache

    runtime = get_runtime()
    cache = runtime.cache
    if isinstance(cache, ResultCache):
        cache.flush(timeout=30)
        return cache.disk
    settings = runtime.settings
    return ResultDisk(settings.home / "cache", settings.cache_size_limit)
