"""The monitor widget in a real kernel (driven by nbclient as a notebook front-end would): decorated
flows called in cells after ``%load_ext nbflow``, and ``nbflow.monitor()`` of stored runs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _kernel import WIDGET, NotebookKernel, nbflow_kernel, plain, stream, widget_models

pytestmark = pytest.mark.slow  # a real kernel per module


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NotebookKernel]:
    with nbflow_kernel(
        tmp_path_factory.mktemp("home"),
        "import nbflow, nbflow.runs\n"
        "from nbflow import flow, task\n"
        "from nbflow.jupyter import no_monitor\n"
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
    ) as k:
        yield k


def widgets(cell: Any) -> list[dict[str, Any]]:
    return [o for o in cell.outputs if o["output_type"] == "display_data" and WIDGET in o["data"]]


def run_name(cell: Any) -> str:
    """The flow run a monitor shows, from its static stand-in ("Flow run 'x' (etl): ...")."""
    found = [m.group(1) for text in plain(cell) if (m := re.match(r"Flow run '([^']+)'", text))]
    assert len(found) == 1, f"expected one monitor in the cell, found {found}"
    return found[0]


def saved_snapshot(kernel: NotebookKernel, name: str) -> dict[str, Any]:
    """The final picture of the monitor of flow run ``name``, as the saved notebook holds it."""
    kernel.notebook_bytes()  # writes the widget state into the notebook's metadata
    models = widget_models(kernel).values()
    mine = [m["state"]["snapshot"] for m in models if m["state"].get("snapshot", {}).get("run", {}).get("name") == name]
    assert mine, f"no monitor of flow run {name!r} in the saved widget state"
    return mine[-1]


def test_a_flow_called_in_a_cell_leaves_its_final_picture_in_the_widget_and_the_static_output(
    kernel: NotebookKernel,
) -> None:
    cell = kernel.run("etl()")

    assert len(widgets(cell)) == 1  # one monitor: the subflow is a node of it, not a monitor of its own
    static = plain(cell, "text/html")
    assert len(static) == 1 and "Completed 6" in static[0] and "Failed 1" in static[0]  # updated at the end
    assert "row 2 is broken" in static[0]

    snap = saved_snapshot(kernel, run_name(cell))
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


def test_nbflow_monitor_shows_a_run_from_the_store(kernel: NotebookKernel) -> None:
    hidden = kernel.run("with no_monitor():\n    etl()\nprint(nbflow.runs.flow_runs(flow_name='etl', limit=1)[0].name)")
    assert not widgets(hidden)
    name = stream(hidden, "stdout").strip()  # only the run store knows this run

    cell = kernel.run(f"nbflow.monitor({name!r});")

    assert len(widgets(cell)) == 1
    assert run_name(cell) == name
    static = plain(cell, "text/html")
    assert len(static) == 1 and "Completed 6" in static[0] and "Failed 1" in static[0]
    snap = saved_snapshot(kernel, name)
    assert snap["final"] and len(snap["graph"]["nodes"]) == 7


def test_monitoring_an_unknown_run_is_one_clear_error(kernel: NotebookKernel) -> None:
    cell = kernel.run("nbflow.monitor('no-such-run')")
    errors = [o for o in cell.outputs if o["output_type"] == "error"]
    assert errors and errors[0]["ename"] == "RunNotFoundError" and "no-such-run" in errors[0]["evalue"]


def test_a_run_that_ends_in_the_background_leaves_its_final_picture_in_the_cell_that_shows_it(
    kernel: NotebookKernel, tmp_path: Path,
) -> None:
    gate = tmp_path / "gate"
    kernel.run(
        "import pathlib, threading, time\n"
        "started = threading.Event()\n"
        "@task\n"
        "def wait_for(path):\n"
        "    started.set()\n"
        "    while not pathlib.Path(path).exists():\n"
        "        time.sleep(0.02)\n"
        "    return 1\n"
        "@flow(name='background', flow_run_name='in-the-background')\n"
        "def background(path):\n"
        "    return load(wait_for(path))\n"
        f"worker = threading.Thread(target=background, args=({str(gate)!r},))\n"
        "worker.start()\n"
        "assert started.wait(30)\n"
    )
    shown = kernel.run("shown = nbflow.monitor('in-the-background')")
    assert "Running" in plain(shown, "text/html")[0]

    waited = kernel.run(f"pathlib.Path({str(gate)!r}).touch()\nworker.join(30)\nshown.wait(30)")

    assert stream(waited, "stdout") == "" and waited.outputs[-1]["data"]["text/plain"] == "True"
    static = plain(shown, "text/html")  # the earlier cell's summary, updated in place
    assert len(static) == 1 and "Completed" in static[0] and "Completed 2" in static[0]
    assert "(background): Completed" in plain(shown)[1]
    snap = saved_snapshot(kernel, "in-the-background")
    assert snap["final"] and sorted(n["label"] for n in snap["graph"]["nodes"]) == ["load", "wait_for"]


def test_the_monitor_of_a_finished_cell_lets_go_of_the_task_results(kernel: NotebookKernel) -> None:
    kernel.run(
        "import gc, weakref\n"
        "from nbflow.jupyter._session import active_session\n"
        "class Big:\n"
        "    pass\n"
        "made = []\n"
        "@task\n"
        "def make():\n"
        "    value = Big()\n"
        "    made.append(weakref.ref(value))\n"
        "    return value\n"
        "@task\n"
        "def use(x):\n"
        "    return 1\n"
        "@flow(name='holds')\n"
        "def holds():\n"
        "    use(make())\n"
    )
    cell = kernel.run("holds()")
    assert len(widgets(cell)) == 1 and "(holds): Completed" in plain(cell)[-1]

    after = kernel.run(
        "shown = active_session().monitor_of(active_session().recent[-1].id)\n"
        "print(shown.wait(30))\n"
        "gc.collect()\n"
        "print(len(made), made[0]() is None)\n"
    )

    assert stream(after, "stdout").split() == ["True", "1", "True"]  # the widget still shows the run, not its result
