"""Several real processes on one store: concurrent writers, a SIGKILLed run, the crash sweep and its
hooks, heartbeats, and events still queued when the interpreter exits."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from store_support import count, db, nbflow, recording, script, start, wait_for

import nbflow.runs as runs
from nbflow import flow, task
from nbflow._services.store.sweep import sweep

pytestmark = pytest.mark.slow

FLOW_500 = """
import sys, time
from pathlib import Path
from nbflow import flow, task

@task
def inc(x):
    return x + 1

@flow(flow_run_name="burst-{who}")
def burst(who: str, n: int) -> int:
    return sum(f.result() for f in [inc.submit(i) for i in range(n)])

here, other = Path(sys.argv[1]), Path(sys.argv[2])
here.touch()
while not other.exists():  # start together, so the two really write at the same time
    time.sleep(0.005)
print(burst(sys.argv[3], 500))
"""


def test_two_processes_each_running_500_tasks_store_every_row(tmp_path: Path) -> None:
    home = tmp_path / "home"
    code = script(tmp_path / "burst.py", FLOW_500)
    a, b = tmp_path / "a.ready", tmp_path / "b.ready"
    procs = [start([str(code), str(a), str(b), "a"], home), start([str(code), str(b), str(a), "b"], home)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert out.strip() == str(500 * 501 // 2)
        assert "locked" not in err and "could not write" not in err
    with db(home) as conn:
        flows = conn.execute("SELECT name, state_type, history FROM flow_runs ORDER BY name").fetchall()
        assert [(n, s) for n, s, _h in flows] == [("burst-a", "COMPLETED"), ("burst-b", "COMPLETED")]
        assert all(h.count("[") == 3 for _n, _s, h in flows)
        assert conn.execute("SELECT count(*) FROM task_runs WHERE state_type = 'COMPLETED'").fetchone()[0] == 1000
        histories = conn.execute("SELECT history FROM task_runs").fetchall()
    assert all([e[0] for e in json.loads(f"[{h}]")] == ["PENDING", "RUNNING", "COMPLETED"] for (h,) in histories)


LONG_FLOW = """
import sys, time
from pathlib import Path
from nbflow import flow, task

@task
def step(i: int) -> int:
    if i == 300:
        Path(sys.argv[1]).touch()
        time.sleep(600)  # killed here
    return i

@flow
def long_chain(n: int) -> None:
    for i in range(n):
        step(i)

long_chain(1000)
"""


def test_a_process_killed_mid_flow_keeps_its_rows_and_the_next_process_marks_it_crashed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    reached = tmp_path / "reached-300"
    proc = start([str(script(tmp_path / "long.py", LONG_FLOW)), str(reached)], home)
    try:
        wait_for(reached.exists, what="the flow to reach task 300")
        wait_for(lambda: count(home, "SELECT count(*) FROM task_runs WHERE state_type = 'COMPLETED'") == 300,
                 what="the first 300 task runs to be committed")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with db(home) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT state_type FROM flow_runs").fetchone()[0] == "RUNNING"
    done = nbflow(home, "flow-run", "ls", "--json")  # the next nbflow process to open the store
    assert done.returncode == 0, done.stderr
    [listed] = json.loads(done.stdout)
    assert listed["state"]["name"] == "Crashed" and f"pid {proc.pid}" in listed["state"]["message"]
    with db(home) as conn:
        assert conn.execute("SELECT count(*) FROM task_runs WHERE state_type = 'COMPLETED'").fetchone()[0] == 300
        assert conn.execute("SELECT name, state_type FROM task_runs WHERE state_type != 'COMPLETED'").fetchall() == [
            ("step-301", "CRASHED")]
        crash_line = conn.execute("SELECT message FROM logs ORDER BY id DESC LIMIT 1").fetchone()[0]
    assert crash_line.startswith("Flow run crashed: its process") and "is gone" in crash_line
    history = json.loads(done.stdout)[0]["history"]
    assert [s["name"] for s in history] == ["Pending", "Running", "Crashed"]


HOOKED = """
import time
from pathlib import Path
from nbflow import flow, task

def remember(flow, flow_run, state):
    Path({out!r}).write_text(f"{{flow.name}} {{flow_run.name}} {{state.name}} {{flow_run.parameters}}")

@flow(on_crashed=[remember])
def doomed(x: int) -> None:
    Path({started!r}).touch()
    time.sleep(600)
