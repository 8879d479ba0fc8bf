"""Prefect's half of the comparison, run against its ephemeral local server (no `prefect server`).

The harness sets PREFECT_HOME to a throw-away folder and turns analytics off; everything else
is Prefect's default: console logging on, logs and states sent to the local API.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

from _common import inc, med, repeat, timed


@lru_cache(maxsize=None)
def _flows() -> dict[str, Any]:
    from prefect import flow, task
    from prefect.futures import wait
    from prefect.tasks import task_input_hash

    inc_task = task(inc, name="inc")
    calls = {"n": 0}

    def cached_body(x: int) -> int:
        calls["n"] += 1
        return x + 1

    cached = task(cached_body, name="cached", cache_key_fn=task_input_hash)

    @flow(name="empty")
    def empty() -> None:
        return None

    @flow(name="chain")
    def chain(n: int) -> int:
        x = 0
        for _ in range(n):
            x = inc_task(x)
        return x

    @flow(name="fan")
    def fan(n: int) -> int:
        futures = [inc_task.submit(i) for i in range(n)]
        wait(futures)
        return sum(f.result() for f in futures)

    @flow(name="cache-hits")
    def cache_hits(n: int, budget_s: float) -> dict:
        cached(1)  # the miss that fills the cache
        start = time.perf_counter()
        done = 0
        while done < n and (done < 10 or time.perf_counter() - start < budget_s):
            cached(1)
            done += 1
        return {"hit_s": (time.perf_counter() - start) / done, "hits": done}

    return {"empty": empty, "chain": chain, "fan": fan, "cache_hits": cache_hits, "calls": calls}


def first(steady_reps: int) -> dict:
    f = _flows()
    first_s = timed(f["empty"])
    steady = repeat(f["empty"], min_reps=min(steady_reps, 3), max_reps=steady_reps, budget_s=5.0)
    return {"first_s": first_s, "steady_s": med(steady)}


def throughput(n: int, parts: list[str] | None = None) -> dict:
    parts = parts or ["chain", "submit"]
    f = _flows()
    f["empty"]()  # start the ephemeral server outside the measured runs
    out: dict[str, Any] = {"n": n}
    out["empty_s"] = med(repeat(f["empty"], min_reps=3, max_reps=5, budget_s=4.0))
    if "chain" in parts:
        runs = repeat(lambda: f["chain"](n), min_reps=1, max_reps=3, budget_s=5.0)
        out["chain_s"] = med(runs)
    if "submit" in parts:
        total = n * (n + 1) // 2
        runs = repeat(lambda: _check(f["fan"](n), total), min_reps=1, max_reps=3, budget_s=5.0)
        out["submit_s"] = med(runs)
    return out


def _check(value: int, expected: int) -> None:
    assert value == expected, (value, expected)


def rss(n: int) -> dict:
    return {"wall_s": timed(lambda: _flows()["chain"](n))}


def cache_hit(n: int) -> dict:
    f = _flows()
    out = f["cache_hits"](n, 5.0)
    out["body_runs"] = f["calls"]["n"]
    return out


def concurrency(n: int) -> dict:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.concurrency.sync import concurrency as slot

    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name="bench", limit=5))

    def once() -> None:
        with slot("bench", occupy=1, strict=True):
            pass

    once()  # connection set-up is not the per-acquire cost
    start = time.perf_counter()
    done = 0
    while done < n and (done < 10 or time.perf_counter() - start < 5.0):
        once()
        done += 1
    return {"acquire_release_s": (time.perf_counter() - start) / done, "ops": done}
