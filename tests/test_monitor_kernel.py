"""The monitor widget in a real kernel (driven by nbclient as a notebook front-end would)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from _kernel import NotebookKernel, plain, stream

WIDGET = "application/vnd.jupyter.widget-view+json"


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NotebookKernel]:
    with NotebookKernel(tmp_path_factory.mktemp("home")) as k:
        k.run(
            "import json\n"
            "from nbflow import flow, task\n"
            "from nbflow._runtime import get_runtime\n"
            "from nbflow.jupyter import _widget\n"
            "stop_monitors = _widget.auto_monitor(get_runtime().bus)\n"
            "@task\n"
            "def load(i):\n"
            "    return i\n"
            "@task\n"
            "def check(x):\n"
            "    if x == 2:\n"
            "        raise ValueError('row 2 is broken')\n"
            "    return x\n"
            "@flow(name='inner')\n"
            "def inner():\n"
            "    return load(100)\n"
            "@flow(name='etl')\n"
            "def etl():\n"
            "    checked = [check.submit(load.submit(i)) for i in range(3)]\n"
            "    inner()\n"
            "    return [c.wait() for c in checked]\n"
        )
        yield k


def latest_snapshot(kernel: NotebookKernel) -> dict[str, Any]:
    cell = kernel.run("print(json.dumps(list(_widget._monitors.values())[-1].snapshot))")
    return json.loads(stream(cell, "stdout"))


def test_a_flow_run_leaves_its_final_picture_in_the_widget_and_the_static_output(kernel: NotebookKernel) -> None:
    cell = kernel.run("etl()")

    widgets = [o for o in cell.outputs if o["output_type"] == "display_data" and WIDGET in o["data"]]
    assert len(widgets) == 1  # one monitor: the subflow is a node of it, not a monitor of its own
    static = plain(cell, "text/html")
    assert len(static) == 1 and "Completed 6" in static[0] and "Failed 1" in static[0]  # updated at the end
    assert "row 2 is broken" in static[0]

    snap = latest_snapshot(kernel)
    assert snap["final"] and snap["run"]["flow"] == "etl" and snap["run"]["state"] == "Completed"
    names = {n["id"]: n["label"] for n in snap["graph"]["nodes"]}
    assert sorted(names.values()) == ["check", "check-2", "check-3", "inner", "load", "load-2", "load-3"]
    assert sorted((names[u], names[v]) for u, v in snap["graph"]["edges"]) == [
        ("load", "check"), ("load-2", "check-2"), ("load-3", "check-3")]
    states = {names[i]: s["s"] for i, s in snap["nodes"].items()}
    assert states == {"load": "Completed", "load-2": "Completed", "load-3": "Completed", "check": "Completed",
                      "check-2": "Completed", "check-3": "Failed", "inner": "Completed"}
    assert {k: n for k, (_t, n) in snap["counts"].items()} == {"Completed": 6, "Failed": 1}
    log = [(entry[3], entry[6]) for entry in snap["log"]]
    assert ("check-3", "→ Failed: Task run encountered an exception ValueError: row 2 is broken") in log
    assert log[-1] == (snap["run"]["name"], "Finished in state Completed()")
    failed = next(i for i, n in names.items() if n == "check-3")
    assert "raise ValueError('row 2 is broken')" in snap["details"][failed]["traceback"]


def test_nbflow_monitor_shows_a_stored_run_again(kernel: NotebookKernel) -> None:
    kernel.run("etl()")
    name = latest_snapshot(kernel)["run"]["name"]
    kernel.run("_widget._monitors.clear()")  # as in a new kernel: only the run store knows the run

    cell = kernel.run(f"shown = _widget.monitor({name!r})")

    assert [o for o in cell.outputs if o["output_type"] == "display_data" and WIDGET in o["data"]]
    static = plain(cell, "text/html")
    assert len(static) == 1 and name in static[0] and "Completed 6" in static[0] and "Failed 1" in static[0]
    snap = json.loads(stream(kernel.run("print(json.dumps(shown.snapshot))"), "stdout"))
    assert snap["final"] and snap["run"]["name"] == name and len(snap["graph"]["nodes"]) == 7


def test_monitoring_an_unknown_run_is_one_clear_error(kernel: NotebookKernel) -> None:
    cell = kernel.run("_widget.monitor('no-such-run')")
    errors = [o for o in cell.outputs if o["output_type"] == "error"]
    assert errors and errors[0]["ename"] == "RunNotFoundError" and "no-such-run" in errors[0]["evalue"]
