"""Tasks in flows: blocking calls, submit, map, futures, graph edges, upstream failures."""

from __future__ import annotations

import threading
import time

import pytest

from nbflow import ThreadPoolTaskRunner, flow, task, unmapped
from nbflow._core.events import RunCreated, StateChanged
from nbflow._core.settings import Settings
from nbflow._engine.runtime import Runtime, use_runtime
from nbflow.exceptions import MissingContextError, UpstreamTaskError
from nbflow.futures import as_completed, wait


@task
def add(x, y):
    return x + y


@task
def boom(message="boom"):
    raise ValueError(message)


def test_task_outside_flow_is_a_plain_call(harness):
    assert add(1, 2) == 3
    assert add(1, 2, return_state=True).result() == 3
    failed = boom("outside", return_state=True)
    assert failed.is_failed() and isinstance(failed.result(raise_on_failure=False), ValueError)
    assert harness.recorder.events == []  # no run was created


def test_submit_outside_flow_says_how_to_fix_it(harness):
    with pytest.raises(MissingContextError, match=r"inside a @flow function or a %%flow cell.*add\(\.\.\.\) directly"):
        add.submit(1, 2)


def test_blocking_call_returns_result_and_records_states(harness):
    @flow
    def pipeline():
        return add(add(1, 2), 3)

    assert pipeline() == 6
    assert harness.recorder.states("add") == ["Pending", "Running", "Completed"]
    assert [r.name for r in harness.recorder.runs("task")] == ["add", "add-2"]


def test_submit_map_and_unmapped(harness):
    @flow
    def pipeline():
        futures = add.map([1, 2, 3], unmapped(10))
        single = add.submit(5, 5)
        return futures.result(), single.result()

    assert pipeline() == ([11, 12, 13], 10)


def test_map_rejects_iterables_of_different_lengths(harness):
    @flow
    def pipeline():
        add.map([1, 2], [1, 2, 3])

    with pytest.raises(ValueError, match=r"different lengths: \{'x': 2, 'y': 3\}"):
        pipeline()


def test_return_state_gives_the_final_state_instead_of_raising(harness):
    seen = []

    @flow
    def pipeline():
        state = boom(return_state=True)  # does not raise
        seen.append(state)
        return "went on"

    assert pipeline() == "went on"
    assert seen[0].is_failed() and isinstance(seen[0].result(raise_on_failure=False), ValueError)


def test_a_flow_returning_a_failed_state_fails_as_in_prefect(harness):
    @flow
    def pipeline():
        return boom(return_state=True)

    state = pipeline(return_state=True)
    assert state.is_failed()
    with pytest.raises(ValueError, match="boom"):
        pipeline()


def test_failed_task_raises_its_own_exception_in_the_flow(harness):
    @flow
    def pipeline():
        try:
            boom("inner")
        except ValueError as exc:
            return f"caught {exc}"

    assert pipeline() == "caught inner"
    assert harness.recorder.states("boom")[-1] == "Failed"
    assert "Task run 'boom' - Finished in state Failed('Task run encountered an exception ValueError: inner')" in harness.console


def test_future_api(harness):
    release = threading.Event()

    @task
    def gated():
        release.wait(5)
        return "done"

    @flow
    def pipeline():
        future = gated.submit()
        assert not future.done()
        assert future.state.type.value in ("PENDING", "RUNNING")
        with pytest.raises(TimeoutError, match="did not finish within 0.05 seconds"):
            future.result(timeout=0.05)
        done, not_done = wait([future], timeout=0.05)
        assert (done, not_done) == (set(), {future})
        release.set()
        future.wait()
        assert future.state.is_completed()
        failing = boom.submit("late")
        error = failing.result(raise_on_failure=False)
        assert isinstance(error, ValueError)
        with pytest.raises(ValueError, match="late"):
            failing.result()
        return future.result()

    assert pipeline() == "done"


def test_as_completed_yields_the_fastest_first(harness):
    @task
    def sleepy(seconds):
        time.sleep(seconds)
        return seconds

    @flow
    def pipeline():
        futures = [sleepy.submit(0.3), sleepy.submit(0.01)]
        return [f.result() for f in as_completed(futures)]

    assert pipeline() == [0.01, 0.3]


def test_futures_and_returned_objects_record_edges(harness):
    @task
    def load():
        return [1, 2, 3]

    @task
    def total(values):
        return sum(values)

    @task
    def size(values):
        return len(values)

    @flow
    def pipeline():
        data = load()  # a returned object
        fut = load.submit()  # a future
        return total(data), total(fut), size([fut, 1])  # a future inside a list

    assert pipeline() == (6, 6, 2)
    runs = {r.id: r.name for r in harness.recorder.runs("task")}
    edges = sorted((runs[up], runs[down]) for up, down in harness.recorder.edges())
    assert edges == [("load", "total"), ("load-2", "size"), ("load-2", "total-2")]


def test_downstream_of_failed_upstream_does_not_run_and_names_it(harness):
    ran = []

    @task
    def after(value):
        ran.append(value)

    @flow
    def pipeline():
        upstream = boom.submit()
        return after(upstream, return_state=True)

    state = pipeline(return_state=True)
    assert ran == []
    assert state.name == "NotReady" and state.is_failed()
    assert "Upstream task run 'boom' did not complete" in state.message
    with pytest.raises(UpstreamTaskError, match="'boom'"):
        state.result()


