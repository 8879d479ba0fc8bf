"""nbflow's half of the comparison, plus the nbflow-only rows of the store, cache and concurrency.

The core workloads (first run, steady state, chain, submitted, RSS) use only the engine API and
fail loudly if it breaks. The feature rows use `need(...)` and skip with a note while a feature is
still being built.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from _common import Skip, inc, med, need, repeat, timed


@lru_cache(maxsize=None)
def _flows() -> dict[str, Any]:
    from nbflow import flow, task
    from nbflow.futures import wait

    inc_task = task(inc, name="inc")

    def leaf_body(root: int, i: int) -> int:
        return root + i

    leaf = task(leaf_body, name="leaf")

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

    @flow(name="fan-out-graph")
    def fan_out(roots: int, per_root: int) -> int:
        # Every leaf takes its root's future: roots * per_root edges in the run's graph.
        futures = []
        for r in range(roots):
            root = inc_task.submit(r)
            futures.append(root)
            futures.extend(leaf.submit(root, i) for i in range(per_root))
        wait(futures)
        return len(futures)

    return {"empty": empty, "chain": chain, "fan": fan, "fan_out": fan_out}


def first(steady_reps: int) -> dict:
    f = _flows()
    first_s = timed(f["empty"])
    steady = repeat(f["empty"], min_reps=steady_reps, max_reps=steady_reps * 10, budget_s=1.0)
    return {"first_s": first_s, "steady_s": med(steady)}


def throughput(n: int, parts: list[str] | None = None) -> dict:
    parts = parts or ["chain", "submit"]
    f = _flows()
    f["empty"]()
    out: dict[str, Any] = {"n": n}
    out["empty_s"] = med(repeat(f["empty"], min_reps=5, max_reps=200, budget_s=0.5))
    if "chain" in parts:
        def chain() -> None:
            assert f["chain"](n) == n

        out["chain_s"] = med(repeat(chain, min_reps=3, max_reps=30, budget_s=3.0))
    if "submit" in parts:
        total = n * (n + 1) // 2

        def fan() -> None:
            assert f["fan"](n) == total

        out["submit_s"] = med(repeat(fan, min_reps=3, max_reps=30, budget_s=3.0))
    out["store_file"] = _store_file_exists()
    out["stored_task_runs"] = _stored_task_runs()
    return out


def rss(n: int) -> dict:
    return {"wall_s": timed(lambda: _flows()["chain"](n))}


def _store_file_exists() -> bool:
    home = os.environ.get("NBFLOW_HOME")
    return bool(home) and (Path(home) / "nbflow.db").exists()


def _stored_task_runs() -> int | None:
    """Task runs in the store, read with plain sqlite3 (None if there is no readable table)."""
    if not _store_file_exists():
        return None
    import sqlite3

    try:
        with sqlite3.connect(Path(os.environ["NBFLOW_HOME"]) / "nbflow.db", timeout=10) as db:
            return int(db.execute("select count(*) from task_runs").fetchone()[0])
    except sqlite3.Error:
        return None


def big_flow(n: int) -> dict:
    """Submitted trivial tasks in one flow with the store on: does it finish, and how big it gets."""
    f = _flows()
    total = n * (n + 1) // 2
    wall = timed(lambda: _check(f["fan"](n), total))
    if not _store_file_exists():
        raise Skip("run store not built yet (no nbflow.db written)")
    return {"wall_s": wall}


def _check(value: int, expected: int) -> None:
    assert value == expected, (value, expected)


def write_run(n: int) -> dict:
    """One flow run with `n` task runs and about `n` edges, for the read benchmark."""
    roots = max(1, n // 100)
    count = _flows()["fan_out"](roots, n // roots - 1)
    if not _store_file_exists():
        raise Skip("run store not built yet (no nbflow.db written)")
    return {"task_runs": count}


def read_run(n: int) -> dict:
    """Read back the latest 'fan-out-graph' run, its task runs and its graph, cold process."""
    runs = need("nbflow.runs", "flow_runs", "flow_run", "task_runs", "graph")
    latest = runs.flow_runs(flow_name="fan-out-graph", limit=1)
    if not latest:
        raise Skip("nbflow.runs.flow_runs found no stored run to read")
    run_id = latest[0].id
    start = time.perf_counter()
    runs.flow_run(run_id)
    task_runs = runs.task_runs(run_id)
    graph = runs.graph(run_id)
    read_s = time.perf_counter() - start
    assert len(task_runs) == n, f"read {len(task_runs)} task runs, wrote {n}"
    return {"read_s": read_s, "task_runs": len(task_runs), "graph": type(graph).__name__}


def cache_hit(n: int) -> dict:
    """Per-call cost of a cache hit on a small input (key + lookup + state), inside a flow."""
    tasks_mod = need("nbflow.tasks", "task_input_hash")
    from nbflow import flow, task

    calls = {"n": 0}

    def cached_body(x: int) -> int:
        calls["n"] += 1
        return x + 1

    cached = task(cached_body, name="cached", cache_key_fn=tasks_mod.task_input_hash)

    @flow(name="cache-hits")
    def hits(n: int) -> float:
        cached(1)  # the miss that fills the cache
        start = time.perf_counter()
        for _ in range(n):
            cached(1)
        return (time.perf_counter() - start) / n

    hit_s = hits(n)
    if calls["n"] != 1:
        raise Skip(f"cache not working yet: the task body ran {calls['n']} times for {n + 1} calls")
    return {"hit_s": hit_s, "body_runs": calls["n"]}


def concurrency(n: int) -> dict:
    """Uncontended acquire + release of a limit that exists (created through the CLI)."""
    sync = need("nbflow.concurrency.sync", "concurrency")
    try:
        need("nbflow.concurrency.limits", "create").create("bench", 5)
    except Skip:
        made = subprocess.run(
            [sys.executable, "-m", "nbflow", "concurrency-limit", "create", "bench", "5"],
            capture_output=True, text=True,
        )
        if made.returncode != 0:
            last = (made.stderr.strip().splitlines() or ["no output"])[-1]
            raise Skip(f"`nbflow concurrency-limit create` not working yet: {last}") from None

    def once() -> None:
        with sync.concurrency("bench", occupy=1):
            pass

    once()
    start = time.perf_counter()
    for _ in range(n):
        once()
    return {"acquire_release_s": (time.perf_counter() - start) / n, "ops": n}
