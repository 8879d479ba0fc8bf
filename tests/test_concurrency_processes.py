"""Limits shared by real processes: a hammered limit never over-admits, and a killed holder's slots return."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbflow._app.wiring import build_runtime
from nbflow._core.settings import Settings
from nbflow._engine.runtime import use_runtime
from nbflow.concurrency import limits
from nbflow.concurrency.sync import concurrency
from nbflow.exceptions import AcquireConcurrencySlotTimeoutError

# One hammering process: THREADS threads each take a slot ROUNDS times and, while holding it, bump a
# counter shared with the other process (a JSON file guarded by flock), recording the most holders
# ever seen at once.
HAMMER = textwrap.dedent("""
    import fcntl, json, os, sys, threading, time
    from pathlib import Path
    from nbflow.concurrency.sync import concurrency

    work, threads, rounds = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    counter, lock_path = work / "counter.json", work / "counter.lock"

    def update(change):
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = json.loads(counter.read_text())
            data["now"] += change
            data["most"] = max(data["most"], data["now"])
            data["done"] += change < 0
            counter.write_text(json.dumps(data))

    def worker():
        for _ in range(rounds):
            with concurrency("hammer"):
                update(+1)
                time.sleep(0.002)
                update(-1)

    (work / f"ready-{os.getpid()}").touch()
    while not (work / "go").exists():  # start together with the other process
        time.sleep(0.005)
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    print("finished", flush=True)
""")

HOLD_FOREVER = textwrap.dedent("""
    import sys, time
    from nbflow.concurrency.sync import concurrency

    with concurrency("killme"):
        print("held", flush=True)
        time.sleep(120)
""")


def child_env(home: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NBFLOW_")}
    env["NBFLOW_HOME"] = str(home)
    env.update(settings)
    return env


@pytest.fixture
def home(tmp_path) -> Iterator[Path]:
    home = tmp_path / "home"
    runtime = build_runtime(
        Settings(home=home, store_enabled=False, concurrency_lease_seconds=0.6), console=False
    )
    with use_runtime(runtime):
        yield home


@pytest.mark.slow
def test_two_processes_of_twenty_threads_never_exceed_the_limit(home, tmp_path):
    limits.create("hammer", 5)
    work = tmp_path / "work"
    work.mkdir()
    (work / "counter.json").write_text(json.dumps({"now": 0, "most": 0, "done": 0}))
    threads, rounds = 20, 12
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", HAMMER, str(work), str(threads), str(rounds)],
            env=child_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(2)
    ]
    try:
        deadline = time.monotonic() + 60
        while len(list(work.glob("ready-*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        (work / "go").touch()
        outputs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err
        assert out.strip() == "finished"
    counter = json.loads((work / "counter.json").read_text())
    assert counter["done"] == 2 * threads * rounds  # all work finished
    assert counter["now"] == 0
    assert 2 <= counter["most"] <= 5  # shared, and never more than the limit at once
    shown = limits.inspect("hammer")
    assert shown.active_slots == 0 and shown.waiters == ()


@pytest.mark.slow
def test_slots_of_a_killed_holder_return_after_its_lease(home):
    limits.create("killme", 1)
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_FOREVER],
        # a lease long enough that a busy machine never lets a living holder's lease lapse
        env=child_env(home, NBFLOW_CONCURRENCY_LEASE_SECONDS="2.0"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout.readline().strip() == "held"
        [holder] = limits.inspect("killme").holders
        assert holder.pid == child.pid
        time.sleep(4.5)  # more than two leases: the living holder keeps renewing its slot
        with pytest.raises(AcquireConcurrencySlotTimeoutError, match="'killme'"):
            with concurrency("killme", timeout_seconds=0):
                pass
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        with concurrency("killme", timeout_seconds=30):  # free again once the lease runs out
            [holder] = limits.inspect("killme").holders
            assert holder.pid == os.getpid()
    finally:
        child.kill()
        child.wait(10)
