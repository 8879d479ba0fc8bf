"""Result cache speed: a cache hit end to end (vs Prefect's on the same task), a large hit, a rerun
whose tasks are all cached, what persisting every result costs a task, and a large result persisted.

Run: ``python benchmarks/cache.py`` (add ``--quick`` for small sizes). ``run()`` returns the rows
``benchmarks/compare.py`` prints. Console logging stays on and goes to /dev/null, as in compare.py.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH_DIR.parent), str(BENCH_DIR)]

QUICK = os.environ.get("NBFLOW_BENCH_QUICK") == "1" or "--quick" in sys.argv
HITS = 300 if QUICK else 3000
CHAIN = 100 if QUICK else 1000
REPEATS = 3 if QUICK else 7


def _runtime(home: Path, **settings: Any) -> Any:
    from nbflow._app.wiring import build_runtime
    from nbflow._core.settings import Settings

    runtime = build_runtime(Settings(home=str(home), **settings))  # defaults: the run store is on
    runtime.console._stream = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    return runtime


def _hit_us(home: Path, **task_options: Any) -> float:
    """Median per-call time of a hit: ``cached(1)`` again and again inside one flow run."""
    from nbflow import flow, task
    from nbflow._engine.runtime import use_runtime

    calls = {"n": 0}

    def body(x: int) -> int:
        calls["n"] += 1
        return x + 1

    cached = task(body, name="cached", **task_options)

    @flow
    def hits(n: int) -> float:
        cached(1)  # the miss that fills the cache
        start = time.perf_counter()
        for _ in range(n):
            cached(1)
        return (time.perf_counter() - start) / n

    with use_runtime(_runtime(home)):
        samples = [hits(HITS) for _ in range(REPEATS)]
    assert calls["n"] == 1, f"the body ran {calls['n']} times: the cache did not hit"
    return statistics.median(samples) * 1e6


def _large_hit_ms(home: Path) -> tuple[float, int]:
    from nbflow import flow, task
    from nbflow._engine.runtime import use_runtime
    from nbflow.cache_policies import INPUTS

    try:
        import numpy as np

        def make(n: int) -> Any:
            return np.random.default_rng(n).random(10 * 2**20 // 8)  # 10 MiB of float64
    except ImportError:
        def make(n: int) -> Any:
            return os.urandom(10 * 2**20)

    big = task(make, name="big", cache_policy=INPUTS)

    @flow
    def once() -> float:
        start = time.perf_counter()
        big(1)
        return time.perf_counter() - start

    runtime = _runtime(home)
    with use_runtime(runtime):
        once()
        runtime.cache.flush()
        samples = [once() for _ in range(REPEATS)]
    return statistics.median(samples) * 1e3, 10 * 2**20


def _chain(home: Path, n: int, *, rerun: bool = False, **settings: Any) -> float:
    """Seconds per task of an n-task chain (minus an empty flow); with ``rerun``, every task Cached."""
    from nbflow import flow, task
    from nbflow._engine.runtime import use_runtime
    from nbflow.cache_policies import DEFAULT

    inc = task(lambda x: x + 1, name="inc", cache_policy=DEFAULT if rerun else None)

    @flow
    def chain(n: int) -> int:
        x = 0
        for _ in range(n):
            x = inc(x)
        return x

    @flow
    def empty() -> None:
        return None

    runtime = _runtime(home, **settings)
    with use_runtime(runtime):
        chain(n)  # warm up (and, for the rerun, fill the cache)
        runtime.cache.flush()
        runs, empties = [], []
        for _ in range(REPEATS):
            start = time.perf_counter()
            empty()
            empties.append(time.perf_counter() - start)
            start = time.perf_counter()
            chain(n)
            runs.append(time.perf_counter() - start)
        runtime.cache.flush()
    return (statistics.median(runs) - statistics.median(empties)) / n


def _prefect_hit_us() -> tuple[float | None, str]:
    """Prefect's hit on the same task (``cache_key_fn=task_input_hash``), in its own fresh process."""
    only = os.environ.get("NBFLOW_BENCH_ONLY")
    if only is not None and "prefect" not in only.split(","):
        return None, "not run"
    import importlib.util

    if importlib.util.find_spec("prefect") is None:
        return None, "not installed"
    from _harness import Homes, base_env, run_worker

    homes = Homes()
    try:
        result = run_worker("prefect", "cache_hit", base_env(PREFECT_HOME=str(homes.new("prefect"))), n=HITS // 3)
    finally:
        homes.cleanup()
    if result.error or result.skipped:
        return None, result.error or result.skipped or "error"
    return result.data["hit_s"] * 1e6, ""


LARGE_MB = 64 if QUICK else 500


def _large_result_rows() -> list[dict[str, Any]]:
    """A task returning a LARGE_MB MiB numpy array, persisted (the default) or not: seconds and peak
    RSS, each in a fresh process. Prefect's persist_result=True and Dask are not measured here."""
    from _harness import Homes, base_env, run_worker

    homes = Homes()
    try:
        runs = {persist: run_worker("nbflow", "large_result", base_env(
                    NBFLOW_HOME=str(homes.new("large")), NBFLOW_RESULTS_PERSIST=persist), mb=LARGE_MB)
                for persist in ("true", "false")}
    finally:
        homes.cleanup()
    for result in runs.values():
        if result.error:
            raise RuntimeError(result.error)
    on, off = runs["true"], runs["false"]
    label = f"task returning a {LARGE_MB} MiB numpy array, persisted (the default)"
    return [
        {"workload": f"{label}: flow run", "unit": "s", "nbflow": round(on.data["flow_s"], 2),
         "note": f"{on.data['on_disk_s']:.2f} s until its file is on disk (the flow does not wait for more "
                 f"than its own write); {off.data['flow_s']:.2f} s with NBFLOW_RESULTS_PERSIST=false"},
        {"workload": f"{label}: peak RSS", "unit": "MB", "nbflow": round(on.peak_rss_mb or 0),
         "target": "< 1.25 × the result over persistence off",
         "target_max": round((off.peak_rss_mb or 0) + 0.25 * LARGE_MB),
         "note": f"{off.peak_rss_mb or 0:.0f} MB with persistence off: the result is never copied to be saved"},
    ]


def run() -> list[dict[str, Any]]:
    from nbflow.cache_policies import DEFAULT
    from nbflow.tasks import task_input_hash

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="nbflow-bench-cache-") as tmp:
        root = Path(tmp)
        ours = _hit_us(root / "hit", cache_key_fn=task_input_hash)
        theirs, why = _prefect_hit_us()
        row: dict[str, Any] = {
            "workload": "cache hit end to end, small input (cache_key_fn=task_input_hash)",
            "unit": "µs", "nbflow": round(ours, 1), "prefect": round(theirs, 1) if theirs else why,
            "target": "< 150 µs and ≥ 30× less than Prefect",
            "target_max": min(150.0, theirs / 30) if theirs else 150.0,
            "note": "key + lookup + unpickle + Cached state + log line, per call inside a flow; "
                    + (f"Prefect/nbflow = {theirs / ours:.0f}×" if theirs else f"Prefect {why}"),
        }
        rows.append(row)
        rows.append({
            "workload": "cache hit end to end, cache_policy=DEFAULT (inputs + source)", "unit": "µs",
            "nbflow": round(_hit_us(root / "hit-default", cache_policy=DEFAULT), 1), "target_max": 150.0,
            "target": "< 150 µs",
        })
        ms, size = _large_hit_ms(root / "large")
        rows.append({
            "workload": "cache hit, 10 MiB result (stored as a file)", "unit": "ms", "nbflow": round(ms, 2),
            "note": f"read + unpickle {size / 2**20:.0f} MiB: {size / 2**30 / (ms / 1e3):.1f} GiB/s",
        })
        first = _chain(root / "chain-first", CHAIN)
        rerun = _chain(root / "chain-rerun", CHAIN, rerun=True)
        rows.append({
            "workload": f"rerun of a {CHAIN:,}-task chain, every task Cached, per task", "unit": "µs",
            "nbflow": round(rerun * 1e6, 1),
            "note": f"the same chain executing its tasks: {first * 1e6:.1f} µs per task",
        })
        off = _chain(root / "chain-off", CHAIN, results_persist=False)
        rows.append({
            "workload": "persisting every task result (the default), extra cost per task", "unit": "µs",
            "nbflow": round((first - off) * 1e6, 1),
            "note": f"{CHAIN:,}-task chain: {first * 1e6:.1f} µs/task persisting, {off * 1e6:.1f} µs/task with "
                    "NBFLOW_RESULTS_PERSIST=false (key + pickle on the task's thread, the write in the background)",
        })
    rows += _large_result_rows()
    return rows


if __name__ == "__main__":
    for r in run():
        value = r["nbflow"]
        peer = f"   Prefect {r['prefect']}" if "prefect" in r else ""
        print(f"{r['workload']}: {value} {r['unit']}{peer}" + (f"   ({r['note']})" if r.get("note") else ""))
