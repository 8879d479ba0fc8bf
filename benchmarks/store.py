"""Run store speed: what recording runs costs a task, a 100,000-task flow with the store on, and reading
one big run back. (The first flow run of a fresh process is a core row of compare.py.)

Run: ``python benchmarks/store.py`` (``--quick`` for small sizes). ``run()`` returns the rows
``benchmarks/compare.py`` prints. Every measurement runs in a fresh process (``--job NAME``) with a
fresh home; console logging stays on and goes to /dev/null, as in compare.py.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path[:0] = [str(REPO), str(BENCH_DIR)]
QUICK = os.environ.get("NBFLOW_BENCH_QUICK") == "1" or "--quick" in sys.argv
N = 200 if QUICK else 1000  # tasks per flow in the overhead rows
REPEATS = 3 if QUICK else 21
BIG = 10_000 if QUICK else 100_000
READ = 1_000 if QUICK else 10_000


# --- jobs (each in its own fresh process) ----------------------------------------------------------

def _runtime(home: str, store: bool) -> Any:
    from nbflow._app.wiring import build_runtime
    from nbflow._core.settings import Settings

    runtime = build_runtime(Settings(home=home, store_enabled=store))
    runtime.console._stream = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    return runtime


def _flows() -> dict[str, Any]:
    from _common import build_flows

    from nbflow import flow, task
    from nbflow.futures import wait

    flows = build_flows(flow, task, wait)  # the same empty, chain and fan as compare.py's core rows
    inc = flows["inc"]

    @flow(name="fan-out-graph")
    def graph(n: int) -> int:
        # Ten roots, each feeding a tenth of the tasks: n task runs, n - 10 edges.
        roots = [inc.submit(i) for i in range(10)]
        leaves = [inc.submit(roots[i % 10]) for i in range(n - 10)]
        wait(leaves)
        return len(roots) + len(leaves)

    return {**flows, "graph": graph}


def _cpu() -> float:
    """CPU seconds of this process, all threads (the writer's too): the overhead on a busy machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


BURST = 5
"""Flow runs per timed block: BURST back-to-back calls and then a flush, all timed: what the store
costs while a notebook runs flow after flow, the writing of every run included (a flow call waits
for its own run's commit already; the flush makes sure nothing is left for the next block)."""


def job_overhead(n: int, repeats: int) -> dict[str, Any]:
    """Per-task time of a chain and of submitted tasks, store off and on, interleaved in one process.

    Each repeat times every workload with the store off and on back to back (the order swapped every
    repeat) and gives one on/off ratio per workload: the machine's slow spells fall on both halves of
    a pair, so the median of the ratios is steadier than the ratio of two medians. Two block sizes:
    ``BURST`` runs and one run (the latency until a lone run is committed).
    """
    from nbflow._engine.runtime import use_runtime

    f = _flows()
    tmp = tempfile.mkdtemp(prefix="nbflow-bench-store-")
    runtimes = {"off": _runtime(f"{tmp}/off", False), "on": _runtime(f"{tmp}/on", True)}
    samples: dict[str, list[float]] = {}
    for _mode, runtime in runtimes.items():
        with use_runtime(runtime):
            f["chain"](n)
            f["fan"](n)
    workloads = {"empty": lambda: f["empty"](), "chain": lambda: f["chain"](n), "fan": lambda: f["fan"](n)}
    for i in range(repeats):
        for mode in ("off", "on") if i % 2 == 0 else ("on", "off"):
            runtime = runtimes[mode]
            with use_runtime(runtime):
                for burst in (BURST, 1):
                    for name, call in workloads.items():
                        cpu, start = _cpu(), time.perf_counter()
                        for _ in range(burst):
                            call()
                        if runtime.store is not None:
                            runtime.store.flush()
                        key = f"{mode}_{name}" if burst > 1 else f"{mode}_{name}_one"
                        samples.setdefault(key, []).append((time.perf_counter() - start) / burst)
                        samples.setdefault(f"{key}_cpu", []).append((_cpu() - cpu) / burst)
    out: dict[str, Any] = {k: statistics.median(v) for k, v in samples.items()}
    for name in ("chain", "fan"):
        for suffix in ("", "_one"):
            per_task = {mode: [(t - e) / n for t, e in zip(samples[f"{mode}_{name}{suffix}"], samples[f"{mode}_empty{suffix}"])]
                        for mode in runtimes}
            ratios = [b / a for a, b in zip(per_task["off"], per_task["on"])]
            out[f"{name}{suffix}_ratio"] = statistics.median(ratios)
            out[f"{name}{suffix}_ratio_quartiles"] = [round(q, 2) for q in statistics.quantiles(ratios, n=4)] if repeats >= 4 else None
            for mode in runtimes:
                out[f"{mode}_{name}{suffix}_per_task"] = statistics.median(per_task[mode])
                out[f"{mode}_{name}{suffix}_cpu_per_task"] = (out[f"{mode}_{name}{suffix}_cpu"] - out[f"{mode}_empty{suffix}_cpu"]) / n
    return out


def job_big(n: int, store: bool) -> dict[str, Any]:
    """One flow of n submitted trivial tasks: wall time and this process's peak RSS."""
    from nbflow._engine.runtime import use_runtime

    f = _flows()
    runtime = _runtime(os.environ["NBFLOW_HOME"], store)
    with use_runtime(runtime):
        start = time.perf_counter()
        assert f["fan"](n) == n * (n + 1) // 2
        wall = time.perf_counter() - start
    out: dict[str, Any] = {"wall_s": wall, "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if store:
        import sqlite3

        with sqlite3.connect(Path(os.environ["NBFLOW_HOME"]) / "nbflow.db") as db:
            out["stored_task_runs"] = db.execute("SELECT count(*) FROM task_runs").fetchone()[0]
        out["db_mb"] = (Path(os.environ["NBFLOW_HOME"]) / "nbflow.db").stat().st_size / 2**20
    return out


def job_write(n: int) -> dict[str, Any]:
    from nbflow._engine.runtime import use_runtime

    with use_runtime(_runtime(os.environ["NBFLOW_HOME"], True)):
        _flows()["graph"](n)
    return {}


def job_read(n: int, repeats: int) -> dict[str, Any]:
    """Read the stored run back in a fresh process: graph() (run + task runs + edges), cold then warm."""
    import nbflow.runs

    run_id = nbflow.runs.flow_runs(flow_name="fan-out-graph", limit=1)[0].id
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        graph = nbflow.runs.graph(run_id)
        times.append(time.perf_counter() - start)
        assert len(graph.task_runs) == n and len(graph.edges) == n - 10, (len(graph.task_runs), len(graph.edges))
    return {"cold_s": times[0], "warm_s": statistics.median(times[1:] or times)}


_JOBS = {"overhead": job_overhead, "big": job_big, "write": job_write, "read": job_read}


# --- driver ------------------------------------------------------------------------------------------

def _env(home: Path, **extra: str) -> dict[str, str]:
    from _harness import base_env

    return base_env(NBFLOW_HOME=str(home), **extra)


def _job(name: str, home: Path, **params: Any) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--job", name, json.dumps(params)], env=_env(home),
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=1800,
    )
    if done.returncode != 0:
        raise RuntimeError(f"job {name} failed: {done.stderr.strip().splitlines()[-1:] or done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="nbflow-bench-store-") as tmp:
        root = Path(tmp)
        o = _job("overhead", root / "overhead", n=N, repeats=REPEATS)
        for name, label in (("chain", f"{N:,}-task chain"), ("fan", f"{N:,} submitted tasks")):
            on, off = o[f"on_{name}_per_task"], o[f"off_{name}_per_task"]
            cpu_on, cpu_off = o[f"on_{name}_cpu_per_task"], o[f"off_{name}_cpu_per_task"]
            spread = f" (quartiles {', '.join(map(str, o[f'{name}_ratio_quartiles']))})" if o[f"{name}_ratio_quartiles"] else ""
            rows.append({
                "workload": f"store on / store off, per-task time, {label}", "unit": "×",
                "nbflow": round(o[f"{name}_ratio"], 2), "target": "≤ 1.3", "target_max": 1.3,
                "note": f"median of {REPEATS} paired blocks of {BURST} runs and the flush that commits them{spread}; "
                        f"{on * 1e6:.1f} µs/task with the store, {off * 1e6:.1f} µs/task without (minus an empty flow); "
                        f"CPU of all threads: {cpu_on * 1e6:.1f} vs {cpu_off * 1e6:.1f} µs/task ({cpu_on / cpu_off:.2f}×); "
                        f"one run until it is committed: {o[f'{name}_one_ratio']:.2f}×",
            })
        big = _job("big", root / "big-on", n=BIG, store=True)
        base = _job("big", root / "big-off", n=BIG, store=False)
        assert big["stored_task_runs"] == BIG, big
        rows.append({"workload": f"{BIG:,} submitted tasks, store on: wall", "unit": "s",
                     "nbflow": round(big["wall_s"], 1),
                     "note": f"store off: {base['wall_s']:.1f} s; nbflow.db {big['db_mb']:.0f} MB"})
        rows.append({"workload": f"{BIG:,} submitted tasks, store on: peak RSS", "unit": "MB",
                     "nbflow": round(big["maxrss_mb"]), "target": "< 400 MB", "target_max": 400.0,
                     "note": f"store off: {base['maxrss_mb']:.0f} MB (the engine's own per-task objects)"})
        _job("write", root / "read", n=READ)
        r = _job("read", root / "read", n=READ, repeats=5)
        rows.append({"workload": f"read one run of {READ:,} task runs + edges (nbflow.runs.graph)", "unit": "ms",
                     "nbflow": round(r["cold_s"] * 1000, 1), "target": "< 100 ms", "target_max": 100.0,
                     "note": f"first read in a fresh process; warm: {r['warm_s'] * 1000:.1f} ms"})
    return rows


if __name__ == "__main__":
    if "--job" in sys.argv:
        name, params = sys.argv[sys.argv.index("--job") + 1], json.loads(sys.argv[sys.argv.index("--job") + 2])
        result = _JOBS[name](**params)
        print(json.dumps(result))
    else:
        for row in run():
            print(f"{row['workload']}: {row['nbflow']} {row['unit']}" + (f"   ({row['note']})" if row.get("note") else ""))
