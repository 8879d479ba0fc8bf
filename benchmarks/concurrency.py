"""Concurrency limits: the cost of a slot, beside Prefect's ``concurrency()`` on the same machine.

``run() -> list[dict]`` gives rows for benchmarks/compare.py; ``python benchmarks/concurrency.py``
prints them. Rows:

- uncontended ``with concurrency("bench"):`` acquire + release (target < 1 ms);
- an uncontended ``rate_limit()`` call;
- the first ``concurrency()`` of a fresh process: import + open the store (nbflow) or import + start
  the ephemeral API server (Prefect has no slot without its server);
- slots handed over per second when 2 processes x 20 threads hammer a limit of 5 (nbflow only).

Prefect runs in a subprocess with a throw-away PREFECT_HOME and its ephemeral server, analytics off;
when it is not installed its cells say so.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH_DIR.parent), str(BENCH_DIR)]

QUICK = os.environ.get("NBFLOW_BENCH_QUICK") == "1" or "--quick" in sys.argv
ACQUIRES = 500 if QUICK else 3000  # uncontended acquire + release pairs timed for nbflow
HAMMER_SECONDS = 1.0 if QUICK else 3.0

_PREFECT = textwrap.dedent("""
    import json, statistics, sys, time
    start = time.perf_counter()
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.concurrency.sync import concurrency, rate_limit
    imported = time.perf_counter()
    with get_client(sync_client=True) as client:  # starts the ephemeral API server
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name="bench", limit=5))
        client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name="rate", limit=1_000_000, slot_decay_per_second=1000))
    with concurrency("bench", occupy=1, strict=True):
        pass
    first = time.perf_counter()
    def timed(fn, n, budget):
        out, begin = [], time.perf_counter()
        while len(out) < n and (len(out) < 10 or time.perf_counter() - begin < budget):
            t = time.perf_counter(); fn(); out.append(time.perf_counter() - t)
        return out
    def slot():
        with concurrency("bench", occupy=1, strict=True):
            pass
    acquire = timed(slot, 200, 10.0)
    rate = timed(lambda: rate_limit("rate", occupy=1, strict=True), 100, 5.0)
    print(json.dumps({
        "import_s": imported - start, "first_s": first - start,
        "acquire_release_s": statistics.median(acquire), "rate_limit_s": statistics.median(rate),
        "samples": len(acquire),
    }))
""")

_NBFLOW_FIRST = textwrap.dedent("""
    import json, time
    start = time.perf_counter()
    from nbflow.concurrency.sync import concurrency
    with concurrency("bench"):
        pass
    print(json.dumps({"first_s": time.perf_counter() - start}))
""")

_HAMMER = textwrap.dedent("""
    import os, sys, threading, time
    from pathlib import Path
    from nbflow.concurrency.sync import concurrency
    work, seconds = Path(sys.argv[1]), float(sys.argv[2])
    (work / f"ready-{os.getpid()}").touch()
    while not (work / "go").exists():
        time.sleep(0.002)
    end = time.monotonic() + seconds
    counts = [0] * 20
    def worker(i):
        while time.monotonic() < end:
            with concurrency("hammer"):
                counts[i] += 1
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
    for t in threads: t.start()
    for t in threads: t.join()
    print(sum(counts))
