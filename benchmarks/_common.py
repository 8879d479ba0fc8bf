"""Small helpers shared by the per-framework workload modules (stdlib only)."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable


class Skip(Exception):
    """Raised by a workload whose nbflow feature is not there yet; the row says why."""


def need(module: str, *names: str) -> Any:
    """Import `module` (and check `names` on it) or skip the workload with a clear note.

    Other engineers are still building some nbflow features, so a missing module or
    attribute means "not built yet", not "broken".
    """
    import importlib

    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise Skip(f"needs {module} ({type(exc).__name__}: {exc})") from None
    for name in names:
        if not hasattr(mod, name):
            raise Skip(f"needs {module}.{name}, which is not there yet") from None
    return mod


def timed(fn: Callable[[], Any]) -> float:
    """Seconds one call of `fn` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def repeat(fn: Callable[[], Any], *, min_reps: int, max_reps: int, budget_s: float) -> list[float]:
    """Times of repeated calls: at least `min_reps`, then more while under `budget_s`.

    Cheap frameworks get more samples (a steadier median) while a slow one still ends.
    """
    times: list[float] = []
    spent = 0.0
    while len(times) < max_reps and (len(times) < min_reps or spent < budget_s):
        t = timed(fn)
        times.append(t)
        spent += t
    return times


def med(values: list[float]) -> float:
    return statistics.median(values)


def inc(x: int) -> int:
    """The trivial task body every framework runs."""
    return x + 1
