"""``nbflow concurrency-limit ...`` and ``nbflow.concurrency.limits``: what they show, and bad input refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbflow._app.wiring import build_runtime
from nbflow._core.settings import Settings
from nbflow._engine.runtime import use_runtime
from nbflow.concurrency import limits
from nbflow.exceptions import ConcurrencyLimitError, ConcurrencyLimitNotFoundError


def nbflow(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NBFLOW_")}
    env["NBFLOW_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "nbflow", "concurrency-limit", *args], capture_output=True, text=True, env=env
    )


@pytest.fixture
def home(tmp_path) -> Iterator[Path]:
    home = tmp_path / "home"
    with use_runtime(build_runtime(Settings(home=home, store_enabled=False), console=False)):
        yield home


@pytest.mark.slow  # CLI subprocesses
def test_create_ls_update_reset_delete_round_trip(home):
    assert nbflow(home, "create", "db", "3").stdout == "Created concurrency limit 'db': 3 slot(s).\n"
    made = nbflow(home, "create", "api-rate", "10", "--slot-decay-per-second", "2.5")
    assert made.stdout == "Created concurrency limit 'api-rate': 10 slot(s), freeing 2.50 per second.\n"
    assert nbflow(home, "ls").stdout.splitlines() == [
        "NAME      LIMIT  ACTIVE  DECAY/S  HOLDERS  WAITING",
        "api-rate  10     0       2.50     0        0",
        "db        3      0       -        0        0",
    ]
    assert nbflow(home, "update", "db", "5").returncode == 0
    assert limits.inspect("db").limit == 5  # the Python API sees what the CLI did
    assert nbflow(home, "reset", "db").stdout == "Reset concurrency limit 'db': all 5 slot(s) free.\n"
    assert nbflow(home, "delete", "db").stdout == "Deleted concurrency limit 'db'.\n"
    assert [limit.name for limit in limits.ls()] == ["api-rate"]
    listed = json.loads(nbflow(home, "ls", "--json").stdout)
    assert listed[0]["name"] == "api-rate" and listed[0]["slot_decay_per_second"] == 2.5


@pytest.mark.slow  # another process
def test_inspect_shows_limit_active_slots_and_holders_of_another_process(home):
    limits.create("db", 2)
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import sys
            from nbflow.concurrency.sync import concurrency
            with concurrency("db", occupy=2):
                print("held", flush=True)
                sys.stdin.readline()
        """)],
        env={**os.environ, "NBFLOW_HOME": str(home)}, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        shown = nbflow(home, "inspect", "db")
        assert shown.returncode == 0
        lines = shown.stdout.splitlines()
        assert lines[:5] == ["name:          db", "limit:         2", "slot decay:    none", "active slots:  2", "holders:       1"]
        assert lines[5].split() == ["LEASE", "SLOTS", "HOLDER", "PROCESS", "SINCE", "LEASE", "ENDS"]
        assert "thread 'MainThread'" in lines[6] and f"{holder.pid}@" in lines[6]
        assert lines[-1] == "waiting:       0"
        as_json = json.loads(nbflow(home, "inspect", "db", "--json").stdout)
        assert as_json["active_slots"] == 2 and as_json["holders"][0]["pid"] == holder.pid
    finally:
        holder.communicate("\n", timeout=30)
    assert limits.inspect("db").active_slots == 0


@pytest.mark.parametrize("args, message", [
    (("create", "x", "-1"), "must be a whole number of slots from 0 to 2147483647, got '-1'"),
    (("create", "x", "many"), "must be a whole number of slots from 0 to 2147483647, got 'many'"),
    (("create", "x", "2.5"), "got '2.5'"),
    (("create", "x", "3", "--slot-decay-per-second", "fast"), "slot_decay_per_second must be a number >= 0, got 'fast'"),
    (("create", "x", "3", "--slot-decay-per-second", "-1"), "slot_decay_per_second must be a number >= 0"),
    (("create", " x", "3"), "without surrounding spaces"),
])
def test_bad_limits_exit_2_with_one_line_and_store_nothing(home, args, message):
    result = nbflow(home, *args)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("nbflow: error: ") and message in result.stderr
    assert limits.ls() == []


@pytest.mark.slow  # CLI subprocesses
def test_unknown_and_duplicate_names_exit_2(home):
    assert nbflow(home, "create", "db", "1").returncode == 0
    duplicate = nbflow(home, "create", "db", "4")
    assert duplicate.returncode == 2 and "exists already; change it with `nbflow concurrency-limit update db 4`" in duplicate.stderr
    assert limits.inspect("db").limit == 1
    for command in (("inspect", "nope"), ("update", "nope", "2"), ("reset", "nope"), ("delete", "nope")):
        result = nbflow(home, *command)
        assert result.returncode == 2 and "No concurrency limit named 'nope'" in result.stderr


@pytest.mark.parametrize("limit", [-1, "abc", 1.5, True, None, 2**40])
def test_python_api_refuses_bad_limits(home, limit):
    with pytest.raises(ConcurrencyLimitError, match="whole number of slots"):
        limits.create("x", limit)
    assert limits.ls() == []


def test_python_api_update_refuses_bad_values_and_keeps_the_old_ones(home):
    limits.create("x", 2, slot_decay_per_second=1)
    with pytest.raises(ConcurrencyLimitError):
        limits.update("x", -3)
    with pytest.raises(ConcurrencyLimitError):
        limits.update("x", 3, slot_decay_per_second=float("nan"))
    shown = limits.inspect("x")
    assert (shown.limit, shown.slot_decay_per_second) == (2, 1.0)
    with pytest.raises(ConcurrencyLimitNotFoundError):
        limits.delete("y")
