"""Retries and backoff at task and flow level, timed with a fake clock so nothing sleeps."""

from __future__ import annotations

import pytest

from nbflow import flow, task
from nbflow.tasks import exponential_backoff


def flaky(failures: int, error=ValueError):
    """A function that fails ``failures`` times, then returns the attempt number."""
    calls = []

    def fn():
        calls.append(1)
        if len(calls) <= failures:
            raise error(f"attempt {len(calls)}")
        return len(calls)

    fn.calls = calls
    return fn


def test_task_retries_with_listed_delays_and_logs_them(fake_time):
    body = flaky(3)
    retried = task(retries=3, retry_delay_seconds=[1, 10])(body)

    @flow
    def pipeline():
        return retried()

    assert pipeline() == 4
    assert fake_time.clock.sleeps == [1.0, 10.0, 10.0]
    assert "Task run 'fn' - Retrying in 10.0 seconds..." in fake_time.console
    assert fake_time.recorder.states("fn") == ["Pending", "Running", "Retrying", "Retrying", "Retrying", "Completed"]
    assert fake_time.recorder.runs("task")[0].run_count == 4


def test_retries_exhausted_ends_failed_with_the_last_error(fake_time):
    retried = task(retries=2, retry_delay_seconds=5)(flaky(10))

    @flow
    def pipeline():
        return retried(return_state=True)

    state = pipeline(return_state=True)  # a flow returning a state takes that state
    assert state.is_failed() and "attempt 3" in state.message
    assert fake_time.clock.sleeps == [5.0, 5.0]
    assert "Retries are exhausted" in fake_time.console


def test_exponential_backoff_and_jitter_stay_in_bounds(fake_time):
    retried = task(retries=4, retry_delay_seconds=exponential_backoff(backoff_factor=2), retry_jitter_factor=0.5)(flaky(4))

    @flow
    def pipeline():
        return retried()

    assert pipeline() == 5
    for slept, base in zip(fake_time.clock.sleeps, [2, 4, 8, 16]):
        assert base * 0.5 <= slept <= base * 1.5
    assert len(fake_time.clock.sleeps) == 4


def test_retry_condition_fn_can_stop_retries(fake_time):
    retried = task(
        retries=5,
        retry_condition_fn=lambda task, task_run, state: not isinstance(state.data, KeyError),
    )(flaky(5, error=KeyError))

    @flow
    def pipeline():
        return retried(return_state=True)

    assert pipeline(return_state=True).is_failed()
    assert fake_time.clock.sleeps == []  # KeyError is not worth retrying


def test_a_retrying_task_under_submit(fake_time):
    body = flaky(2)
    retried = task(retries=2, retry_delay_seconds=3)(body)

    @flow
    def pipeline():
        return retried.submit().result()

    assert pipeline() == 3
    assert fake_time.clock.sleeps == [3.0, 3.0]


def test_flow_retry_reruns_the_flow_body(fake_time):
    body_runs = []

    @task
    def step():
        return len(body_runs)

    @flow(retries=2, retry_delay_seconds=7)
    def pipeline():
        body_runs.append(step())
        if len(body_runs) < 3:
            raise RuntimeError("try again")
        return body_runs

    assert pipeline() == [0, 1, 2]
    assert fake_time.clock.sleeps == [7.0, 7.0]
    assert "Retrying in 7.0 seconds..." in fake_time.console
    assert fake_time.recorder.runs("flow")[0].run_count == 3


@pytest.mark.parametrize("bad", [-1, "soon", [1, "x"], True])
def test_bad_retry_delays_are_rejected_with_a_clear_message(bad):
    with pytest.raises(ValueError, match="retry_delay_seconds must be a number >= 0"):
        task(retries=1, retry_delay_seconds=bad)(lambda: None)


def test_a_retry_delay_function_that_raises_crashes_the_flow_run_and_leaves_no_run_behind(fake_time):
    @flow(retries=2, retry_delay_seconds=lambda retries: 1 / 0, log_prints=True)
    def pipeline():
        return "never"

    @task
    def plain():
        return "called"

    with pytest.raises(ZeroDivisionError):
        pipeline()
    (run,) = fake_time.recorder.runs("flow")
    assert run.state.name == "Crashed"
    assert plain() == "called" and len(fake_time.recorder.runs("task")) == 0  # back outside any flow run
