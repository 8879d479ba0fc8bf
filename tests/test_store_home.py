"""The home folder and nbflow.db: created private and in WAL mode; anything unusable is refused with
one clear error naming the path, and the file is never changed."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from store_support import db, nbflow, recording

from nbflow import flow
from nbflow._app.wiring import build_runtime
from nbflow._core.settings import Settings
from nbflow._services.database.migrations import LATEST
from nbflow.exceptions import ConfigurationError


@flow
def hello() -> str:
    return "hi"


def open_fails(home: Path) -> str:
    with pytest.raises(ConfigurationError) as info:
        build_runtime(Settings(home=str(home)), console=False)
    return str(info.value)


def test_a_fresh_home_is_created_private_with_a_wal_database(tmp_path: Path) -> None:
    home = tmp_path / "deep" / "home"
    with recording(home):
        assert hello() == "hi"
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    with db(home) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST
        assert conn.execute("SELECT name, state_type FROM flow_runs").fetchone()[1] == "COMPLETED"


def test_a_home_that_is_a_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.write_text("my notes")
    message = open_fails(home)
    assert str(home) in message and "is a file" in message
    assert home.read_text() == "my notes"


def test_a_database_that_is_not_sqlite_is_refused_and_left_alone(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "nbflow.db").write_bytes(b"not a database, but precious" * 100)
    message = open_fails(home)
    assert str(home / "nbflow.db") in message and "not an SQLite database" in message
    assert (home / "nbflow.db").read_bytes() == b"not a database, but precious" * 100
    assert sorted(p.name for p in home.iterdir()) == ["nbflow.db"]  # no -wal/-shm files either


def test_a_corrupt_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    garbage = b"SQLite format 3\x00" + bytes(range(256)) * 40
    (home / "nbflow.db").write_bytes(garbage)
    message = open_fails(home)
    assert str(home / "nbflow.db") in message and "corrupt" in message
    assert (home / "nbflow.db").read_bytes() == garbage


def test_a_database_of_a_newer_nbflow_is_refused_and_left_alone(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with sqlite3.connect(home / "nbflow.db") as conn:
        conn.execute("CREATE TABLE future (x)")
        conn.execute(f"PRAGMA user_version = {LATEST + 1}")
    before = (home / "nbflow.db").read_bytes()
    message = open_fails(home)
    assert str(home / "nbflow.db") in message and "newer nbflow" in message and str(LATEST + 1) in message
    assert (home / "nbflow.db").read_bytes() == before


def test_a_database_of_another_program_is_refused_and_left_alone(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with sqlite3.connect(home / "nbflow.db") as conn:
        conn.execute("CREATE TABLE flow_runs (mine TEXT)")
        conn.execute("INSERT INTO flow_runs VALUES ('keep me')")
    message = open_fails(home)
    assert "another program" in message
    with sqlite3.connect(home / "nbflow.db") as conn:
        assert conn.execute("SELECT mine FROM flow_runs").fetchall() == [("keep me",)]


@contextmanager
def unwritable(folder: Path) -> Iterator[None]:
    """``folder`` made unwritable for this user: by mode bits, or for root (who ignores them) immutable."""
    if os.geteuid() != 0:
        os.chmod(folder, 0o500)
        try:
            yield
        finally:
            os.chmod(folder, 0o700)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)]).returncode != 0:
        pytest.skip("running as root on a file system without chattr +i: cannot make a folder unwritable")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_an_unwritable_home_is_refused_in_one_line_by_the_cli(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with unwritable(home):
        done = nbflow(home, "flow-run", "ls")
        assert list(home.iterdir()) == []
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert str(home) in done.stderr and "not writable" in done.stderr


def test_the_cli_names_a_bad_home_in_one_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.write_text("x")
    done = nbflow(home, "flow-run", "ls")
    assert done.returncode == 2
    assert done.stderr.startswith("nbflow: error: ") and done.stderr.count("\n") == 1
    assert str(home) in done.stderr


def test_with_the_store_off_no_database_is_written(tmp_path: Path) -> None:
    home = tmp_path / "home"
    runtime = build_runtime(Settings(home=str(home), store_enabled=False), console=False)
    assert runtime.store is None
    from nbflow._engine.runtime import use_runtime

    with use_runtime(runtime):
        assert hello() == "hi"
    assert not (home / "nbflow.db").exists()
