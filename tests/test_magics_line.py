"""``%flow runs / rerun / monitor / cache clear`` in a real kernel with a real run store and cache."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _kernel import WIDGET, NotebookKernel, error, nbflow_kernel, plain, result, stream

pytestmark = pytest.mark.slow  # a real kernel per module


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NotebookKernel]:
    with nbflow_kernel(
        tmp_path_factory.mktemp("home"),
        "from nbflow import flow, task\n"
        "calls = []\n"
        "@task\n"
        "def load(n):\n"
        "    calls.append('load')\n"
        "    return list(range(n))\n"
        "@task\n"
        "def scale(xs):\n"
        "    calls.append('scale')\n"
        "    return [x * 10 for x in xs]\n"
        "@task\n"
        "def total(xs):\n"
        "    calls.append('total')\n"
        "    return sum(xs)\n"
    ) as k:
        k.run("%%flow pipeline\nscaled = scale(load(4))\ntotal(scaled)")
        yield k


def calls_since(kernel: NotebookKernel, source: str) -> tuple[object, list[str]]:
    """Run ``source``; return its cell and the tasks that really executed meanwhile."""
    kernel.run("calls.clear()")
    cell = kernel.run(source)
    executed = stream(kernel.run("print(' '.join(calls))"), "stdout").split()
    return cell, executed


def test_rerun_of_a_cell_flow_takes_unchanged_tasks_from_the_cache(kernel: NotebookKernel) -> None:
    cell, executed = calls_since(kernel, "%flow rerun pipeline")
    assert result(cell) == "60"
    assert executed == []


def test_rerun_after_editing_a_step_runs_that_step_and_what_depends_on_it(kernel: NotebookKernel) -> None:
    kernel.run("@task\ndef scale(xs):\n    calls.append('scale')\n    return [x * 100 for x in xs]")
    cell, executed = calls_since(kernel, "%flow rerun pipeline")
    assert result(cell) == "600"
    assert executed == ["scale", "total"]  # load is unchanged: it comes from the cache


def test_rerun_without_arguments_reruns_the_latest_run(kernel: NotebookKernel) -> None:
    cell, executed = calls_since(kernel, "%flow rerun")
    assert result(cell) == "600" and executed == []


def test_rerun_of_a_decorated_flow_by_run_id(kernel: NotebookKernel) -> None:
    kernel.run("@flow\ndef report(n: int):\n    return total(load(n))")
    first = kernel.run("report(3)")
    run_id = stream(kernel.run(
        "from nbflow.jupyter._session import active_session\nprint(active_session().recent[-1].id)"), "stdout").strip()
    assert result(first) == "3"
    kernel.run("report(5)")  # a later run with other parameters: the id picks the earlier one
    cell, executed = calls_since(kernel, f"%flow rerun {run_id[:8]}")
    assert result(cell) == "3" and executed == []


def test_cache_clear_of_one_task_makes_the_next_rerun_run_it(kernel: NotebookKernel) -> None:
    cleared = kernel.run("%flow cache clear --task load")
    assert re.fullmatch(r"Cleared [1-9]\d* cached task results? of task 'load'\.\n", stream(cleared, "stdout"))
    _, executed = calls_since(kernel, "%flow rerun pipeline")
    assert executed == ["load"]  # load's result is the same as before, so nothing downstream reruns


def test_runs_shows_the_history_newest_first_with_states(kernel: NotebookKernel) -> None:
    kernel.run("%%flow doomed --no-monitor\nraise ValueError('no')")
    cell = kernel.run("%flow runs -n 3")
    html = plain(cell, "text/html")[0]
    assert html.count("<tr>") == 3 + 1  # header + three runs
    rows = html.split("<tbody>")[1].split("</tr>")
    assert "doomed" in rows[0] and ">Failed<" in rows[0] and "#fecaca" in rows[0]
    assert "pipeline" in rows[1] and ">Completed<" in rows[1] and "(rerun)" in rows[1]
    assert "%flow monitor " in rows[0]  # how to open a monitor, also where widgets don't run
    assert any(WIDGET in o.get("data", {}) for o in cell.outputs), "a picker opens monitors in live notebooks"


def test_runs_of_one_flow(kernel: NotebookKernel) -> None:
    html = plain(kernel.run("%flow runs --flow report"), "text/html")[0]
    names = re.findall(r"<td [^>]*>report</td>", html)
    assert len(names) == html.count("<tr>") - 1 >= 3
    assert "of flow report" in html


def test_monitor_shows_the_latest_run_or_the_one_named(kernel: NotebookKernel) -> None:
    latest = kernel.run("%flow monitor")
    assert any(WIDGET in o.get("data", {}) for o in latest.outputs) and result(latest) is None
    assert any("(doomed): Failed" in text for text in plain(latest))


def test_runs_and_monitor_of_another_process_come_from_the_store(kernel: NotebookKernel) -> None:
    script = (
        "from nbflow import flow, task\n"
        "@task\ndef one():\n    return 1\n"
        "@flow(flow_run_name='made-elsewhere')\ndef elsewhere():\n    return one() + one()\n"
        "elsewhere()\n"
    )
    subprocess.run([sys.executable, "-c", script], env={**os.environ, "NBFLOW_HOME": str(kernel.home)},
                   check=True, capture_output=True, timeout=60)
    html = plain(kernel.run("%flow runs -n 1"), "text/html")[0]
    assert "made-elsewhere" in html and "elsewhere</td>" in html
    cell = kernel.run("%flow monitor made-elsewhere")
    assert any(WIDGET in o.get("data", {}) for o in cell.outputs)
    assert any("(elsewhere): Completed" in text and "2 task runs" in text for text in plain(cell))


def test_a_running_run_of_another_process_is_in_the_table_and_its_monitor_follows_it(
    kernel: NotebookKernel, tmp_path: Path,
) -> None:
    gate, waiting = tmp_path / "gate", tmp_path / "waiting"
    script = (
        "import pathlib, time\n"
        "from nbflow import flow, task\n"
        "@task\ndef one():\n    return 1\n"
        "@task\ndef gated(x):\n"
        f"    pathlib.Path({str(waiting)!r}).touch()\n"
        f"    while not pathlib.Path({str(gate)!r}).exists():\n"
        "        time.sleep(0.02)\n"
        "    return x + 1\n"
        "@flow(name='elsewhere-live', flow_run_name='still-going-elsewhere')\n"
        "def elsewhere():\n    return gated(one())\n"
        "elsewhere()\n"
    )
    env = {**os.environ, "NBFLOW_HOME": str(kernel.home)}
    worker = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        kernel.run(  # until the other process has recorded its run and reached the gate
            "import nbflow.runs, pathlib, time\n"
            "deadline = time.monotonic() + 60\n"
            f"while not (pathlib.Path({str(waiting)!r}).exists() and nbflow.runs.flow_runs(flow_name='elsewhere-live')):\n"
            "    assert time.monotonic() < deadline, 'the other process never got going'\n"
            "    time.sleep(0.05)\n"
        )
        table = plain(kernel.run("%flow runs -n 1"), "text/html")[0]
        assert "still-going-elsewhere" in table and ">Running<" in table
        shown = kernel.run("%flow monitor still-going-elsewhere")
        assert any(WIDGET in o.get("data", {}) for o in shown.outputs)
        assert "(elsewhere-live): Running" in plain(shown)[1]

        gate.touch()
        assert worker.wait(60) == 0, worker.stderr.read() if worker.stderr else ""
        waited = kernel.run(  # the monitor reads the store until the run ended, then says so
            "from nbflow.jupyter._widget import _monitors\n"
            "_monitors[nbflow.runs.flow_run('still-going-elsewhere').id].wait(30)"
        )
    finally:
        worker.kill()
        worker.wait()
    assert result(waited) == "True"
    summary = plain(shown)[1]  # the monitor's cell, updated in place
    assert "(elsewhere-live): Completed" in summary and "2 task runs: Completed 2" in summary
    assert ">Completed<" in plain(kernel.run("%flow runs -n 1"), "text/html")[0]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("%flow rerun nope", "no flow or flow run 'nope'"),
        ("%flow monitor 0000zz", "no flow run '0000zz'"),
        ("%flow runs -n 0", "-n must be 1 or more"),
        ("%flow runs -n many", "argument -n: invalid int value: 'many'"),
        ("%flow sing", "invalid choice: 'sing'"),
        ("%flow cache", "the following arguments are required: action"),
    ],
)
def test_bad_arguments_are_a_short_usage_error(kernel: NotebookKernel, line: str, message: str) -> None:
    cell = kernel.run(line)
    assert stream(cell).startswith("UsageError: %flow") and message in stream(cell)
    assert error(cell) is None or "Traceback" not in error(cell)["traceback"]
