"""Tag limits: a limit named like a task tag caps how many task runs with that tag run at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from nbflow import ThreadPoolTaskRunner, flow, task
from nbflow._app.wiring import build_runtime
from nbflow._core.events import RunCreated, StateChanged
from nbflow._core.settings import Settings
from nbflow._engine.context import flow_context
from nbflow._engine.runtime import Runtime, use_runtime
from nbflow.concurrency import limits


class Recorder:
    def __init__(self) -> None:
        self.events: list[RunCreated | StateChanged] = []

    def __call__(self, event) -> None:
        if isinstance(event, (RunCreated, StateChanged)):  # a run's first state comes with it
            self.events.append(event)


@pytest.fixture
def runtime(tmp_path) -> Iterator[Runtime]:
    recorder = Recorder()
    rt = build_runtime(
        Settings(home=tmp_path / "home", store_enabled=False), subscribers=(recorder,), console=False
    )
    rt.recorder = recorder  # type: ignore[attr-defined]
    with use_runtime(rt):
        yield rt


def test_fifty_submitted_tagged_tasks_never_exceed_the_tag_limit(runtime):
    limits.create("db", 3)
    lock = threading.Lock()
    seen = {"now": 0, "most": 0}

    @task(tags=["db"])
    def query(i: int) -> int:
        with lock:
            seen["now"] += 1
            seen["most"] = max(seen["most"], seen["now"])
        time.sleep(0.01)
        with lock:
            seen["now"] -= 1
        return i

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=16))
    def etl() -> list[int]:
        futures = [query.submit(i) for i in range(50)]
        return [f.result() for f in futures]

    assert etl() == list(range(50))
    assert 1 <= seen["most"] <= 3
    waits = [e.state for e in runtime.recorder.events if e.state.is_pending() and e.state.message]
    assert waits, "some task runs must have waited"
    assert all(s.message.startswith("Waiting for concurrency limit 'db' (") for s in waits)
    assert limits.inspect("db").active_slots == 0


def test_a_waiting_task_run_is_pending_then_runs(runtime):
    limits.create("gpu", 1)
    release = threading.Event()

    @task(tags=["gpu", "not-a-limit"])
    def train(i: int) -> int:
        if i == 0:
            release.wait(10)
        return i

    @flow
    def pipeline() -> list[int]:
        first = train.submit(0)
        while not limits.inspect("gpu").holders:
            time.sleep(0.005)
        second = train.submit(1)
        while not limits.inspect("gpu").waiters:
            time.sleep(0.005)
        holder = limits.inspect("gpu").holders[0].holder
        assert holder == f"task run 'train' of flow run {flow_context().flow_run.name!r}"
        release.set()
        return [first.result(), second.result()]

    assert pipeline() == [0, 1]
    states = [(e.state.name, e.state.message) for e in runtime.recorder.events if e.run.name == "train-2"]
    assert states == [
        ("Pending", None),
        ("Pending", "Waiting for concurrency limit 'gpu' (1/1 slots in use)"),
        ("Running", None),
        ("Completed", None),
    ]


def test_a_tag_limit_of_zero_holds_tasks_until_it_is_raised(runtime):
    limits.create("paused", 0)

    @task(tags=["paused"])
    def step() -> str:
        return "ran"

    def raise_later() -> None:
        with use_runtime(runtime):
            while not limits.inspect("paused").waiters and not getattr(raise_later, "stop", False):
                time.sleep(0.005)
            limits.update("paused", 1)

    @flow
    def pipeline() -> str:
        return step()

    helper = threading.Thread(target=raise_later)
    helper.start()
    try:
        assert pipeline() == "ran"
    finally:
        raise_later.stop = True  # type: ignore[attr-defined]
        helper.join(10)
    messages = [e.state.message for e in runtime.recorder.events if e.state.is_pending() and e.state.message]
    assert messages == ["Waiting for concurrency limit 'paused' (it has 0 slot(s), 1 needed: waiting until it is raised)"]


def test_tags_without_limits_do_not_create_a_store(runtime, tmp_path):
    @task(tags=["etl"])
    def step() -> int:
        return 1

    @flow
    def pipeline() -> int:
        return step()

    assert pipeline() == 1
    assert not (tmp_path / "home" / "nbflow.db").exists()


def test_async_tagged_tasks_awaited_together_wait_without_blocking_the_loop(runtime):
    import asyncio

    limits.create("aio-db", 1)
    seen = {"now": 0, "most": 0}

    @task(tags=["aio-db"])
    async def fetch(i: int) -> int:
        seen["now"] += 1
        seen["most"] = max(seen["most"], seen["now"])
        await asyncio.sleep(0.02)  # the holder needs the loop to finish: a blocked loop would hang here
        seen["now"] -= 1
        return i

    @flow
    async def pipeline() -> list[int]:
        return list(await asyncio.gather(*(fetch(i) for i in range(4))))

    assert asyncio.run(pipeline()) == [0, 1, 2, 3]
    assert seen["most"] == 1
    assert limits.inspect("aio-db").active_slots == 0
