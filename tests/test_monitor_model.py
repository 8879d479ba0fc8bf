"""The monitor's model, fed with real run events: from real flow runs, or built by hand."""

from __future__ import annotations

import gc
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nbflow import cache_policies, flow, task
from nbflow._app.wiring import build_runtime
from nbflow._core.events import EdgesAdded, LogEmitted, RunCreated, StateChanged
from nbflow._core.records import FlowRun, TaskRun
from nbflow._core.settings import Settings
from nbflow._core.states import Completed, Pending, Running, State, StateType
from nbflow._engine.runtime import Runtime, use_runtime
from nbflow.jupyter._monitor_model import LOG_LIMIT, MonitorModel
from nbflow.jupyter._monitor_records import RunRecord


class Monitors:
    """A model per top-level flow run of a runtime, subscribed before the run starts (as the widget is)."""

    def __init__(self, runtime: Runtime) -> None:
        self.models: list[MonitorModel] = []
        self.runtime = runtime
        runtime.bus.subscribe(self._on_event)

    def _on_event(self, event: Any) -> None:
        if event.__class__ is RunCreated and event.run.kind == "flow" and event.run.parent_flow_run_id is None:
            model = MonitorModel(event.run.id)
            model.seed(event.run)
            self.runtime.bus.subscribe(model.feed)
            self.models.append(model)


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    """A runtime of real parts with the result cache on (store off, console quiet)."""
    rt = build_runtime(Settings(home=str(tmp_path / "home"), store_enabled=False), console=False)
    with use_runtime(rt):
        yield rt


@pytest.fixture
def monitors(runtime: Runtime) -> Monitors:
    return Monitors(runtime)


@task
def load(i: int) -> int:
    return i


@task
def double(x: int) -> int:
    return 2 * x


@task
def boom(x: int) -> int:
    raise ValueError(f"bad row {x}")


@task
def total(xs: list[int]) -> int:
    return sum(xs)


def tracked_objects_of(root: Any) -> int:
    """Objects the garbage collector tracks that ``root`` holds (not counting classes and functions)."""
    seen: set[int] = set()
    todo = [root]
    while todo:
        obj = todo.pop()
        if id(obj) in seen or not gc.is_tracked(obj) or isinstance(obj, (type, type(gc), type(labels))):
            continue
        seen.add(id(obj))
        todo.extend(gc.get_referents(obj))
    return len(seen)


def labels(snapshot: dict[str, Any]) -> dict[str, str]:
    return {node["id"]: node["label"] for node in snapshot["graph"]["nodes"]}


def edge_labels(snapshot: dict[str, Any]) -> set[tuple[str, str]]:
    names = labels(snapshot)
    return {(names[u], names[v]) for u, v in snapshot["graph"]["edges"]}


def states_by_label(snapshot: dict[str, Any]) -> dict[str, str]:
    names = labels(snapshot)
    return {names[node_id]: state.get("s", "") for node_id, state in snapshot["nodes"].items()}


def test_a_finished_run_is_one_delta_with_its_nodes_edges_states_and_log(monitors: Monitors) -> None:
    @flow(name="etl")
    def etl() -> None:
        xs = [load.submit(i) for i in range(3)]
        ys = [double.submit(x) for x in xs]
        bad = boom.submit(ys[0])
        double.submit(bad)
        total(ys)

    etl()
    model = monitors.models[0]
    delta = model.take_delta()

    assert delta is not None and delta["run"]["flow"] == "etl" and delta["run"]["state"] == "Completed"
    assert sorted(labels(delta).values()) == sorted(
        ["load", "load-2", "load-3", "double", "double-2", "double-3", "boom", "double-4", "total"])
    assert ("load", "double") in edge_labels(delta) and ("boom", "double-4") in edge_labels(delta)
    assert {("double", "total"), ("double-2", "total"), ("double-3", "total")} <= edge_labels(delta)
    states = states_by_label(delta)
    assert states["boom"] == "Failed" and states["double-4"] == "NotReady" and states["total"] == "Completed"
    assert {name: n for name, (_type, n) in delta["counts"].items()} == {"Completed": 7, "Failed": 1, "NotReady": 1}
    assert any(entry[3] == "boom" and entry[6].startswith("→ Failed") for entry in delta["log"])
    assert model.take_delta() is None  # nothing happened since


