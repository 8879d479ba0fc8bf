"""Prefect's half of the comparison, run against its ephemeral local server (no `prefect server`).

The harness sets PREFECT_HOME to a throw-away folder and turns analytics off; everything else
is Prefect's default: console logging on, logs and states sent to the local API. ``cache_hit`` is
Prefect's side of benchmarks/cache.py.
"""

from __future__ import annotations

import time
from functools import cache
from typing import Any

import _common
from _common import build_flows, timed


@cache
def _flows() -> dict[str, Any]:
    from prefect import flow, task
    from prefect.futures import wait

    return build_flows(flow, task, wait)


def first(steady_reps: int) -> dict:
    # Prefect's runs take about a second each: fewer of them, within a few seconds.
    return _common.first_run(_flows(), steady=(min(steady_reps, 3), steady_reps, 5.0))


def throughput(n: int) -> dict:
    return _common.throughput(_flows(), n, empty=(3, 5, 4.0), runs=(1, 3, 5.0))


def rss(n: int) -> dict:
    return {"wall_s": timed(lambda: _flows()["chain"](n))}


def cache_hit(n: int) -> dict:
    """Per-call cost of a hit of ``cache_key_fn=task_input_hash`` on a small input, inside a flow."""
    from prefect import flow, task
    from prefect.tasks import task_input_hash

    calls = {"n": 0}

    def cached_body(x: int) -> int:
        calls["n"] += 1
        return x + 1

    cached = task(cached_body, name="cached", cache_key_fn=task_input_hash)

    @flow(name="cache-hits")
    def hits(n: int, budget_s: float) -> dict:
        cached(1)  # the miss that fills the cache
        start = time.perf_counter()
        done = 0
        while done < n and (done < 10 or time.perf_counter() - start < budget_s):
            cached(1)
            done += 1
        return {"hit_s": (time.perf_counter() - start) / done, "hits": done}

    out = hits(n, 5.0)
    out["body_runs"] = calls["n"]
    return out
