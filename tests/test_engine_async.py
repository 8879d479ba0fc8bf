"""Async flows and tasks, also from inside a running event loop (as in a Jupyter kernel)."""

from __future__ import annotations

import asyncio

from nbflow import flow, task


@task
async def double(x):
    await asyncio.sleep(0.01)
    return 2 * x


@task
def inc(x):
    return x + 1


@flow
async def async_pipeline(x: int):
    a = await double(x)
    futures = [double.submit(a), inc.submit(a)]
    return [f.result() for f in futures]


def test_async_flow_awaited_inside_a_running_loop(harness):
    async def notebook_cell():  # the kernel's loop is already running when a cell awaits
        return await async_pipeline(3)

    assert asyncio.run(notebook_cell()) == [12, 7]
    assert harness.recorder.states("double")[-1] == "Completed"


def test_calling_an_async_flow_returns_an_awaitable(harness):
    coro = async_pipeline(1)
    assert asyncio.iscoroutine(coro)
    assert asyncio.run(coro) == [4, 3]


def test_sync_flow_with_async_tasks_called_while_a_loop_runs(harness):
    @flow
    def sync_pipeline():
        return double.submit(5).result()

    async def notebook_cell():
        return sync_pipeline()  # must not call asyncio.run on this (the loop's) thread

    assert asyncio.run(notebook_cell()) == 10


def test_async_task_outside_a_flow_is_a_plain_coroutine(harness):
    assert asyncio.run(double(4)) == 8