def test_later_deltas_carry_only_what_changed() -> None:
    root = FlowRun("quiet-owl", "etl", {})
    runs = [TaskRun(f"t-{i}", "t", "mod.t", root.id, {}) for i in range(5)]
    model = MonitorModel(root.id)
    model.feed(RunCreated(root))
    for run in runs:
        run.state = Pending()
        model.feed(RunCreated(run))
        model.feed(StateChanged(run, run.state))
    first = model.take_delta()
    assert first is not None and len(first["graph"]["nodes"]) == 5 and len(first["nodes"]) == 5

    runs[2].state = Running()
    model.feed(StateChanged(runs[2], runs[2].state))
    delta = model.take_delta()

    assert delta is not None
    assert "graph" not in delta  # the structure did not change: no re-layout
    assert list(delta["nodes"]) == [runs[2].id] and delta["nodes"][runs[2].id]["s"] == "Running"
    assert delta["counts"] == {"Pending": ["PENDING", 4], "Running": ["RUNNING", 1]}
    assert [entry[6] for entry in delta["log"]] == ["→ Running"]
    assert delta["seq"] == first["seq"] + 1


def test_many_events_between_two_messages_make_one_update_per_node() -> None:
    root = FlowRun("busy-bee", "etl", {})
    run = TaskRun("t", "t", "mod.t", root.id, {})
    model = MonitorModel(root.id)
    model.feed(RunCreated(root))
    model.feed(RunCreated(run))
    for state in (Pending(), Running(), Completed()):
        run.state = state
        model.feed(StateChanged(run, state))
        model.feed(LogEmitted(run, 20, f"now {state.name}", time.time(), "user"))

    delta = model.take_delta()

    assert delta is not None and delta["nodes"] == {run.id: {"s": "Completed", "t": "COMPLETED", "a": 0}}
    assert [entry[6] for entry in delta["log"]] == ["now Pending", "→ Running", "now Running", "→ Completed", "now Completed"]
    assert [entry[0] for entry in delta["log"]] == sorted(entry[0] for entry in delta["log"])  # numbered in order


def test_past_100_nodes_the_graph_shows_one_node_per_task_with_counts(monitors: Monitors) -> None:
    @flow(name="wide")
    def wide() -> None:
        total([load.submit(i) for i in range(150)])

    wide()
    snap = monitors.models[0].snapshot(final=True)

    assert snap["graph"]["collapsed"]
    assert sorted((n["label"], n["kind"]) for n in snap["graph"]["nodes"]) == [("load", "group"), ("total", "group")]
    assert edge_labels(snap) == {("load", "total")}
    ids = {n["label"]: n["id"] for n in snap["graph"]["nodes"]}
    assert snap["nodes"][ids["load"]] == {"c": {"Completed": 150}}
    group = monitors.models[0].detail(ids["load"])
    assert group is not None and group["total"] == 150 and len(group["members"]) == 150
    assert {m["s"] for m in group["members"]} == {"Completed"}


def test_up_to_100_nodes_every_task_run_is_its_own_node(monitors: Monitors) -> None:
    @flow(name="hundred")
    def hundred() -> None:
        [f.wait() for f in load.map(range(100))]

    hundred()
    snap = monitors.models[0].snapshot()
    assert not snap["graph"]["collapsed"] and len(snap["graph"]["nodes"]) == 100


def test_a_subflow_is_one_node_that_counts_its_own_tasks(monitors: Monitors) -> None:
    @flow(name="inner")
    def inner() -> int:
        return double(load(1)) + double(2)

    @flow(name="outer")
    def outer() -> None:
        inner()
        load(5)

    outer()
    model = monitors.models[0]
    snap = model.snapshot(final=True)

    assert len(monitors.models) == 1  # a subflow is not a monitor of its own
    nodes = {n["label"]: n for n in snap["graph"]["nodes"]}
    assert sorted(nodes) == ["inner", "load"] and nodes["inner"]["kind"] == "flow"
    assert snap["nodes"][nodes["inner"]["id"]]["c"] == {"Completed": 3}
    assert {name: n for name, (_t, n) in snap["counts"].items()} == {"Completed": 4}  # all task runs count
    detail = model.detail(nodes["inner"]["id"])
    assert detail is not None and sorted(m["name"] for m in detail["members"]) == ["double", "double-2", "load"]


