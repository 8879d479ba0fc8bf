"""The result cache from Python: list, summarise and clear persisted task results.

>>> import nbflow.cache
>>> nbflow.cache.clear(task="fetch_data")            # doctest: +SKIP
3
>>> nbflow.cache.clear(older_than="7d")              # doctest: +SKIP
12

The same as ``nbflow cache ls / stats / clear`` on the command line.

The public face: the names live in ``nbflow._app.cache``.
"""

from nbflow._app.cache import (
    CacheStats,
    Entry,
    clear,
    entries,
    parse_duration,
    stats,
)

__all__ = [
    "CacheStats",
    "Entry",
    "clear",
    "entries",
    "parse_duration",
    "stats",
]
