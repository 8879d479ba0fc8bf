"""``%%flow`` in a real kernel: a cell runs as one flow run and otherwise behaves like a cell."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _kernel import WIDGET, NotebookKernel, error, nbflow_kernel, plain, result, stream

pytestmark = pytest.mark.slow  # a real kernel per module


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NotebookKernel]:
    with nbflow_kernel(
        tmp_path_factory.mktemp("home"),
        "import asyncio, logging\n"
        "from nbflow import flow, task, get_run_logger\n"
        "@task\n"
        "def double(x):\n"
        "    return 2 * x\n"
    ) as k:
        yield k


def test_names_assigned_in_a_flow_cell_land_in_the_notebook(kernel: NotebookKernel) -> None:
    kernel.run("%%flow names\na = double(2)\nb = double(a)\ndef helper():\n    return 'defined in a flow cell'")
    cell = kernel.run("print(a, b, helper())")
    assert stream(cell, "stdout") == "4 8 defined in a flow cell\n"


def test_the_last_expression_is_the_cells_result(kernel: NotebookKernel) -> None:
    cell = kernel.run("%%flow last\nx = double(20)\nx + 2")
    assert result(cell) == "42"
    assert stream(kernel.run("print(_)"), "stdout") == "42\n"
    assert result(kernel.run("%%flow silent\ndouble(1);")) is None


def test_the_cell_is_a_flow_run_so_tasks_can_be_submitted(kernel: NotebookKernel) -> None:
    cell = kernel.run(
        "%%flow submitted\n"
        "futures = [double.submit(i) for i in range(5)]\n"
        "get_run_logger().info('in the flow run')\n"
        "[f.result() for f in futures]"
    )
    assert result(cell) == "[0, 2, 4, 6, 8]"
    assert "Flow run" in stream(cell) and "in the flow run" in stream(cell)
    outside = kernel.run("double.submit(1)")  # outside a flow cell: the engine's clear error
    assert error(outside)["ename"] == "MissingContextError"


def test_a_failing_cell_shows_the_users_traceback_and_nothing_of_nbflow(kernel: NotebookKernel) -> None:
    cell = kernel.run(
        "%%flow --no-monitor\n"
        "# Broken step\n"
        "def boom():\n"
        "    return {}['missing']\n"
        "c = double(1)\n"
        "boom()\n"
    )
    failure = error(cell)
    assert failure["ename"] == "KeyError" and failure["evalue"] == "'missing'"
    trace = failure["traceback"]
    assert "----> 6 boom()" in trace and "----> 4     return {}['missing']" in trace
    assert "nbflow" not in trace and "run_cell_magic" not in trace
    assert "for flow 'broken-step'" in stream(cell)  # named after its leading comment
    assert stream(kernel.run("print(c)"), "stdout") == "2\n"  # what ran before the failure stays


def test_a_failing_task_shows_where_the_task_failed(kernel: NotebookKernel) -> None:
    kernel.run("@task\ndef fragile(x):\n    raise ValueError(f'bad input {x}')")
    cell = kernel.run("%%flow failing-task\nfragile.submit(7).result()")
    failure = error(cell)
    assert failure["ename"] == "ValueError" and failure["evalue"] == "bad input 7"
    assert "raise ValueError(f'bad input {x}')" in failure["traceback"]
    assert "nbflow" not in failure["traceback"]


def test_await_works_in_a_flow_cell(kernel: NotebookKernel) -> None:
    kernel.run("@task\nasync def fetch(x):\n    await asyncio.sleep(0.01)\n    return x * 10")
    cell = kernel.run("%%flow awaiting\nv = await fetch(1)\nw = double(v)\nawait asyncio.sleep(0)\nw + await fetch(2)")
    assert result(cell) == "40"
    assert stream(kernel.run("print(v, w)"), "stdout") == "10 20\n"
    failing = kernel.run("%%flow --no-monitor\nawait asyncio.sleep(0)\nraise RuntimeError('after await')")
    assert error(failing)["evalue"] == "after await"
    assert "nbflow" not in error(failing)["traceback"]


def test_retries_run_the_cell_again(kernel: NotebookKernel) -> None:
    cell = kernel.run(
        "%%flow flaky --retries 2 --retry-delay 0 --no-monitor\n"
        "attempts = globals().get('attempts', 0) + 1\n"
        "if attempts < 3:\n"
        "    raise ConnectionError(f'attempt {attempts}')\n"
        "attempts"
    )
    assert result(cell) == "3"
    assert stream(cell).count("Retrying in 0.0 seconds") == 2


def test_a_timeout_ends_the_run_timed_out_in_one_line(kernel: NotebookKernel) -> None:
    cell = kernel.run("%%flow slow --timeout 0.2 --no-monitor\nimport time\nfor _ in range(100):\n    time.sleep(0.05)")
    failure = error(cell)
    assert failure["ename"] == "FlowRunTimeoutError"
    assert "nbflow" not in failure["traceback"].replace(failure["evalue"], "")
    assert "Finished in state TimedOut(" in stream(cell)


def test_a_syntax_error_reads_as_in_any_cell(kernel: NotebookKernel) -> None:
    cell = kernel.run("%%flow typo\nx = 1\ny = = 2")
    failure = error(cell)
    assert failure["ename"] == "SyntaxError"
    assert "line 3" in failure["traceback"] and "y = = 2" in failure["traceback"]
    assert "nbflow" not in failure["traceback"] and "Created flow run" not in stream(cell)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("%%flow --retries x", "argument --retries: invalid int value: 'x'"),
        ("%%flow --retries -1", "retries must be a whole number >= 0"),
        ("%%flow --timeout 0", "timeout_seconds must be a number > 0"),
        ("%%flow --task-runner gpu", "argument --task-runner: invalid choice: 'gpu'"),
        ("%%flow one two", "unrecognized arguments: two"),
    ],
)
def test_bad_arguments_are_a_short_usage_error(kernel: NotebookKernel, line: str, message: str) -> None:
    cell = kernel.run(f"{line}\nran = True")
    text = stream(cell)
    assert text.startswith("UsageError: %%flow: ") and message in text
    assert "Usage: %%flow [NAME]" in text and "Traceback" not in text
    assert stream(kernel.run("print(globals().get('ran', 'not run'))"), "stdout") == "not run\n"


def test_help_lists_every_magic(kernel: NotebookKernel) -> None:
    text = stream(kernel.run("%flow --help"), "stdout")
    for usage in ("%%flow [NAME]", "%flow runs", "%flow rerun", "%flow monitor", "%flow cache clear"):
        assert usage in text


def test_with_a_monitor_the_cell_shows_flow_lines_warnings_user_logs_and_prints_only(kernel: NotebookKernel) -> None:
    kernel.run(
        "@task\n"
        "def chatty(i):\n"
        "    get_run_logger().info(f'user line {i}')\n"
        "    print(f'printed {i}')\n"
        "    if i == 2:\n"
        "        get_run_logger().warning('careful with 2')\n"
        "    return i\n"
    )
    cell = kernel.run("%%flow chatter --log-prints\n[f.result() for f in chatty.map(range(4))]")
    assert any(WIDGET in o.get("data", {}) for o in cell.outputs), "a live monitor is shown"
    text = stream(cell)
    assert "Created flow run" in text and "Finished in state Completed()" in text
    assert all(f"user line {i}" in text and f"printed {i}" in text for i in range(4))
    assert "careful with 2" in text
    assert _task_lines(text) == [], "the engine's per-task lines go to the monitor only"

    quiet_off = kernel.run("%%flow chatter --no-monitor\n[f.result() for f in chatty.map(range(4))]")
    assert not any(WIDGET in o.get("data", {}) for o in quiet_off.outputs)
    assert len(_task_lines(stream(quiet_off))) == 4, "without a monitor every task line is printed"


def _task_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "| Task run '" in line and "Finished in state" in line]


def test_lines_of_tasks_on_worker_threads_land_in_their_cell(kernel: NotebookKernel) -> None:
    kernel.run("@task\ndef warns(i):\n    get_run_logger().warning(f'marker-{i}')\n    return i")
    cell = kernel.run("%%flow threads\nfutures = warns.map(range(16))\n[f.result() for f in futures];")
    after = kernel.run("print('next cell')")
    assert all(f"marker-{i}\n" in stream(cell) for i in range(16))
    assert "marker-" not in stream(after) + stream(after, "stdout")


def test_a_decorated_flow_called_in_a_cell_gets_a_monitor_unless_turned_off(kernel: NotebookKernel) -> None:
    kernel.run("@flow\ndef etl(n: int = 3):\n    return sum(double.map(range(n)).result())")
    shown = kernel.run("etl(4)")
    assert result(shown) == "12"
    assert any(WIDGET in o.get("data", {}) for o in shown.outputs)
    assert any("(etl): Completed" in text for text in plain(shown))  # the static picture next to it
    hidden = kernel.run("from nbflow.jupyter._session import no_monitor\nwith no_monitor():\n    total = etl(2)\ntotal")
    assert result(hidden) == "2"
    assert not any(WIDGET in o.get("data", {}) for o in hidden.outputs)


def test_task_runner_dask_runs_submitted_tasks_on_dask(kernel: NotebookKernel) -> None:
    cell = kernel.run(
        "%%flow on-dask --task-runner dask --no-monitor\n"
        "import os\n"
        "@task\n"
        "def where(i):\n"
        "    return os.getpid()\n"
        "pids = set(where.map(range(4)).result())\n"
        "os.getpid() in pids"
    )
    assert result(cell) == "False"  # the tasks ran in Dask's worker processes, not in the kernel
    assert "Finished in state Completed()" in stream(cell)