""")


def _env(home: Path, **extra: str) -> dict[str, str]:
    from _harness import base_env  # also Prefect's ephemeral-server settings, analytics off

    return base_env(NBFLOW_HOME=str(home), **extra)


def _nbflow(root: Path) -> dict[str, Any]:
    """Uncontended costs in this process, against a fresh home."""
    from nbflow._app.wiring import build_runtime
    from nbflow._core.settings import Settings
    from nbflow._engine.runtime import use_runtime
    from nbflow.concurrency import limits
    from nbflow.concurrency.sync import concurrency, rate_limit

    home = root / "nbflow"
    runtime = build_runtime(Settings(home=home, store_enabled=False), console=False)
    with use_runtime(runtime):
        limits.create("bench", 5)
        limits.create("rate", 1_000_000, slot_decay_per_second=1000)
        limits.create("hammer", 5)
        for _ in range(100):  # warm: connection, statement cache
            with concurrency("bench"):
                pass
        batches = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(ACQUIRES // 5):
                with concurrency("bench"):
                    pass
            batches.append((time.perf_counter() - start) / (ACQUIRES // 5))
        probes = _probe_cost(runtime)
        rates = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(200):
                rate_limit("rate")
            rates.append((time.perf_counter() - start) / 200)
    first = json.loads(subprocess.run(
        [sys.executable, "-c", _NBFLOW_FIRST], env=_env(home), capture_output=True, text=True, check=True,
    ).stdout)["first_s"]
    return {
        "acquire_release_s": statistics.median(batches), "rate_limit_s": statistics.median(rates),
        "probe_s": probes,
        "first_s": first, "handoffs_per_s": _hammer(home, root),
    }


def _probe_cost(runtime: Any) -> float:
    """One poll of a waiter that cannot go yet: the read it repeats every 5-100 ms while waiting."""
    from nbflow._app.wiring import limits_for
    from nbflow._services.limits import storage as _storage
    from nbflow.concurrency.sync import concurrency

    service = limits_for(runtime)
    with concurrency("bench", occupy=5):  # full: the probe says "not yet"
        req = service.request(("bench",), 1, "lease")
        start = time.perf_counter()
        for _ in range(1000):
            with service.db() as conn:
                _storage.evaluate(conn, req, service.clock.now(), None)
        return (time.perf_counter() - start) / 1000


def _hammer(home: Path, root: Path) -> float:
    work = root / "hammer"
    work.mkdir()
    procs = [
        subprocess.Popen([sys.executable, "-c", _HAMMER, str(work), str(HAMMER_SECONDS)], env=_env(home),
                         stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    while len(list(work.glob("ready-*"))) < 2:
        time.sleep(0.01)
    (work / "go").touch()
    total = sum(int(p.communicate(timeout=120)[0].strip()) for p in procs)
    return total / HAMMER_SECONDS


def _prefect(root: Path) -> dict[str, Any] | str:
    """Prefect's numbers from a fresh process, or why there are none."""
    import importlib.util

    only = os.environ.get("NBFLOW_BENCH_ONLY")
    if only is not None and "prefect" not in only.split(","):
        return "not run"
    if importlib.util.find_spec("prefect") is None:
        return "not installed"
    env = _env(root / "unused", PREFECT_HOME=str(root / "prefect"))
    try:
        done = subprocess.run([sys.executable, "-c", _PREFECT], env=env, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        return "timed out"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"failed: {last[:80]}"
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def run() -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="nbflow-bench-concurrency-") as tmp:
        root = Path(tmp)
        ours = _nbflow(root)
        theirs = _prefect(root)

    def peer(key: str, scale: float) -> float | str:
        return theirs[key] * scale if isinstance(theirs, dict) else theirs

    note = ""
    if isinstance(theirs, dict):
        note = (f"Prefect needs its API server for every slot: here the ephemeral one took "
                f"{theirs['first_s'] - theirs['import_s']:.1f} s to start (import {theirs['import_s']:.1f} s)")
    return [
        {"workload": "concurrency slot, uncontended acquire + release", "unit": "µs",
         "nbflow": ours["acquire_release_s"] * 1e6, "prefect": peer("acquire_release_s", 1e6),
         "target": "< 1,000 µs", "target_max": 1000.0, "note": note},
        {"workload": "rate_limit(), uncontended call", "unit": "µs",
         "nbflow": ours["rate_limit_s"] * 1e6, "prefect": peer("rate_limit_s", 1e6)},
        {"workload": "one poll of a waiting waiter (read-only probe)", "unit": "µs",
         "nbflow": ours["probe_s"] * 1e6, "prefect": "—",
         "note": "a waiter polls every 5 ms at the head of the queue, up to every 100 ms further back"},
        {"workload": "first concurrency() in a fresh process (import + store / API server)", "unit": "s",
         "nbflow": ours["first_s"], "prefect": peer("first_s", 1.0)},
        {"workload": "slots handed over, 2 processes x 20 threads on a limit of 5", "unit": "per s",
         "nbflow": ours["handoffs_per_s"], "prefect": "—",
         "note": "higher is better; empty with-blocks, so this is the limit's own throughput"},
    ]


if __name__ == "__main__":
    for row in run():
        print(json.dumps(row, ensure_ascii=False))
