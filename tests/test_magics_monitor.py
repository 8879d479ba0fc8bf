"""The monitor under flow cells, as a saved notebook keeps it; interrupts; how big notebooks get."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _kernel import NotebookKernel, error, nbflow_kernel, plain, stream, widget_models

pytestmark = pytest.mark.slow  # a real kernel per module


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NotebookKernel]:
    with nbflow_kernel(
        tmp_path_factory.mktemp("home"),
        "import pathlib, time\n"
        "from nbflow import flow, task\n"
        "from nbflow.jupyter._session import active_session\n"
        "@task\n"
        "def inc(x):\n"
        "    return x + 1\n"
        "@task\n"
        "def add(x, y):\n"
        "    return x + y\n"
    ) as k:
        yield k


def saved_snapshot(kernel: NotebookKernel, flow_name: str) -> dict[str, Any]:
    """The final picture of the latest monitor of ``flow_name``, as the saved notebook holds it."""
    kernel.notebook_bytes()  # writes the widget state into the notebook's metadata
    models = widget_models(kernel).values()
    snapshots = [m["state"]["snapshot"] for m in models if "snapshot" in m["state"]]
    mine = [s for s in snapshots if s.get("run", {}).get("flow") == flow_name]
    assert mine, f"no monitor of flow {flow_name!r} in the saved widget state"
    return mine[-1]


def test_the_saved_monitor_holds_the_finished_run(kernel: NotebookKernel) -> None:
    cell = kernel.run("%%flow diamond\na = inc.submit(1)\nb = inc.submit(a)\nc = inc.submit(a)\nadd(b, c)")
    assert any("(diamond): Completed" in text for text in plain(cell))  # the static stand-in
    snap = saved_snapshot(kernel, "diamond")
    assert snap["final"] and snap["run"]["state"] == "Completed"
    labels = sorted(node["label"] for node in snap["graph"]["nodes"])
    assert labels == ["add", "inc", "inc-2", "inc-3"]
    by_label = {node["label"]: node["id"] for node in snap["graph"]["nodes"]}
    edges = {(a, b) for a, b in snap["graph"]["edges"]}
    assert edges == {
        (by_label["inc"], by_label["inc-2"]), (by_label["inc"], by_label["inc-3"]),
        (by_label["inc-2"], by_label["add"]), (by_label["inc-3"], by_label["add"]),
    }
    assert {snap["nodes"][i]["s"] for i in by_label.values()} == {"Completed"}
    assert any("Finished in state Completed()" in str(entry) for entry in snap["log"])


def test_a_rerun_monitor_marks_cached_tasks(kernel: NotebookKernel) -> None:
    kernel.run("%flow rerun diamond")
    snap = saved_snapshot(kernel, "diamond")
    assert {node["s"] for node in snap["nodes"].values()} == {"Cached"}


def test_interrupting_a_flow_cell_cancels_the_run_and_the_next_cell_runs(kernel: NotebookKernel, tmp_path: Path) -> None:
    started = tmp_path / "started"
    cell = kernel.run(
        "%%flow sleepy\n"
        "@task\n"
        "def nap(i):\n"
        f"    pathlib.Path({str(started)!r}).touch()\n"
        "    for _ in range(1200):\n"
        "        time.sleep(0.05)\n"
        "futures = nap.map(range(3))\n"
        "[f.result() for f in futures]\n",
        interrupt_when=started,
    )
    assert error(cell)["ename"] == "KeyboardInterrupt"
    assert "Finished in state Cancelled('Flow run was interrupted')" in stream(cell)
    assert any("(sleepy): Cancelled" in text for text in plain(cell))  # the monitor says so
    assert saved_snapshot(kernel, "sleepy")["run"]["state"] == "Cancelled"
    after = kernel.run("run = active_session().recent[-1]\nprint(run.flow_name, run.state.name)")
    assert stream(after, "stdout") == "sleepy Cancelled\n"


def test_interrupting_an_awaiting_flow_cell_cancels_it_at_once(kernel: NotebookKernel, tmp_path: Path) -> None:
    started = tmp_path / "started"
    cell = kernel.run(
        "%%flow awaiting-nap\n"
        "import asyncio\n"
        "@task\n"
        "async def anap():\n"
        f"    pathlib.Path({str(started)!r}).touch()\n"
        "    await asyncio.sleep(60)\n"
        "await anap()\n",
        interrupt_when=started,
    )  # without nbflow's handler ipykernel would cancel only after the sleep (ipython/ipykernel#881)
    assert error(cell)["ename"] == "CancelledError"
    assert "Finished in state Cancelled('Flow run was interrupted')" in stream(cell)
    snap = saved_snapshot(kernel, "awaiting-nap")
    assert snap["run"]["state"] == "Cancelled"
    assert [node["s"] for node in snap["nodes"].values()] == ["Cancelled"]
    assert stream(kernel.run("print('still here')"), "stdout") == "still here\n"


def test_a_thousand_task_run_keeps_the_notebook_small(kernel: NotebookKernel) -> None:
    """Prefect prints a line per task: a 1,000-task run made a 2 MB notebook. Here the cell shows the
    run's own lines, and the monitor's saved picture collapses the graph to one node per task."""
    source = "%%flow big\nfutures = inc.map(range(1000))\nsum(f.result() for f in futures)"
    kernel.run(source)  # the first monitor also brings the kernel's one copy of the graph layout code
    before = kernel.notebook_bytes()
    cell = kernel.run(source)
    growth = kernel.notebook_bytes() - before
    outputs = sum(len(str(o)) for o in cell.outputs)
    assert outputs < 20_000, f"the cell's outputs are {outputs} bytes"
    assert growth < 150_000, f"one more 1,000-task run grew the saved notebook by {growth} bytes"


def test_a_saved_notebook_keeps_the_monitors_front_end_once(kernel: NotebookKernel) -> None:
    """anywidget saves a widget's front-end with each widget; monitors save a 1 kB loader instead."""
    kernel.run("%%flow warm-up\ninc(0)")
    before = kernel.notebook_bytes()
    for n in range(3):
        kernel.run(f"%%flow small-{n}\ninc({n})")
    growth = (kernel.notebook_bytes() - before) / 3
    models = widget_models(kernel)
    fronts = [model_id for model_id, m in models.items() if "esm" in m["state"]]
    monitors = [m["state"] for m in models.values() if m["model_name"] == "AnyModel"]
    assert len(fronts) == 1, "the front-end is saved once, whatever the number of monitors"
    assert len(monitors) >= 4 and {m["assets"] for m in monitors} == {f"IPY_MODEL_{fronts[0]}"}
    assert growth < 20_000, f"a monitor of a two-task run adds {growth:.0f} bytes to the saved notebook"


def test_the_monitor_setting_turns_every_monitor_off(tmp_path: Path) -> None:
    with NotebookKernel(tmp_path, env={"NBFLOW_MONITOR_ENABLED": "false"}) as k:
        k.run("%load_ext nbflow\nfrom nbflow import flow, task\n@task\ndef one():\n    return 1")
        cell = k.run("%%flow unmonitored\none() + one()")
        called = k.run("@flow\ndef pair():\n    return one() + one()\npair()")
    for run in (cell, called):
        assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in run.outputs)
        assert stream(run).count("| Task run 'one") == 2, "without a monitor every task line is printed"
