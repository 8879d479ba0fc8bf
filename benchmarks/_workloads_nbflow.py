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
