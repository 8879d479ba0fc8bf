"""Submitted tasks on a real Dask cluster (worker processes), with states and logs kept locally."""

from __future__ import annotations

import os
import time

import pytest

distributed = pytest.importorskip("distributed")

from nbflow import flow, get_run_logger, task  # noqa: E402
from nbflow.dask import DaskTaskRunner  # noqa: E402

pytestmark = pytest.mark.slow  # a Dask cluster of worker processes


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=2, processes=True, dashboard_address=None) as c:
        yield c


@task
def where(x):
    get_run_logger().info(f"working on {x}")
    print(f"printed {x}")
    return os.getpid(), x * 10


@task(retries=2)
def fails_then_works(marker_path):
    # state across attempts lives in a file: each attempt may run in another worker process
    count = int(open(marker_path).read()) if os.path.exists(marker_path) else 0
    with open(marker_path, "w") as handle:
        handle.write(str(count + 1))
    if count < 2:
        raise ValueError(f"attempt {count + 1}")
    return count + 1


@task(timeout_seconds=0.5)
def too_slow():
    time.sleep(3)


def test_tasks_run_in_worker_processes_and_their_logs_come_back(harness, cluster):
    @flow(task_runner=DaskTaskRunner(address=cluster.scheduler_address), log_prints=True)
    def pipeline():
        return where.map(range(4)).result()

    results = pipeline()
    assert [value for _pid, value in results] == [0, 10, 20, 30]
    assert {pid for pid, _ in results} - {os.getpid()}, "tasks should run in worker processes"
    assert all(pid != os.getpid() for pid, _ in results)
    assert "Task run 'where-3' - working on 2" in harness.console
    assert "Task run 'where-3' - printed 2" in harness.console
    assert harness.recorder.states("where-4") == ["Pending", "Running", "Completed"]


def test_failures_retries_and_timeouts_on_dask(harness, cluster, tmp_path):
    @flow(task_runner=DaskTaskRunner(address=cluster.scheduler_address))
    def pipeline():
        retried = fails_then_works.submit(str(tmp_path / "attempts"))
        slow = too_slow.submit()
        return retried.result(), slow.state.name if slow.wait() is None else None

    assert pipeline() == (3, "TimedOut")
    assert harness.recorder.states("fails_then_works").count("Retrying") == 2


def test_a_temporary_local_cluster_is_started_and_closed(harness):
    runner = DaskTaskRunner(cluster_kwargs={"n_workers": 1, "processes": False, "threads_per_worker": 2})

    @flow(task_runner=runner)
    def pipeline():
        return where.submit(1).result()[1]

    assert pipeline() == 10
