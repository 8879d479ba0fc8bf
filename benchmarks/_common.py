"""Small helpers shared by the per-framework workload modules (stdlib only)."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any

SPAWNED_AT = "NBFLOW_BENCH_SPAWNED_AT"
"""Environment variable: the wall clock (``time.time()``) just before the harness started this process."""


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


def since_spawn() -> float | None:
    """Seconds since the harness started this process (interpreter start-up included), if it said when."""
    stamp = os.environ.get(SPAWNED_AT)
    return time.time() - float(stamp) if stamp else None


def build_flows(flow: Any, task: Any, wait: Any) -> dict[str, Any]:
    """The core workloads' flows, built with one framework's ``flow``, ``task`` and ``wait``.

    nbflow and Prefect share this API, so both run literally the same code.
    """
    inc_task = task(inc, name="inc")

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

    return {"empty": empty, "chain": chain, "fan": fan, "inc": inc_task}


Reps = tuple[int, int, float]  # min_reps, max_reps, budget_s of ``repeat``


def first_run(flows: dict[str, Any], steady: Reps) -> dict[str, Any]:
    """The first empty flow run of this process, then the steady state of later ones."""
    first_s = timed(flows["empty"])
    process_s = since_spawn()
    steady_s = med(repeat(flows["empty"], min_reps=steady[0], max_reps=steady[1], budget_s=steady[2]))
    return {"first_s": first_s, "process_s": process_s, "steady_s": steady_s}


def throughput(flows: dict[str, Any], n: int, *, empty: Reps, runs: Reps) -> dict[str, Any]:
    """Median times of an empty flow, an n-task chain and n submitted tasks, after one untimed run."""
    total = n * (n + 1) // 2

    def chain() -> None:
        assert flows["chain"](n) == n

    def fan() -> None:
        assert flows["fan"](n) == total

    flows["empty"]()  # first-run costs (Prefect: starting its server) are not per-task costs
    out: dict[str, Any] = {"n": n, "empty_s": med(repeat(flows["empty"], min_reps=empty[0], max_reps=empty[1],
                                                         budget_s=empty[2]))}
    for key, fn in (("chain_s", chain), ("submit_s", fan)):
        out[key] = med(repeat(fn, min_reps=runs[0], max_reps=runs[1], budget_s=runs[2]))
    return out


def inc(x: int) -> int:
    """The trivial task body every framework runs."""
    return x + 1