def test_the_state_log_is_bounded_and_a_burst_is_counted_not_sent() -> None:
    root = FlowRun("chatty-crow", "etl", {})
    run = TaskRun("talker", "talker", "mod.talker", root.id, {})
    model = MonitorModel(root.id)
    model.feed(RunCreated(root))
    model.feed(RunCreated(run))
    for i in range(2000):
        model.feed(LogEmitted(run, 20, f"line {i}", 1000.0 + i, "user"))

    delta = model.take_delta()
    snap = model.snapshot()

    assert delta is not None and len(delta["log"]) == 60 and delta["skipped"] == 2000 - 60
    assert delta["log"][-1][6] == "line 1999"  # the newest are the ones shown
    assert len(snap["log"]) == LOG_LIMIT and snap["log"][0][6] == f"line {2000 - LOG_LIMIT}"
    detail = model.detail(run.id)
    assert detail is not None and detail["logs"][-1][2] == "line 1999" and len(detail["logs"]) <= 300


def test_a_failed_task_shows_the_users_traceback_without_engine_frames(monitors: Monitors) -> None:
    @flow(name="fails")
    def fails() -> None:
        boom.submit(7).wait()

    fails()
    model = monitors.models[0]
    node_id = next(iter(model.snapshot()["nodes"]))
    detail = model.detail(node_id)

    assert detail is not None and detail["state"] == "Failed" and detail["error"] == "ValueError: bad row 7"
    assert 'raise ValueError(f"bad row {x}")' in detail["traceback"] and "in boom" in detail["traceback"]
    assert "_engine.py" not in detail["traceback"] and "_task_engine.py" not in detail["traceback"]
    assert detail["attempts"] == 1 and detail["end"] >= detail["start"]
    assert any("Retries are exhausted" in line[2] for line in detail["logs"])  # its error log line


def test_a_cache_hit_is_shown_as_cached_with_its_key(monitors: Monitors) -> None:
    @task(cache_policy=cache_policies.INPUTS)
    def square(x: int) -> int:
        return x * x

    @flow(name="squares")
    def squares() -> None:
        square(3)

    squares()
    squares()
    second = monitors.models[1]
    node_id, node = next(iter(second.snapshot()["nodes"].items()))
    detail = second.detail(node_id)

    assert node["s"] == "Cached" and node["t"] == "COMPLETED"
    assert detail is not None and detail["cache"] == "hit" and len(detail["cache_key"]) >= 16
    first = monitors.models[0].detail(next(iter(monitors.models[0].snapshot()["nodes"])))
    assert first is not None and first["cache"] == "miss" and first["cache_key"] == detail["cache_key"]


class Touchy:
    """A result that must never be printed, compared or hashed by the monitor."""

    def __repr__(self) -> str:
        raise AssertionError("the monitor stringified a result")

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        raise AssertionError("the monitor compared a result")

    __hash__ = None  # type: ignore[assignment]


def test_results_are_never_stringified_and_are_let_go_once_the_run_ended(tmp_path: Path) -> None:
    rt = Runtime(Settings(home=str(tmp_path / "home"), store_enabled=False), console=False)
    monitors = Monitors(rt)
    made: list[weakref.ref[Touchy]] = []

    @task
    def make() -> Touchy:
        result = Touchy()
        made.append(weakref.ref(result))
        return result

    @task
    def use(x: Touchy) -> int:
        return 1

    @flow(name="touchy")
    def touchy() -> None:
        use(make())

    with use_runtime(rt):
        touchy()
    model = monitors.models[0]
    snap = model.snapshot(final=True)
    for node_id in snap["nodes"]:
        model.detail(node_id)
    from nbflow.jupyter._static import render_html

    assert "touchy" in render_html(snap)
    model.compact()
    gc.collect()
    assert made and made[0]() is None  # the monitor no longer keeps the result alive
    assert states_by_label(model.snapshot()) == {"make": "Completed", "use": "Completed"}


