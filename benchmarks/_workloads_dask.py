"""Dask's half of the comparison: delayed graphs run on the threaded scheduler.

Dask has no flows, so an "empty flow run" is the compute of a one-node graph and a
"flow with N tasks" is building plus computing a graph of N delayed calls.
"""

from __future__ import annotations

from typing import Any

import _common
from _common import inc, timed


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
    return x.compute(scheduler="threads")  # type: ignore[no-any-return]


def _independent(n: int) -> int:
    import dask

    return sum(dask.compute(*[dask.delayed(inc)(i) for i in range(n)], scheduler="threads"))


FLOWS = {"empty": _empty, "chain": _chain, "fan": _independent}


def first(steady_reps: int) -> dict:
    import dask  # noqa: F401  (import is measured elsewhere; time only the run)

    return _common.first_run(FLOWS, steady=(steady_reps, steady_reps * 5, 1.0))


def throughput(n: int) -> dict:
    return _common.throughput(FLOWS, n, empty=(5, 50, 0.5), runs=(3, 20, 3.0))


def rss(n: int) -> dict:
    return {"wall_s": timed(lambda: _chain(n))}
