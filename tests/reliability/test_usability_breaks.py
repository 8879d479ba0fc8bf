"""Small breaks a user hit: magic arguments with an unbalanced quote, a state filter that is no state,
a rerun that ran a script's top-level flows, a ``%%flow`` cell reported as the next cell, and console
lines of concurrent tasks out of time order."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from store_support import env, nbflow, recording, script

from nbflow._core.events import LogEmitted
from nbflow._core.records import TaskRun
from nbflow._engine.logging import ConsoleLogger

# --- the magics, in a real IPython shell -------------------------------------------------------------

SHELL = r"""
import io, json, sys
from contextlib import redirect_stderr, redirect_stdout
from IPython.core.interactiveshell import InteractiveShell

shell = InteractiveShell.instance(colors="nocolor")
out = {}

def run(name, source):
    text = io.StringIO()
    with redirect_stdout(text), redirect_stderr(text):
        result = shell.run_cell(source, store_history=True)
    error = result.error_in_exec or result.error_before_exec
    out[name] = {"count": result.execution_count, "error": type(error).__name__ if error else None,
                 "text": text.getvalue()}

run("load", "%load_ext nbflow")
run("plain", "x = 1")
run("failing", "%%flow --no-monitor\nx = 2\nraise ValueError('boom')")
import nbflow.runs
out["failing"]["flow_name"] = nbflow.runs.flow_runs(limit=1)[0].flow_name
run("cell_quote", '%%flow "unbalanced name\nx = 3')
run("line_quote", '%flow runs --flow "unbalanced')
json.dump(out, open(sys.argv[1], "w"))
"""


@pytest.fixture(scope="module")
def shell_cells(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    home = tmp_path_factory.mktemp("shell") / "home"
    report = home.parent / "cells.json"
    done = subprocess.run([sys.executable, "-c", SHELL, str(report)], env=env(home), capture_output=True,
                          text=True, timeout=180, cwd=str(home.parent))
    assert done.returncode == 0, done.stderr
    return dict(json.loads(report.read_text()))


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["cell_quote", "line_quote"])
def test_an_unbalanced_quote_in_magic_arguments_is_a_one_line_usage_error(shell_cells: dict[str, Any], cell: str) -> None:
    ran = shell_cells[cell]
    assert ran["error"] == "UsageError", ran
    assert "Traceback" not in ran["text"] and "ValueError" not in ran["text"]
    (line,) = ran["text"].strip().splitlines()
    assert line.startswith("UsageError: %") and "close the quote" in line, line


@pytest.mark.slow
def test_a_flow_cell_is_named_and_reported_as_its_own_cell_number(shell_cells: dict[str, Any]) -> None:
    failing = shell_cells["failing"]
    number = failing["count"]
    assert number == shell_cells["plain"]["count"] + 1
    assert failing["flow_name"] == f"cell-{number}"
    assert f"In[{number}], line 3" in failing["text"], failing["text"]


# --- nbflow flow-run ls --state ------------------------------------------------------------------------

@pytest.mark.slow  # a CLI subprocess
def test_ls_with_a_state_that_is_no_state_exits_2_naming_the_valid_ones(tmp_path: Path) -> None:
    home = tmp_path / "home"
    done = nbflow(home, "flow-run", "ls", "--state", "nonsense")
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert "'nonsense'" in line and "completed" in line and "failed" in line and "Cached" in line
    for good in ("failed", "CRASHED", "Cached", "timedout"):
        assert nbflow(home, "flow-run", "ls", "--state", good).returncode == 0


# --- rerunning a script's flow ---------------------------------------------------------------------------

SCRIPT = """
import sys
from pathlib import Path
from nbflow import flow, task

@task
def step(x):
    return x + 1

Path({marker!r} + ".argv").write_text(" ".join(sys.argv))  # what top-level code sees

@flow
def nightly(x: int = 1) -> int:
    Path({marker!r}).touch()
    return step(x)

