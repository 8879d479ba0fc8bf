"""Faults under the run store: a row SQLite refuses, a full disk, a foreign database (issue 12, items 2, 4, 5).

One bad row costs that row only; a full disk is called a full disk, flows keep running and their
history is written once space returns; a file that is not nbflow's is left exactly as it was.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from store_support import db, env, nbflow, recording, script

from nbflow import flow, get_run_logger, task
from nbflow._services.database import db as store_db
from nbflow.exceptions import ConfigurationError

BAD = b"\xff\xfe".decode("utf-8", "surrogateescape")  # what print() of undecodable bytes gives


# --- item 2: one bad row never drops its batch ------------------------------------------------------

def test_text_that_is_not_utf8_is_stored_with_replacement_characters(tmp_path: Path, capsys) -> None:
    @task(log_prints=True)
    def noisy(i: int) -> int:
        print(f"raw {BAD} bytes")
        return i

    @flow(flow_run_name="bytes-{label}")
    def bytes_flow(label: str) -> int:
        return sum(noisy(i) for i in range(5))

    home = tmp_path / "home"
    with recording(home) as runtime:
        assert bytes_flow(f"name{BAD}") == 10
        runtime.store.flush()
    with db(home) as conn:
        flows = conn.execute("SELECT name, state_type, parameters FROM flow_runs").fetchall()
        tasks = conn.execute("SELECT count(*) FROM task_runs WHERE state_type = 'COMPLETED'").fetchone()[0]
        lines = conn.execute("SELECT message FROM logs WHERE message LIKE 'raw %'").fetchall()
    assert [(name, state) for name, state, _p in flows] == [("bytes-name\ufffd\ufffd", "COMPLETED")]
    assert "name" in flows[0][2]
    assert tasks == 5
    assert lines == [("raw \ufffd\ufffd bytes",)] * 5
    assert "could not write" not in capsys.readouterr().err


def test_a_row_the_database_refuses_is_the_only_one_lost_and_it_is_named(tmp_path: Path, capsys) -> None:
    home = tmp_path / "home"
    store_db.open_database(home)
    with db(home) as conn:  # an injected fault: SQLite itself refuses one log line
        conn.execute("CREATE TRIGGER poison BEFORE INSERT ON logs WHEN NEW.message = 'poison'"
                     " BEGIN SELECT RAISE(ABORT, 'injected fault'); END")

    @task
    def step(i: int) -> int:
        get_run_logger().info("poison" if i == 3 else f"fine {i}")
        return i

    @flow(flow_run_name="poisoned")
    def poisoned() -> int:
        return sum(step(i) for i in range(6))

    with recording(home) as runtime:
        assert poisoned() == 15
        runtime.store.flush()
    with db(home) as conn:
        assert conn.execute("SELECT name, state_type FROM flow_runs").fetchall() == [("poisoned", "COMPLETED")]
        assert conn.execute("SELECT count(*) FROM task_runs WHERE state_type = 'COMPLETED'").fetchone()[0] == 6
        kept = [m for (m,) in conn.execute("SELECT message FROM logs WHERE message LIKE 'fine %' ORDER BY id")]
    assert kept == [f"fine {i}" for i in (0, 1, 2, 4, 5)]
    err = capsys.readouterr().err
    assert "a log line of flow run" in err and "injected fault" in err and "the rest of its batch was written" in err
    assert err.count("nbflow:") == 1


# --- item 4: a full disk ---------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 3 MB tmpfs, so writes fail with ENOSPC (needs root: skipped otherwise)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


# A flow of n tasks, named after its label (both scripts below).
WORK = """
from nbflow import flow, task

@task
def step(i: int) -> int:
    return i

@flow(flow_run_name="{label}")
def work(label: str, n: int) -> int:
    return sum(step(i) for i in range(n))
"""

FILL_THEN_FREE = WORK + """
import os, sys
from pathlib import Path

filler = Path(sys.argv[1])

def fill() -> None:
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"x" * 65536)
    except OSError:
        pass
    finally:
        os.close(fd)