def test_a_thousand_submitted_tasks_complete_with_no_lost_state_events(harness):
    @task
    def square(i):
        return i * i

    @flow
    def pipeline():
        futures = [square.submit(i) for i in range(1000)]
        return [f.result() for f in futures]

    assert pipeline() == [i * i for i in range(1000)]
    per_run: dict[str, list[str]] = {}
    for event in harness.recorder.events:
        if isinstance(event, (RunCreated, StateChanged)) and event.run.kind == "task":
            per_run.setdefault(event.run.id, []).append(event.state.name)
    assert len(per_run) == 1000
    assert all(names == ["Pending", "Running", "Completed"] for names in per_run.values())


def test_tasks_may_submit_and_wait_for_tasks_even_with_one_worker(harness):
    @task
    def leaf(i):
        return i

    @task
    def fan_out(n):
        return sum(f.result() for f in [leaf.submit(i) for i in range(n)])

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=1))
    def pipeline():
        return [f.result() for f in [fan_out.submit(3), fan_out.submit(4)]]

    assert pipeline() == [3, 6]


def test_a_thread_pool_never_runs_more_threads_than_its_size(harness):
    seen: set[str] = set()

    @task
    def where(_):
        seen.add(threading.current_thread().name)
        time.sleep(0.01)

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=3))
    def pipeline():
        where.map(range(30)).wait()

    pipeline()
    assert 1 <= len(seen) <= 3


def test_the_default_pool_is_sized_by_the_task_runner_max_workers_setting(tmp_path):
    runtime = Runtime(Settings(home=str(tmp_path / "home"), store_enabled=False, task_runner_max_workers=2), console=False)
    lock = threading.Lock()
    running = peak = 0
    seen: set[str] = set()

    @task
    def hold(_):
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
            seen.add(threading.current_thread().name)
        time.sleep(0.02)  # long enough for the pool's other threads to overlap with this one
        with lock:
            running -= 1

    @flow  # no task_runner given: the default pool, min(32, cores + 4) >= 5 threads without the setting
    def pipeline():
        hold.map(range(12)).wait()

    with use_runtime(runtime):
        pipeline()
    assert peak <= 2 and len(seen) <= 2


def test_with_options_and_unknown_options(harness):
    renamed = add.with_options(name="plus", tags=["math"])

    @flow
    def pipeline():
        return renamed(1, 1)

    assert pipeline() == 2
    run = harness.recorder.runs("task")[0]
    assert (run.name, run.tags) == ("plus", ("math",))
    with pytest.raises(TypeError, match=r"unexpected option\(s\) retires; valid options: .*retries"):
        task(retires=3)(lambda: None)
    with pytest.raises(ValueError, match="retries must be a whole number >= 0"):
        task(retries=-1)(lambda: None)
    with pytest.raises(TypeError, match="cache_policy must be a policy from nbflow.cache_policies"):
        task(cache_policy="inputs")(lambda: None)


@pytest.mark.parametrize(("options", "error", "message"), [
    ({"name": add}, TypeError, "name must be a string, got Task"),
    ({"timeout_seconds": True}, ValueError, "timeout_seconds must be a number > 0, got True"),
    ({"timeout_seconds": float("nan")}, ValueError, "timeout_seconds must be a number > 0"),
    ({"task_run_name": 3}, TypeError, "task_run_name must be a template string"),
])
def test_options_of_the_wrong_kind_are_refused_when_the_task_is_defined(options, error, message):
    with pytest.raises(error, match=message):
        task(**options)(lambda: None)


def test_a_task_runner_class_is_used_with_its_defaults_and_anything_else_is_refused(harness):
    @flow(task_runner=ThreadPoolTaskRunner)  # Prefect accepts the class too
    def pipeline():
        return add.submit(1, 2).result()

    assert pipeline() == 3
    with pytest.raises(TypeError, match="task_runner must be a task runner such as ThreadPoolTaskRunner"):
        flow(task_runner="threads")(lambda: None)


def test_task_run_name_template(harness):
    @task(task_run_name="fetch-{city}")
    def fetch(city):
        return city

    @flow
    def pipeline():
        fetch("oslo")
        fetch(city="lima")

    pipeline()
    assert [r.name for r in harness.recorder.runs("task")] == ["fetch-oslo", "fetch-lima"]


def test_task_with_positional_only_and_var_args(harness):
    @task
    def combine(a, /, *rest, scale=1, **named):
        return (a + sum(rest)) * scale + sum(named.values())

    @flow
    def pipeline():
        return combine(1, 2, 3, scale=2, bonus=10), combine.submit(1, scale=3).result()

    assert pipeline() == (22, 3)


def test_results_the_flow_no_longer_holds_are_freed_before_it_ends(tmp_path):
    """A loop over large results must not keep every one of them alive until the flow ends."""
    import gc
    import weakref

    from nbflow._core.settings import Settings
    from nbflow._engine.runtime import Runtime, use_runtime

    class Big:
        pass

    freed: list[int] = []

    @task
    def make(i):
        big = Big()
        weakref.finalize(big, freed.append, i)
        return big

    @task
    def use(big):
        return 1

    @flow
    def pipeline():
        for i in range(3):
            use(make(i))  # a returned object passed on: an edge, then dropped
        for i in range(3, 6):
            make.submit(i).wait()  # a future dropped once done
        gc.collect()
        return sorted(freed)

    with use_runtime(Runtime(Settings(home=tmp_path, store_enabled=False), console=False)):
        assert pipeline() == [0, 1, 2, 3, 4, 5]
