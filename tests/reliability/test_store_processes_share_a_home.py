"""Processes sharing one home: no run is lost, limits hold, and a locked store keeps its promise.

Issue 12, items 1 and 3: every connection a process opens must leave the others' WAL intact (a plain
``open()``/``close()`` of ``nbflow.db`` drops the process's POSIX locks), and what a process cannot
commit before it exits is spooled under the home and written by the next process that opens it.
"""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from store_support import count, db, env, script, start, wait_for

from nbflow._services.database import db as store_db

pytestmark = pytest.mark.slow

# --- item 1: a second connection in a process never drops its locks -------------------------------

PEEK = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], timeout=30)
print(conn.execute("SELECT count(*) FROM flow_runs").fetchone()[0])
conn.close()  # the last connection of this process: it folds the WAL back if it can lock the file
"""


def test_a_second_open_in_a_process_keeps_its_wal_for_the_first_connection(tmp_path: Path) -> None:
    """Open, open again, let another process come and go: this process's later writes are still seen."""
    home = tmp_path / "home"
    path = store_db.open_database(home)
    first = store_db.connect(path)
    insert = ("INSERT INTO flow_runs (id, name, flow_name) VALUES (?, ?, 'f')")
    store_db.write(first, lambda c: c.execute(insert, ("run-1", "one")))
    store_db.open_database(home)  # what every Store, reader and limit service does in the same process
    peek = script(tmp_path / "peek.py", PEEK)
    out = subprocess.run([sys.executable, str(peek), str(path)], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "1", out.stderr
    store_db.write(first, lambda c: c.execute(insert, ("run-2", "two")))
    out = subprocess.run([sys.executable, str(peek), str(path)], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "2", "a row committed by this process is invisible to others (WAL unlinked)"
    first.close()


WORKER = """
import os, sys, time
from pathlib import Path
from nbflow import flow, task
from nbflow.concurrency.sync import concurrency
import nbflow.runs

who, holders, flows, tasks = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
fd = os.open(holders, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

@task
def work(i: int) -> int:
    if i % 10 == 0:  # every tenth task holds a slot of the shared limit (limit 3 across processes)
        with concurrency("gate", occupy=1):
            os.write(fd, f"+ {who}-{i}\\n".encode())
            time.sleep(0.002)
            os.write(fd, f"- {who}-{i}\\n".encode())
    return i

@flow(flow_run_name="{who}-{k}")
def batch(who: str, k: int, n: int) -> int:
    return sum(f.result() for f in [work.submit(i) for i in range(n)])

for k in range(flows):
    assert batch(who, k, tasks) == tasks * (tasks - 1) // 2
    nbflow.runs.flow_runs(limit=3)  # a reader opens between flows, while others start and exit
    time.sleep(0.5)  # as a notebook pauses between cells: other processes come and go meanwhile
print("done", flush=True)
"""


def _create_limit(home: Path, name: str, slots: int) -> None:
    conn = db(home)  # closed at once: a connection kept open would hold a lock the test depends on
    with conn:
        conn.execute("INSERT INTO concurrency_limit (name, slots, created, updated) VALUES (?, ?, 0, 0)", (name, slots))
    conn.close()


def _most_at_once(lines: list[str]) -> int:
    now = most = 0
    for line in lines:
        now += 1 if line.startswith("+") else -1
        most = max(most, now)
    return most


def test_processes_starting_and_exiting_on_one_home_lose_no_run_and_keep_the_limit(tmp_path: Path) -> None:
    """6 processes, staggered so some exit while others write, each 2 flows of 200 tasks."""
    home = tmp_path / "home"
    store_db.open_database(home)
    _create_limit(home, "gate", 3)
    worker = script(tmp_path / "worker.py", WORKER)
    holders = tmp_path / "holders.txt"
    procs: list[tuple[str, subprocess.Popen[str]]] = []
    for i in range(6):
        who = f"w{i}"
        procs.append((who, start([str(worker), who, str(holders), "2", "200"], home)))
        if i % 2:  # the next pair starts once the previous one is writing: exits overlap with writes
            wait_for(lambda w=who: count(home, "SELECT count(*) FROM flow_runs WHERE name LIKE ?", f"{w}-%"),
                     timeout=120, what=f"{who}'s first flow run")
    # Meanwhile others read and go, as a monitor or `nbflow flow-run ls` would: each closes its last
    # connection, and folds the WAL back if no other process holds its lock on the database.
    give_up = time.monotonic() + 600
    while any(proc.poll() is None for _who, proc in procs) and time.monotonic() < give_up:
        count(home, "SELECT count(*) FROM task_runs")
        time.sleep(0.02)
    for who, proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0 and out.strip() == "done", f"{who}: {err}"
    with db(home) as conn:
        flows = dict(conn.execute("SELECT name, state_type FROM flow_runs").fetchall())
        tasks = dict(conn.execute(
            "SELECT f.name, count(t.id) FROM flow_runs f JOIN task_runs t ON t.flow_run_id = f.id"
            " WHERE t.state_type = 'COMPLETED' GROUP BY f.name").fetchall())
        left = conn.execute("SELECT count(*) FROM concurrency_slot").fetchone()[0]
    expected = {f"w{i}-{k}" for i in range(6) for k in range(2)}
    assert flows == {name: "COMPLETED" for name in expected}
    assert tasks == {name: 200 for name in expected}
    lines = holders.read_text().splitlines()
    assert len(lines) == 6 * 2 * 20 * 2
    assert _most_at_once(lines) <= 3
    assert left == 0  # every process handed its slots back


# --- item 3: another process holds the write lock past this process's exit -------------------------

HOLDER = """
import sqlite3, sys, time
from pathlib import Path
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
Path(sys.argv[2]).touch()
while not Path(sys.argv[3]).exists():
    time.sleep(0.01)
conn.execute("COMMIT")
"""

SHORT_FLOW = """
from nbflow import flow, task

@task
def double(x: int) -> int:
    return 2 * x

@flow(flow_run_name="while-locked")
def locked(n: int) -> int:
    return sum(double(i) for i in range(n))

print(locked(20), flush=True)
"""

OPEN = "from nbflow._engine.runtime import default_runtime; default_runtime(); print('opened', flush=True)"


def _open_home(home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", OPEN], env=env(home), capture_output=True, text=True,
                          timeout=120, cwd=str(home.parent))


def _spools(home: Path) -> list[Path]:
    return sorted((home / "spool").glob("*.json")) if (home / "spool").exists() else []


def _run_while_locked(tmp_path: Path, home: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run SHORT_FLOW in a fresh process while another process holds BEGIN IMMEDIATE; returns it and
    how long it took, the lock still held."""
    store_db.open_database(home)
    ready, release = tmp_path / "locked", tmp_path / "release"
    holder = subprocess.Popen([sys.executable, str(script(tmp_path / "holder.py", HOLDER)),
                               str(home / "nbflow.db"), str(ready), str(release)])
    wait_for(ready.exists, what="the lock holder")
    began = time.monotonic()
    run = subprocess.run([sys.executable, str(script(tmp_path / "short.py", SHORT_FLOW))], env=env(home),
                         capture_output=True, text=True, timeout=120, cwd=str(tmp_path))
    took = time.monotonic() - began
    release.touch()
    holder.wait(timeout=60)
    return run, took


def test_a_run_finished_while_another_process_holds_the_lock_is_spooled_and_written_later(tmp_path: Path) -> None:
    home = tmp_path / "home"
    run, took = _run_while_locked(tmp_path, home)
    assert run.returncode == 0 and run.stdout.strip() == str(2 * sum(range(20))), run.stderr
    assert took < 15.0  # the flow's own 5 s wait for its commit, then a short wait at exit
    spools = _spools(home)
    assert len(spools) == 1
    assert stat.S_IMODE(spools[0].stat().st_mode) == 0o600
    assert f"1 run spooled to {spools[0]}; it will be written by the next nbflow process that opens this home" \
        in run.stderr
    assert "will be written when it frees up" not in run.stderr.split("spooled")[-1]
    assert count(home, "SELECT count(*) FROM task_runs") == 0  # nothing could be committed meanwhile

    opened = _open_home(home)
    assert opened.returncode == 0, opened.stderr
    assert _spools(home) == []
    with db(home) as conn:
        assert conn.execute("SELECT name, state_type FROM flow_runs").fetchall() == [("while-locked", "COMPLETED")]
        assert conn.execute("SELECT count(*) FROM task_runs WHERE state_type = 'COMPLETED'").fetchone()[0] == 20


def test_a_spool_replayed_twice_writes_its_runs_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    run, _took = _run_while_locked(tmp_path, home)
    assert run.returncode == 0, run.stderr
    (spool,) = _spools(home)
    copy = tmp_path / "spool-copy.json"
    shutil.copy2(spool, copy)
    assert _open_home(home).returncode == 0
    once = _dump(home)
    assert len(once[0]) == 1 and len(once[1]) == 20
    shutil.copy2(copy, spool)  # as if the process that replayed it died before it could remove it
    again = _open_home(home)
    assert again.returncode == 0, again.stderr
    assert _spools(home) == []
    assert _dump(home) == once


def _dump(home: Path) -> tuple[list[tuple], ...]:
    with db(home) as conn:
        return tuple(conn.execute(sql).fetchall() for sql in (
            "SELECT id, state_type, history FROM flow_runs ORDER BY id",
            "SELECT id, state_type, history FROM task_runs ORDER BY id",
            "SELECT flow_run_id, task_run_id, message FROM logs ORDER BY id",
        ))


def test_a_half_written_spool_is_set_aside_with_a_warning_and_the_store_opens(tmp_path: Path) -> None:
    home = tmp_path / "home"
    run, _took = _run_while_locked(tmp_path, home)
    assert run.returncode == 0, run.stderr
    (spool,) = _spools(home)
    text = spool.read_text()
    spool.write_text(text[: len(text) // 2])
    opened = _open_home(home)
    assert opened.returncode == 0 and "opened" in opened.stdout, opened.stderr
    assert str(spool) in opened.stderr and "cannot be read" in opened.stderr
    assert _spools(home) == []  # set aside, so the warning is not repeated by every process
    assert count(home, "SELECT count(*) FROM task_runs") == 0
    second = _open_home(home)
    assert second.returncode == 0 and "spool" not in second.stderr


def test_a_spool_does_not_hold_up_a_process_while_the_lock_is_still_held(tmp_path: Path) -> None:
    # Spools exist because another process held the lock, so it may hold it still: the next process
    # must start its flows at once (it once retried the replay for 300 s), and leave the spool.
    home = tmp_path / "home"
    run, _took = _run_while_locked(tmp_path, home)
    assert run.returncode == 0, run.stderr
    (spool,) = _spools(home)
    ready, release = tmp_path / "locked-again", tmp_path / "release-again"
    holder = subprocess.Popen([sys.executable, str(script(tmp_path / "holder.py", HOLDER)),
                               str(home / "nbflow.db"), str(ready), str(release)])
    try:
        wait_for(ready.exists, what="the lock holder")
        began = time.monotonic()
        opened = _open_home(home)
        took = time.monotonic() - began
    finally:
        release.touch()
        holder.wait(timeout=60)
    assert opened.returncode == 0 and "opened" in opened.stdout, opened.stderr
    assert took < 30, f"opening the home waited {took:.0f} s for the lock"
    assert f"could not write the spooled run history {spool} yet" in opened.stderr
    assert _spools(home) == [spool]  # kept for the next process
    assert _open_home(home).returncode == 0
    assert _spools(home) == []
    assert count(home, "SELECT count(*) FROM task_runs WHERE state_type = 'COMPLETED'") == 20


def test_a_spool_of_another_shape_is_set_aside_and_the_store_opens(tmp_path: Path) -> None:
    home = tmp_path / "home"
    store_db.open_database(home)
    (home / "spool").mkdir(mode=0o700)
    odd = home / "spool" / "1-2-odd.json"
    odd.write_text('{"format": 1, "id": "x", "batches": ["junk"]}')  # valid JSON, not a spool
    opened = _open_home(home)
    assert opened.returncode == 0 and "opened" in opened.stdout, opened.stderr
    assert str(odd) in opened.stderr and "cannot be read" in opened.stderr
    assert _spools(home) == []


def test_a_clean_exit_folds_the_wal_back(tmp_path: Path) -> None:
    """Performance note of issue 12: the last writer of a process checkpoints (TRUNCATE) as it closes."""
    home = tmp_path / "home"
    run = subprocess.run([sys.executable, str(script(tmp_path / "short.py", SHORT_FLOW))], env=env(home),
                         capture_output=True, text=True, timeout=120, cwd=str(tmp_path))
    assert run.returncode == 0, run.stderr
    wal = home / "nbflow.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0


HOLD_AT_EXIT = """
import sys, threading, time
from pathlib import Path
from nbflow.concurrency.sync import concurrency

def hold():
    with concurrency("one", occupy=1):
        Path(sys.argv[1]).touch()
        time.sleep(600)  # still holding when the main thread ends the process

threading.Thread(target=hold, daemon=True).start()
while not Path(sys.argv[1]).exists():
    time.sleep(0.01)
"""


def test_a_slot_held_by_a_process_that_exits_cleanly_is_released_at_exit(tmp_path: Path) -> None:
    home = tmp_path / "home"
    store_db.open_database(home)
    _create_limit(home, "one", 1)
    proc = start([str(script(tmp_path / "hold.py", HOLD_AT_EXIT)), str(tmp_path / "holding")], home)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert count(home, "SELECT count(*) FROM concurrency_slot") == 0  # not left to a 30 s lease
