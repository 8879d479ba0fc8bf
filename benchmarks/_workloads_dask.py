"""Dask's half of the comparison: delayed graphs run on the threaded scheduler.

Dask has no flows, so an "empty flow run" is the compute of a one-node graph and a
"flow with N tasks" is building plus computing a graph of N delayed calls.
"""

from __future__ import annotations

from typing import Any

from _common import inc, med, repeat, timed


def _noop() -> None:
    return None


def _empty() -> None:
    import dask

    dask.delayed(_noop)().compute(scheduler="threads")


def _chain(n: int) -> int:
    import dask

    x: Any = 0
    for _ in range(n):
        x = dask.delayed(inc)(x)
    result = x.compute(scheduler="threads")
    assert result == n, result
    return result


def _independent(n: int) -> None:
    import dask

    results = dask.compute(*[dask.delayed(inc)(i) for i in range(n)], scheduler="threads")
    assert sum(results) == n * (n + 1) // 2


def first(steady_reps: int) -> dict:
    import dask  # noqa: F401  (import is measured elsewhere; time only the run)

    first_s = timed(_empty)
    steady = repeat(_empty, min_reps=steady_reps, max_reps=steady_reps * 5, budget_s=1.0)
    return {"first_s": first_s, "steady_s": med(steady)}


def throughput(n: int, parts: list[str] | None = None) -> dict:
    parts = parts or ["chain", "submit"]
    _empty()
    out: dict[str, Any] = {"n": n}
    out["empty_s"] = med(repeat(_empty, min_reps=5, max_reps=50, budget_s=0.5))
    if "chain" in parts:
        out["chain_s"] = med(repeat(lambda: _chain(n), min_reps=3, max_reps=20, budget_s=3.0))
    if "submit" in parts:
        out["submit_s"] = med(repeat(lambda: _independent(n), min_reps=3, max_reps=20, budget_s=3.0))
    return out


def rss(n: int) -> dict:
    return {"wall_s": timed(lambda: _chain(n))}