nightly(5)  # not guarded by `if __name__ == "__main__":`
"""


@pytest.mark.slow  # a CLI subprocess
def test_a_rerun_refuses_a_script_whose_import_starts_flow_runs_and_runs_none(tmp_path: Path) -> None:
    home, marker = tmp_path / "home", tmp_path / "top-level-flow-ran"
    path = script(tmp_path / "pipeline.py", SCRIPT.format(marker=str(marker)))
    first = subprocess.run([sys.executable, str(path)], env=env(home), capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    marker.unlink()
    with recording(home) as runtime, runtime.store.reading() as conn:
        (run_id,) = conn.execute("SELECT id FROM flow_runs").fetchone()
    done = nbflow(home, "flow-run", "rerun", run_id)
    assert done.returncode == 2, (done.stdout, done.stderr)
    (line,) = done.stderr.strip().splitlines()
    assert str(path) in line and 'if __name__ == "__main__":' in line
    assert not marker.exists()  # the top-level call never ran
    with recording(home) as runtime, runtime.store.reading() as conn:
        assert conn.execute("SELECT count(*) FROM flow_runs").fetchone()[0] == 1


@pytest.mark.slow  # a CLI subprocess
def test_a_rerun_of_a_guarded_script_runs_only_the_flow(tmp_path: Path) -> None:
    home, marker = tmp_path / "home", tmp_path / "flow-ran"
    code = SCRIPT.format(marker=str(marker)).replace("nightly(5)", 'if __name__ == "__main__":\n    nightly(5)')
    path = script(tmp_path / "pipeline.py", code)
    assert subprocess.run([sys.executable, str(path)], env=env(home), timeout=120).returncode == 0
    with recording(home) as runtime, runtime.store.reading() as conn:
        (run_id,) = conn.execute("SELECT id FROM flow_runs").fetchone()
    done = nbflow(home, "flow-run", "rerun", run_id)
    assert done.returncode == 0, done.stderr
    assert "1 of 1 task runs Cached" in done.stdout
    assert marker.exists()
    assert Path(f"{marker}.argv").read_text() == str(path)  # the script saw its own argv, not nbflow's
    # The rerun is recorded under the script's path too, so it can be rerun in turn (it was recorded
    # under the name of the module the rerun made up, which no process can import).
    with recording(home) as runtime, runtime.store.reading() as conn:
        (again_id, ref) = conn.execute("SELECT id, flow_ref FROM flow_runs WHERE rerun_of IS NOT NULL").fetchone()
    assert ref == f"{path.resolve()}:nightly"
    third = nbflow(home, "flow-run", "rerun", again_id)
    assert third.returncode == 0 and "1 of 1 task runs Cached" in third.stdout, third.stderr


# --- console lines in time order --------------------------------------------------------------------------

def test_console_lines_of_concurrent_tasks_are_written_in_time_order() -> None:
    """Thread A dates its line, then is held (as a busy machine preempts a thread) until thread B has
    dated and written a later one: A's line must not be printed after B's with an earlier time."""
    stream = io.StringIO()
    console = ConsoleLogger(logging.INFO, stream)
    a_dated, b_written = threading.Event(), threading.Event()
    runs = [TaskRun(f"task-{n}", f"task-{n}", f"key-{n}", "flow-run-id", {}) for n in "ab"]
    t0 = 1_700_000_000.0

    def a() -> None:
        event = LogEmitted(runs[0], logging.INFO, "first", t0 + 0.001, "nbflow.engine")
        a_dated.set()
        b_written.wait(10)
        console(event)

    def b() -> None:
        a_dated.wait(10)
        console(LogEmitted(runs[1], logging.INFO, "second", t0 + 0.002, "nbflow.engine"))
        b_written.set()

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    lines = stream.getvalue().splitlines()
    assert [line.rsplit(" - ", 1)[1] for line in lines] == ["second", "first"]  # the order they came in
    stamps = [re.match(r"\d\d:\d\d:\d\d\.\d{3}", line).group(0) for line in lines]  # type: ignore[union-attr]
    assert stamps == sorted(stamps), lines