"""


def _kill_once_running(proc: subprocess.Popen, home: Path, started: Path) -> None:
    """SIGKILL ``proc`` once its flow has started and its run row is there."""
    try:
        wait_for(started.exists, what="the flow to start")
        wait_for(lambda: count(home, "SELECT count(*) FROM flow_runs WHERE state_type = 'RUNNING'"), what="its row")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def _run_a_flow(home: Path, path: Path) -> str:
    """Run one flow in a new process (which then owes the crashed runs' hooks); returns its stderr."""
    nxt = start(["-c", "from nbflow import flow\nflow(name='next')(lambda: None)()"], home, PYTHONPATH=str(path))
    _, errors = nxt.communicate(timeout=120)
    assert nxt.returncode == 0, errors
    return errors


@pytest.mark.parametrize("importable", [True, False], ids=["module", "main"])
def test_on_crashed_hooks_run_in_the_next_process_when_the_flow_is_importable(tmp_path: Path, importable: bool) -> None:
    home, out, started = tmp_path / "home", tmp_path / "hook-ran", tmp_path / "started"
    code = HOOKED.format(out=str(out), started=str(started))
    script(tmp_path / "crashy.py", code + ("" if importable else "\ndoomed(7)\n"))
    args = ["-c", "import crashy; crashy.doomed(7)"] if importable else [str(tmp_path / "crashy.py")]
    _kill_once_running(start(args, home, PYTHONPATH=str(tmp_path)), home, started)
    # The next process that runs a flow calls them (one that only reads the history imports nothing).
    errors = _run_a_flow(home, tmp_path)
    done = nbflow(home, "flow-run", "ls", "--flow", "doomed", PYTHONPATH=str(tmp_path))
    assert done.returncode == 0 and "Crashed" in done.stdout, done.stderr
    if importable:
        name = runs_name(home)
        wait_for(out.exists, what="the hook")
        assert out.read_text() == f"doomed {name} Crashed {{'x': 7}}"
    else:
        assert not out.exists() and "hook" not in errors  # a __main__ flow is skipped, silently


HOOKED_ONCE = """
import time
from pathlib import Path
from nbflow import flow

def remember(flow, flow_run, state):
    with open({out!r}, "a") as fh:  # one line per call: called twice would show
        fh.write(f"{{flow.name}} {{flow_run.name}} {{state.name}}\\n")

@flow(on_crashed=[remember])
def doomed(x: int) -> None:
    Path({started!r}).touch()
    time.sleep(600)
"""


def test_hooks_of_a_run_a_reader_marked_crashed_are_called_once_by_the_next_process_that_runs_flows(
        tmp_path: Path) -> None:
    # A reader (`nbflow flow-run ls`) marks the crash but must import nothing, so it calls no hooks;
    # the run's hooks are owed (in the store), and exactly one later process that runs flows calls them.
    home, out, started = tmp_path / "home", tmp_path / "hook-ran", tmp_path / "started"
    script(tmp_path / "crashy.py", HOOKED_ONCE.format(out=str(out), started=str(started)))
    _kill_once_running(start(["-c", "import crashy; crashy.doomed(7)"], home, PYTHONPATH=str(tmp_path)), home, started)
    listed = nbflow(home, "flow-run", "ls", PYTHONPATH=str(tmp_path))
    assert listed.returncode == 0 and "Crashed" in listed.stdout, listed.stderr
    assert not out.exists()  # the reader marked it and called nothing
    for _ in range(2):  # two processes that run flows, one after the other
        _run_a_flow(home, tmp_path)
        wait_for(out.exists, what="the hook")
    assert out.read_text().splitlines() == [f"doomed {runs_name(home)} Crashed"]
    assert count(home, "SELECT count(*) FROM flow_runs WHERE crash_hooks_owed IS NOT NULL") == 0


def runs_name(home: Path) -> str:
    with db(home) as conn:
        return str(conn.execute("SELECT name FROM flow_runs WHERE flow_name = 'doomed'").fetchone()[0])


SLEEPER = """
import sys, time
from pathlib import Path
from nbflow import flow, task

@flow
def sleeper() -> None:
    Path(sys.argv[1]).touch()
    time.sleep(600)

sleeper()
"""


def test_a_live_run_is_left_alone_and_a_reused_pid_or_a_silent_host_is_crashed(tmp_path: Path) -> None:
    home, started = tmp_path / "home", tmp_path / "started"
    proc = start([str(script(tmp_path / "sleeper.py", SLEEPER)), str(started)], home)
    try:
        wait_for(started.exists, what="the flow to start")
        wait_for(lambda: count(home, "SELECT count(*) FROM flow_runs WHERE state_type = 'RUNNING'"), what="its row")
        conn = db(home)
        conn.isolation_level = None
        assert sweep(conn, crash_after_seconds=90) == []  # its process is alive: not crashed
        live_id = conn.execute("SELECT id FROM flow_runs").fetchone()[0]
        # Fault injection: the same pid, but recorded with another start time (a reused pid) ...
        conn.execute("UPDATE flow_runs SET pid_start = pid_start - 1000")
        # ... and two runs of another host, one silent for long, one with a fresh heartbeat.
        now = time.time()
        for run_id, beat in (("silent", now - 1000), ("chatty", now)):
            conn.execute(
                "INSERT INTO flow_runs (id, name, flow_name, state_type, state_name, pid, host, heartbeat, history)"
                " VALUES (?, ?, 'remote', 'RUNNING', 'Running', 1, 'elsewhere', ?, '[\"RUNNING\",null,1]')",
                (run_id, run_id, beat),
            )
        crashed = {c.id: c.message for c in sweep(conn, crash_after_seconds=90)}
        assert set(crashed) == {live_id, "silent"}
        assert "is gone" in crashed[live_id] and "no heartbeat" in crashed["silent"]
        assert conn.execute("SELECT state_type FROM flow_runs WHERE id = 'chatty'").fetchone()[0] == "RUNNING"
        assert sweep(conn, crash_after_seconds=90) == []  # marked once, by one sweep
        conn.close()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


@pytest.mark.skipif(not hasattr(time, "CLOCK_BOOTTIME"), reason="Linux: start times are counted from boot")
def test_start_times_are_reckoned_from_the_boot_time_of_the_moment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The wall clock is set (NTP, a laptop's resume, a VM restored from a snapshot) while the time since
    # boot runs on: the boot time in wall-clock terms moves. A process that kept the boot time it first
    # computed (a kernel open for days; pytest, minutes into the suite) took a run that a process started
    # after the move recorded for a reused pid: Crashed while it ran.
    import os
    import types

    from nbflow._services.store import processes

    before = processes.own_start_time()
    assert before is not None and processes.is_alive(os.getpid(), before)  # a boot time computed here
    real = time.time
    monkeypatch.setattr(processes, "time", types.SimpleNamespace(
        time=lambda: real() + 30, clock_gettime=time.clock_gettime, CLOCK_BOOTTIME=time.CLOCK_BOOTTIME))
    after = processes.own_start_time()  # what a run recorded now carries
    assert after is not None and abs(after - (before + 30)) < 0.5
    assert processes.is_alive(os.getpid(), after)  # and a check now agrees with it


def test_a_running_flow_records_a_heartbeat(tmp_path: Path) -> None:
    home = tmp_path / "home"

    def heartbeats() -> list[float]:
        with db(home) as conn:
            return [row[0] for row in conn.execute("SELECT heartbeat FROM flow_runs")]

    @flow
    def patient() -> bool:
        first = wait_for(heartbeats, what="the flow run's row")[0]
        wait_for(lambda: heartbeats()[0] > first, what="a later heartbeat")
        return True

    with recording(home, heartbeat_seconds=0.05):
        assert patient() is True
        assert runs.flow_runs()[0].host == socket.gethostname()


LATE_LINE = """
    import logging
    from nbflow import flow
    from nbflow._engine.context import flow_context
    from nbflow._engine.logging import log

    kept = []

    @flow
    def quick() -> None:
        ctx = flow_context()
        kept.append((ctx.runtime, ctx.flow_run))

    quick()
    runtime, flow_run = kept[0]
    # A line for the finished run, emitted after the run's own flush: only the exit flush writes it.
    log(runtime.bus, flow_run, logging.WARNING, "{message}", runtime.clock.now())
"""


def test_events_still_queued_at_exit_are_written(tmp_path: Path) -> None:
    home = tmp_path / "home"
    code = script(tmp_path / "late.py", LATE_LINE.format(message="said after the end"))
    proc = start([str(code)], home)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    with db(home) as conn:
        assert conn.execute("SELECT message FROM logs ORDER BY id DESC LIMIT 1").fetchone()[0] == "said after the end"


def test_many_processes_creating_the_schema_at_once_all_succeed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    go = tmp_path / "go"
    code = script(tmp_path / "opener.py", f"""
        import time
        from pathlib import Path
        while not Path({str(go)!r}).exists():
            time.sleep(0.002)
        from nbflow import flow, task
        @flow
        def one() -> int:
            return 1
        print(one())
        """)
    procs = [start([str(code)], home) for _ in range(4)]
    time.sleep(0.5)  # let them all import nbflow and wait at the line
    go.touch()
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0 and out.strip() == "1", err
    with sqlite3.connect(home / "nbflow.db") as conn:
        assert conn.execute("SELECT count(*) FROM flow_runs WHERE state_type = 'COMPLETED'").fetchone()[0] == 4


@flow
def tiny() -> int:
    return 1


def _run_tiny() -> None:
    assert tiny() == 1


def _run_tiny_then_log() -> None:
    # After the run's own flush; a multiprocessing child leaves with os._exit, which skips atexit.
    exec(textwrap.dedent(LATE_LINE.format(message="said after the end, in a child")), {})


@task
def one_of(i: int) -> int:
    return i


@flow
def two_hundred() -> int:
    return sum(one_of(i) for i in range(200))


def _in_child(target: Any, timeout: float = 60) -> int | None:
    """Fork a child running ``target`` and wait for it; a child still running then is killed, so a hung
    child fails the test instead of holding pytest at exit (multiprocessing joins its children)."""
    import multiprocessing

    child = multiprocessing.get_context("fork").Process(target=target)
    child.start()
    try:
        child.join(timeout)
    finally:
        if child.is_alive():
            child.kill()
            child.join(10)
    return child.exitcode


def test_a_forked_child_records_its_own_runs(tmp_path: Path) -> None:
    import os

    home = tmp_path / "home"
    with recording(home):
        tiny()  # the parent's writer thread is running when the child is forked
        assert _in_child(_run_tiny) == 0
        tiny()
        stored = runs.flow_runs(limit=None)
    assert [r.state_name for r in stored] == ["Completed"] * 3
    assert sorted(r.pid == os.getpid() for r in stored) == [False, True, True]


def test_a_process_forked_while_the_writers_write_still_records_its_runs(tmp_path: Path) -> None:
    # A flow runs on a thread, so the writers are writing batches at any moment; a fork then must wait
    # for the batch in progress (SQLite's locks would be held by a thread the child does not have),
    # not hang the child.
    import threading

    home = tmp_path / "home"
    children = []
    stop = threading.Event()
    with recording(home):

        def busy() -> None:
            while not stop.is_set():
                two_hundred()

        background = threading.Thread(target=busy)
        background.start()
        try:
            for _ in range(20):
                time.sleep(0.01)
                started = time.monotonic()
                children.append((_in_child(_run_tiny), time.monotonic() - started))
        finally:
            stop.set()
            background.join()
        stored = runs.flow_runs(flow_name="tiny", limit=None)
    assert [code for code, _ in children] == [0] * 20
    assert max(seconds for _, seconds in children) < 5, children  # a hung child waits 5 s for its writer
    assert len(stored) == 20 and {r.state_name for r in stored} == {"Completed"}


def test_a_multiprocessing_child_writes_what_it_queued_when_it_ends(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with recording(home):
        assert _in_child(_run_tiny_then_log) == 0
    with db(home) as conn:
        assert conn.execute("SELECT message FROM logs ORDER BY id DESC LIMIT 1").fetchone()[0] == "said after the end, in a child"


def test_a_fork_does_not_wait_for_a_writer_that_waits_for_another_process(tmp_path: Path) -> None:
    import contextvars
    import multiprocessing
    import threading

    home = tmp_path / "home"
    with recording(home) as runtime:
        tiny()
        with db(home) as blocker:
            blocker.execute("BEGIN IMMEDIATE")  # another program holds the write lock
            ended = threading.Thread(target=contextvars.copy_context().run, args=(tiny,))  # its writer waits
            ended.start()
            time.sleep(0.5)
            started = time.monotonic()
            child = multiprocessing.get_context("fork").Process(target=time.sleep, args=(0,))
            child.start()
            forked_after = time.monotonic() - started
            try:
                child.join(60)
            finally:
                if child.is_alive():
                    child.kill()  # never leave pytest waiting for it at exit
            blocker.rollback()
            ended.join(60)
        assert runtime.store.flush()
        assert len(runs.flow_runs(flow_name="tiny", limit=None)) == 2
    assert child.exitcode == 0
    assert forked_after < 1.0  # the writer holds its fork guard only for short slices of its wait
