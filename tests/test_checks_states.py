"""State kinds are data: a state's display name (Prefect's ``State(name=...)``) never changes what the
engine does with it; its type and its data do."""

from __future__ import annotations

import pytest

from nbflow import flow, task
from nbflow._engine import task_run as _task_engine
from nbflow.states import State, StateType


@pytest.mark.parametrize("name", ["Failed", "Rejected"])
def test_a_flow_returning_a_custom_named_failed_state_behaves_as_failed(harness, name):
    failures = []

    @flow(on_failure=[lambda f, run, state: failures.append(state.name)])
    def pipeline():
        return State(StateType.FAILED, name=name, message="bad batch", data=ValueError("bad batch"))

    with pytest.raises(ValueError, match="bad batch"):
        pipeline()
    assert failures == [name]
    console = harness.console
    assert "| ERROR   | Flow run" in console and "Encountered exception during execution" in console, console
    assert "ValueError: bad batch" in console
    assert console.splitlines()[-1].endswith(f"Finished in state {name}('bad batch'" + (")" if name == "Failed" else ", type=FAILED)"))


@pytest.fixture
def renamed_failures(monkeypatch):
    """A deliberately injected fault: every failed attempt of a task ends in a state named "Rejected"."""
    real = _task_engine._outcome_state

    def outcome_state(*args):
        state = real(*args)
        return state.copy(name="Rejected") if state.type is StateType.FAILED else state

    monkeypatch.setattr(_task_engine, "_outcome_state", outcome_state)


def test_a_task_ending_in_a_custom_named_failed_state_behaves_as_failed(harness, renamed_failures):
    hooks, attempts = [], []

    @task(retries=1, retry_delay_seconds=0, on_failure=[lambda t, run, state: hooks.append(state.name)])
    def load():
        attempts.append(1)
        raise ValueError("no rows")

    @task
    def report(rows):
        return rows

    seen = []

    @flow
    def pipeline():
        rows = load.submit()
        seen.append(report(rows, return_state=True))
        seen.append(rows.state)

    pipeline(return_state=True)
    downstream, state = seen
    assert (state.name, state.type) == ("Rejected", StateType.FAILED)
    assert len(attempts) == 2  # retried as a failure is
    assert hooks == ["Rejected"]
    assert downstream.name == "NotReady"  # the downstream task did not run
    with pytest.raises(ValueError, match="no rows"):
        state.result()
    assert "Task run failed with exception: ValueError('no rows') - Retries are exhausted" in harness.console


def test_a_timeout_is_not_logged_as_an_exception_of_the_users_code(harness):
    """What decides the exception log line is the data (a user's exception), not the name."""
    import time

    @task(timeout_seconds=0.05)
    def slow():
        time.sleep(0.5)

    seen = []

    @flow
    def pipeline():
        seen.append(slow(return_state=True))

    pipeline()
    [state] = seen
    assert state.name == "TimedOut"
    assert "Task run failed with exception" not in harness.console
