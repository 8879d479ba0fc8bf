"""A monitor fed from the run store (a real SQLite file) shows what a live monitor showed."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nbflow import flow, task
from nbflow._app.wiring import build_runtime
from nbflow._core.events import RunCreated
from nbflow._core.settings import Settings
from nbflow._engine.runtime import Runtime, use_runtime
from nbflow.exceptions import RunNotFoundError
from nbflow.jupyter._monitor_model import MonitorModel
from nbflow.jupyter._monitor_store import StoreFollower, load_model


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    rt = build_runtime(Settings(home=str(tmp_path / "home")), console=False)
    assert rt.store is not None
    with use_runtime(rt):
        yield rt
    rt.store.close()


@task
def load(i: int) -> int:
    return i


@task
def check(x: int) -> int:
    if x == 1:
        raise ValueError("x must not be 1")
    return x


@flow(name="inner")
def inner() -> int:
    return load(10)


@flow(name="pipeline")
def pipeline() -> None:
    for i in range(3):
        check.submit(load.submit(i))
    inner()


def comparable(snap: dict[str, Any]) -> dict[str, Any]:
    names = {n["id"]: n["label"] for n in snap["graph"]["nodes"]}
    return {
        "run": {k: snap["run"][k] for k in ("id", "name", "flow", "state", "type")},
        "counts": snap["counts"],
        "nodes": sorted((names[i], s.get("s"), s.get("a"), s.get("c")) for i, s in snap["nodes"].items()),
        "edges": sorted((names[u], names[v]) for u, v in snap["graph"]["edges"]),
    }


def test_a_stored_run_looks_as_it_did_live(runtime: Runtime) -> None:
    live: list[MonitorModel] = []

    def on_event(event: Any) -> None:
        if event.__class__ is RunCreated and event.run.kind == "flow" and event.run.parent_flow_run_id is None:
            live.append(MonitorModel(event.run.id))
            live[-1].seed(event.run)
            runtime.bus.subscribe(live[-1].feed)

    runtime.bus.subscribe(on_event)
    pipeline()
    assert runtime.store is not None
    with runtime.store.reading(flush=True) as conn:
        stored, follower = load_model(conn, live[0].snapshot()["run"]["name"])  # by run name

    want, got = live[0].snapshot(final=True), stored.snapshot(final=True)
    assert comparable(got) == comparable(want)
    assert follower.finished
    failed = next(i for i, s in got["nodes"].items() if s.get("s") == "Failed")
    assert got["nodes"][failed]["err"] == "Task run encountered an exception ValueError: x must not be 1"
    assert any("x must not be 1" in line[2] for line in got["details"][failed]["logs"])
    # The same state log lines (live they come in emit order, stored ones in timestamp order).
    assert sorted(e[6] for e in got["log"] if e[3] == "check-2") == sorted(e[6] for e in want["log"] if e[3] == "check-2")


def test_a_follower_sees_a_running_run_move_on(runtime: Runtime) -> None:
    started, release = threading.Event(), threading.Event()

    @task
    def gate() -> int:
        started.set()
        release.wait(30)
        return 1

    @flow(name="gated")
    def gated() -> None:
        load(0)
        gate()

    thread = threading.Thread(target=contextvars.copy_context().run, args=(gated,))  # in this runtime
    thread.start()
    try:
        assert started.wait(30)
        assert runtime.store is not None
        with runtime.store.reading(flush=True) as conn:
            run_id = conn.execute("SELECT id FROM flow_runs WHERE flow_name = 'gated'").fetchone()[0]
            model = MonitorModel(run_id)
            follower = StoreFollower(model)
            follower.poll(conn)
        running = model.snapshot()
        assert not follower.finished and running["run"]["state"] == "Running"
        assert sorted(s["s"] for s in running["nodes"].values()) == ["Completed", "Running"]
    finally:
        release.set()
        thread.join(30)
    with runtime.store.reading(flush=True) as conn:
        follower.poll(conn)
    done = model.snapshot()
    assert follower.finished and done["run"]["state"] == "Completed"
    assert sorted(s["s"] for s in done["nodes"].values()) == ["Completed", "Completed"]
    assert [e[6] for e in done["log"] if e[3] == "gate"][-2:] == ["→ Completed", "Finished in state Completed()"]


def test_an_unknown_run_is_one_clear_error(runtime: Runtime) -> None:
    assert runtime.store is not None
    with runtime.store.reading() as conn, pytest.raises(RunNotFoundError, match="No flow run has the id"):
        load_model(conn, "no-such-run")