work("before", 5)
fill()
work("full-1", 300)
work("full-2", 300)
print("ran while full", flush=True)
filler.unlink()  # space comes back while this process still runs
work("after", 5)
print("done", flush=True)
"""


@pytest.mark.slow
def test_a_full_disk_is_reported_as_such_flows_go_on_and_history_is_written_when_space_returns(
    tmp_path: Path, small_disk: Path,
) -> None:
    home = small_disk / "home"
    code = script(tmp_path / "fill.py", FILL_THEN_FREE)
    run = subprocess.run([sys.executable, str(code), str(small_disk / "filler")], env=env(home),
                         capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert run.returncode == 0 and run.stdout.split() == ["ran", "while", "full", "done"], run.stderr
    assert "disk" in run.stderr and "full" in run.stderr
    assert "corrupt" not in run.stderr and "move it away" not in run.stderr
    with db(home) as conn:
        flows = dict(conn.execute("SELECT name, state_type FROM flow_runs").fetchall())
        tasks = dict(conn.execute("SELECT f.name, count(*) FROM task_runs t JOIN flow_runs f ON f.id = t.flow_run_id"
                                  " WHERE t.state_type = 'COMPLETED' GROUP BY f.name").fetchall())
    assert flows == {"before": "COMPLETED", "full-1": "COMPLETED", "full-2": "COMPLETED", "after": "COMPLETED"}
    assert tasks == {"before": 5, "full-1": 300, "full-2": 300, "after": 5}


OPEN_WHILE_FULL = WORK + """
print(work("on-a-full-disk", 300), flush=True)
"""


@pytest.mark.slow
def test_a_store_on_a_full_disk_is_kept_and_flows_still_run(tmp_path: Path, small_disk: Path) -> None:
    home = small_disk / "home"
    seed = subprocess.run([sys.executable, str(script(tmp_path / "open.py", OPEN_WHILE_FULL))], env=env(home),
                          capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert seed.returncode == 0, seed.stderr
    with db(home) as conn:  # a run left Running by a dead process: opening the store must sweep (write)
        conn.execute("UPDATE flow_runs SET state_type = 'RUNNING', pid = 999999999, name = 'dead'")
    conn.close()  # the last connection: SQLite removes -wal and -shm, which a full disk cannot make again
    filler = small_disk / "filler"
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(b"x" * 65536)
                fh.flush()
        except OSError:
            pass
    run = subprocess.run([sys.executable, str(tmp_path / "open.py")], env=env(home),
                         capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert run.returncode == 0 and run.stdout.strip() == str(sum(range(300))), run.stderr
    assert "disk" in run.stderr and "full" in run.stderr
    assert "corrupt" not in run.stderr and "move it away" not in run.stderr
    assert "Traceback" not in run.stderr and "another process" not in run.stderr, run.stderr
    assert (home / "nbflow.db").exists()
    assert sorted(p.name for p in home.iterdir() if p.name.startswith("cache")) == ["cache", "cache.key"]  # kept
    while_full = nbflow(home, "flow-run", "ls")
    assert "Traceback" not in while_full.stderr and while_full.returncode in (0, 2), while_full.stderr
    filler.unlink()
    listed = nbflow(home, "flow-run", "ls")
    assert listed.returncode == 0, listed.stderr
    assert "dead" in listed.stdout  # the store and its runs are still there


# --- item 5: another program's SQLite file ---------------------------------------------------------

def _foreign(path: Path, user_version: int) -> bytes:
    with sqlite3.connect(path) as conn:  # rollback journal, as most programs leave their databases
        conn.execute("CREATE TABLE contacts (name TEXT, phone TEXT)")
        conn.execute("INSERT INTO contacts VALUES ('Ada', '123')")
        conn.execute(f"PRAGMA user_version = {user_version}")
    conn.close()
    return path.read_bytes()


@pytest.mark.parametrize("user_version", [0, 2])
def test_a_database_of_another_program_is_left_byte_for_byte_untouched(tmp_path: Path, user_version: int) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    before = _foreign(home / "nbflow.db", user_version)
    os.chmod(home / "nbflow.db", 0o644)  # its owner's choice: not nbflow's to change
    with pytest.raises(ConfigurationError) as info:
        store_db.open_database(home)
    message = str(info.value)
    assert str(home / "nbflow.db") in message and "another program" in message and "untouched" in message
    assert (home / "nbflow.db").read_bytes() == before
    assert oct(os.stat(home / "nbflow.db").st_mode & 0o777) == "0o644"
    assert sorted(p.name for p in home.iterdir()) == ["nbflow.db"]  # no -wal/-shm either


def test_the_cli_refuses_another_programs_database_in_one_line_and_leaves_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    before = _foreign(home / "nbflow.db", 0)
    done = nbflow(home, "flow-run", "ls")
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "another program" in done.stderr
    assert (home / "nbflow.db").read_bytes() == before
    assert sorted(p.name for p in home.iterdir()) == ["nbflow.db"]
