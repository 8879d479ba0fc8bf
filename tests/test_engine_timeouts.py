"""Timeouts: runs end TimedOut at the limit, callers get a TimeoutError subclass, flows go on."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from nbflow import flow, task
from nbflow.exceptions import FlowRunTimeoutError, RunTimeoutError, TaskRunTimeoutError

# Generous bound: proves the caller did not wait for the 30 s body, without being a timing test.
NOT_WAITING = 10.0


def test_task_timeout_ends_timed_out_and_the_flow_goes_on(harness):
    @task(timeout_seconds=0.2)
    def stuck():
        time.sleep(30)

    @task
    def after():
        return "still running"

    @flow
    def pipeline():
        state = stuck(return_state=True)
        return state, after()

    started = time.monotonic()
    state, rest = pipeline()
    assert time.monotonic() - started < NOT_WAITING
    assert state.name == "TimedOut" and state.is_failed()
    assert rest == "still running"
    with pytest.raises(TaskRunTimeoutError, match="exceeded timeout of 0.2 second") as info:
        state.result()
    assert isinstance(info.value, TimeoutError) and isinstance(info.value, RunTimeoutError)


def test_pure_python_loop_is_stopped_at_the_timeout(harness):
    spinners: list[threading.Thread] = []

    @task(timeout_seconds=0.2)
    def spin():
        spinners.append(threading.current_thread())
        while True:
            time.sleep(0.001)

    @flow
    def pipeline():
        return spin(return_state=True)

    assert pipeline(return_state=True).name == "TimedOut"
    (spinner,) = spinners
    spinner.join(NOT_WAITING)
    assert not spinner.is_alive()  # the thread was stopped, not left spinning


def test_timeout_inside_a_subflow(harness):
    @flow(timeout_seconds=0.2)
    def child():
        time.sleep(30)

    @flow
    def parent():
        state = child(return_state=True)
        return state.name

    started = time.monotonic()
    assert parent() == "TimedOut"
    assert time.monotonic() - started < NOT_WAITING
    assert harness.recorder.states(harness.recorder.runs("flow")[1].name)[-1] == "TimedOut"


def test_flow_timeout_raises_a_timeout_error_to_the_caller(harness):
    @flow(timeout_seconds=0.2)
    def slow():
        time.sleep(30)

    with pytest.raises(FlowRunTimeoutError, match="exceeded timeout of 0.2 second"):
        slow()


def test_async_task_timeout_cancels_the_coroutine(harness):
    cancelled = []

    @task(timeout_seconds=0.1)
    async def wait_forever():
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    @flow
    async def pipeline():
        return await wait_forever(return_state=True)

    state = asyncio.run(pipeline(return_state=True))
    assert state.name == "TimedOut"
    assert cancelled == [True]


def test_submitted_task_timeout(harness):
    @task(timeout_seconds=0.2)
    def stuck():
        time.sleep(30)

    @flow
    def waiter():
        future = stuck.submit()
        future.wait()
        return future.state.name

    assert waiter() == "TimedOut"