def test_the_final_picture_is_the_same_before_and_after_the_results_are_let_go(monitors: Monitors) -> None:
    # The widget publishes the final picture from the live records and lets go of them later.
    @flow(name="inner")
    def inner() -> int:
        return load(7)

    cached = load.with_options(name="cached_load", cache_policy=cache_policies.INPUTS)

    @flow(name="mixed")
    def mixed() -> None:
        checked = [double.submit(load.submit(i)) for i in range(3)]
        boom.submit(checked[0]).wait()
        cached(1)
        cached(1)
        inner()

    mixed()
    model = monitors.models[0]

    def picture() -> dict[str, Any]:
        snap = model.snapshot(final=True)
        snap["graph"].pop("v")  # message and graph versions count up with every message
        details = {node_id: model.detail(node_id) for node_id in snap["nodes"]}
        return {**{k: v for k, v in snap.items() if k not in ("seq", "now")}, "panels": details}

    live = picture()
    model.compact()

    assert live["details"] and live["run"]["state"] == "Completed"
    assert picture() == live


def test_a_finished_big_run_is_kept_in_a_few_objects_and_reads_the_same(monitors: Monitors) -> None:
    # A kernel keeps the monitors of its recent cells. Had each kept an object per task run, every
    # full garbage collection in the kernel would walk them all, and later runs would slow down.
    @flow(name="wide")
    def wide() -> None:
        loaded = [load.submit(i) for i in range(2000)]
        failed = boom.submit(loaded[0])
        failed.wait()
        double(loaded[1])

    wide()
    model = monitors.models[0]

    def picture() -> dict[str, Any]:
        snap = model.snapshot(final=True)
        snap["graph"].pop("v")
        panels = {node_id: model.detail(node_id) for node_id in snap["nodes"]}
        some = [m["id"] for m in panels["k:" + load.task_key]["members"][:3]]
        return {**{k: v for k, v in snap.items() if k not in ("seq", "now")}, "panels": panels,
                "runs": {run_id: model.detail(run_id) for run_id in some}}

    model.snapshot()  # the first message carries (or skips) the log lines so far; the rest compare
    live = picture()
    assert live["graph"]["collapsed"] and live["panels"]["k:" + load.task_key]["total"] == 2000
    model.compact()
    gc.collect()
    assert tracked_objects_of(model) < LOG_LIMIT + 100  # the bounded state log, not an object per task run
    assert picture() == live
    failure = [m for m in live["panels"]["k:" + boom.task_key]["members"]][0]
    assert "bad row 0" in model.detail(failure["id"])["traceback"]  # a failure keeps its traceback


def test_runs_of_other_flows_on_the_same_bus_are_not_shown(monitors: Monitors) -> None:
    @flow(name="first")
    def first() -> None:
        load(1)

    @flow(name="second")
    def second() -> None:
        load(2)
        load(3)

    first()
    second()
    snap = monitors.models[0].snapshot()
    assert list(labels(snap).values()) == ["load"] and snap["run"]["flow"] == "first"


def test_an_edge_announced_before_its_runs_appears_once_they_do() -> None:
    model = MonitorModel("root")
    model.feed(RunCreated(RunRecord("root", "flow", "stored-run", flow_name="etl")))
    model.feed(EdgesAdded("root", ("a",), "b"))
    assert model.snapshot()["graph"]["edges"] == []
    model.feed(RunCreated(RunRecord("a", "task", "a", task_key="mod.a", task_name="a", flow_run_id="root")))
    b = RunRecord("b", "task", "b", task_key="mod.b", task_name="b", flow_run_id="root",
                  state=State(StateType.COMPLETED, "Cached", timestamp=5.0), cache_key="k" * 64)
    model.feed(RunCreated(b))
    model.feed(StateChanged(b, b.state))

    snap = model.snapshot(final=True)
    assert snap["graph"]["edges"] == [["a", "b"]]
    assert snap["nodes"]["b"]["s"] == "Cached" and snap["details"]["b"]["cache"] == "hit"
