"""A process forked while nbflow works on other threads: the child must run flows and exit, never hang.

``os.fork()`` keeps only the calling thread. Any SQLite mutex another thread held at that moment stays
locked forever in the child, and CPython frees the other threads' thread-locals in the child (which
closes diskcache's per-thread connections). Each child here must run a flow (store and result cache
both written) and exit 0 within a deadline; a hung child is killed, so the test fails instead of hanging.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from store_support import db, recording

from nbflow import flow, task
from nbflow._core.forkguard import FORK_WAIT_S
from nbflow.cache_policies import INPUTS

pytestmark = pytest.mark.slow

CHILD_DEADLINE_S = 30.0  # a healthy child takes well under a second, even on a loaded 2-core machine
FORKS = 100


@task(cache_policy=INPUTS)
def square(i: int) -> int:
    return i * i


@flow
def squares(n: int, offset: int) -> int:
    # Hits (reads) for the first half, misses (writes) for the rest; tasks on pool threads, so
    # threads that read the cache start and end all the time.
    return sum(f.result() for f in [square.submit(offset + i) for i in range(n)])


@flow
def in_child(pid_marker: int) -> int:
    return square(pid_marker) + square(pid_marker + 1)


def _child(home: str, offset: int) -> None:
    """What every forked child does: run a flow that reads and writes both the store and the cache."""
    marker = 10_000_000 + offset
    assert in_child(marker) == marker**2 + (marker + 1) ** 2
    assert in_child(marker) == marker**2 + (marker + 1) ** 2  # the second time from the cache


@contextmanager
def _busy(runtime: Any, work: list[Callable[[], None]]) -> Iterator[list[BaseException]]:
    """Run each of ``work`` in a loop on its own thread (in ``runtime``) until the block ends."""
    import contextvars

    stop = threading.Event()
    errors: list[BaseException] = []

    def loop(fn: Callable[[], None]) -> None:
        try:
            while not stop.is_set():
                fn()
        except BaseException as exc:  # reported by the test, not lost on a thread
            errors.append(exc)

    threads = [threading.Thread(target=contextvars.copy_context().run, args=(loop, fn), daemon=True) for fn in work]
    for thread in threads:
        thread.start()
    try:
        yield errors
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)


def _fork_children(target: Callable[..., None], count: int, args: Callable[[int], tuple]) -> list[tuple[int, Any, float, float]]:
    """Fork ``count`` children one after another; each must end within the deadline or is killed.
    Returns ``(index, exit code or "hung", seconds to fork, seconds to the child's end)``."""
    context = multiprocessing.get_context("fork")
    results = []
    for n in range(count):
        child = context.Process(target=target, args=args(n))
        started = time.monotonic()
        child.start()
        forked = time.monotonic() - started
        try:
            child.join(CHILD_DEADLINE_S)
        finally:
            if child.is_alive():
                child.kill()  # hung: fail this test, never leave pytest waiting for the child at exit
                child.join(10)
        results.append((n, "hung" if child.exitcode == -9 else child.exitcode, forked, time.monotonic() - started))
        if results[-1][1] != 0:
            break  # one is enough to fail; the rest would only make a failing run slower
    return results


def test_children_forked_while_flows_write_the_store_and_cache_and_readers_read_all_finish(tmp_path: Path) -> None:
    home = tmp_path / "home"
    counter = iter(range(10**9))

    with recording(home) as runtime:
        squares(50, 0)  # some entries to hit

        def run_flows() -> None:
            squares(100, (next(counter) % 50) * 50)

        def read_store() -> None:
            with runtime.store.reading() as conn:
                conn.execute("SELECT count(*) FROM task_runs").fetchone()

        def read_cache() -> None:
            runtime.cache.disk.read("no-such-key", time.time())

        with _busy(runtime, [run_flows, read_store, read_cache]) as errors:
            results = _fork_children(_child, FORKS, lambda n: (str(home), n))
        assert not errors, errors
        runtime.store.flush()
    bad = [r for r in results if r[1] != 0]
    assert not bad, f"a child failed or hung (index, exit code, seconds to fork, seconds): {bad}"
    # A fork waits for the SQLite work in progress, milliseconds; FORK_WAIT_S would mean two guards
    # waited for each other until the fork gave up.
    slowest = max(results, key=lambda r: r[2])
    assert slowest[2] < FORK_WAIT_S - 1, f"a fork waited for its guards until it gave up: {slowest}"
    with db(home) as conn:
        stored = conn.execute("SELECT count(*) FROM flow_runs WHERE flow_name = 'in-child' AND state_type = 'COMPLETED'").fetchone()[0]
    assert stored == 2 * FORKS


def test_a_child_forked_during_a_result_write_does_not_hold_its_lock(tmp_path: Path) -> None:
    # The write lock (flock) of a result file says "still being written" to other processes. A child
    # forked mid-write inherited the descriptor, so readers waited for the child to exit.
    import os
    import signal

    from nbflow._services.cache import files
    from nbflow._services.cache.signing import Signer

    folder = tmp_path / "cache"
    folder.mkdir()
    parts = files.split(b"x" * (files.MIN_FILE_SIZE * 4))
    file = files.ResultFile(folder, parts, Signer(tmp_path), "key")
    pid = os.fork()
    if pid == 0:  # the child outlives the write, doing nothing with the file
        time.sleep(30)
        os._exit(0)
    try:
        file.write()
        file.close()
        assert files.wait_written(folder, file.filename, timeout=5.0)  # at once, not when the child exits
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


HELD_DURING_A_FORK = """
import os, signal, sys, threading, time
from pathlib import Path
from nbflow import flow, task
import nbflow._engine.runtime as runtime_module

@task
def one(i: int) -> int:
    return i

@flow
def small(n: int) -> int:
    return sum(one(i) for i in range(n))

class SlowStream:  # the injected fault: a console whose writes take a while
    def write(self, text):
        time.sleep(0.2)
        sys.stderr.write(text)
    def flush(self):
        pass

which = sys.argv[1]
small(1)  # the runtime exists; its console is ours
if which == "console":
    runtime_module.default_runtime().console._stream = SlowStream()
    holder = threading.Thread(target=small, args=(3,))  # its lines are being written while we fork
else:  # "runtime": another thread builds a runtime (importing a module, as that does) while we fork
    Path("slowmod.py").write_text("import time\\ntime.sleep(0.5)\\n")
    sys.path.insert(0, os.getcwd())
    def build():
        with runtime_module._default_lock:
            import slowmod  # noqa: F401
    holder = threading.Thread(target=build)
holder.start()
time.sleep(0.1)
pid = os.fork()
if pid == 0:
    signal.alarm(20)  # a hung child dies (exit by signal) instead of hanging the test
    if which == "console":
        small(2)
    else:
        import slowmod  # noqa: F401
    os._exit(0)
holder.join()
_, status = os.waitpid(pid, 0)
print("child", status, flush=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize("which", ["console", "runtime"])
def test_a_fork_waits_for_a_console_line_or_a_runtime_being_built_on_another_thread(tmp_path: Path, which: str) -> None:
    # A child inherited the console's lock (or stderr's) held by a thread writing a line, or the
    # import lock of a module that a thread building the default runtime was importing, and hung on
    # its first line or import. A fork now waits for both (injected: a slow console, a slow import).
    import os
    import subprocess
    import sys

    script = tmp_path / "held.py"
    script.write_text(HELD_DURING_A_FORK)
    env = {**os.environ, "NBFLOW_HOME": str(tmp_path / "home")}
    run = subprocess.run([sys.executable, str(script), which], env=env, capture_output=True, text=True,
                         timeout=120, cwd=str(tmp_path))
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "child 0", run.stdout + run.stderr
