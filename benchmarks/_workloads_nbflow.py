"""nbflow's half of the comparison's core rows: first run, steady state, chain, submitted tasks, RSS.

Only the engine API is used, and a broken engine fails loudly. The store, cache, concurrency and
monitor rows are measured by their own modules (benchmarks/store.py, cache.py, ...), not here.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import _common
from _common import build_flows, timed


@cache
def _flows() -> dict[str, Any]:
    from nbflow import flow, task
    from nbflow.futures import wait

    return build_flows(flow, task, wait)


def first(steady_reps: int) -> dict:
    return _common.first_run(_flows(), steady=(steady_reps, steady_reps * 10, 1.0))


def throughput(n: int) -> dict:
    return _common.throughput(_flows(), n, empty=(5, 200, 0.5), runs=(3, 30, 3.0))


def rss(n: int) -> dict:
    return {"wall_s": timed(lambda: _flows()["chain"](n))}


def large_result(mb: int) -> dict:
    """One task returning an ``mb`` MiB numpy array: the flow's time, then until it is on disk.

    Persistence on or off comes from ``NBFLOW_RESULTS_PERSIST`` in the worker's environment; the
    harness measures the process's peak RSS."""
    import numpy as np

    from nbflow import flow, task
    from nbflow._engine.runtime import get_runtime

    @task
    def make(nbytes: int) -> Any:
        return np.full(nbytes // 8, 1.5)

    @flow
    def once(nbytes: int) -> int:
        return make(nbytes).nbytes

    once(1 << 20)  # imports, the run store and the cache opened
    flow_s = timed(lambda: once(mb * 2**20))
    flushed_s = timed(lambda: get_runtime().cache.flush())
    return {"flow_s": flow_s, "on_disk_s": flow_s + flushed_s}
