"""States read like Prefect's and answer the same questions."""

from __future__ import annotations

import pytest

from nbflow.states import Cached, Cancelled, Completed, Crashed, Failed, Pending, Retrying, Running, Scheduled, StateType, TimedOut


def test_reprs_match_prefect_logs():
    assert repr(Completed()) == "Completed()"
    assert repr(Failed("boom")) == "Failed('boom')"
    assert repr(Cached()) == "Cached(type=COMPLETED)"
    assert repr(TimedOut("late")) == "TimedOut('late', type=FAILED)"
    assert repr(Retrying()) == "Retrying(type=RUNNING)"


@pytest.mark.parametrize(
    "state, predicate",
    [(Scheduled(), "is_scheduled"), (Pending(), "is_pending"), (Running(), "is_running"), (Completed(), "is_completed"),
     (Cached(), "is_completed"), (Failed(), "is_failed"), (TimedOut(), "is_failed"), (Crashed(), "is_crashed"),
     (Cancelled(), "is_cancelled")],
)
def test_predicates(state, predicate):
    assert getattr(state, predicate)()
    assert state.is_final() == (state.type in {StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED})


def test_result_returns_data_or_raises_the_error():
    assert Completed(data=None).result() is None
    assert Cached(data=[1]).result() == [1]
    error = KeyError("k")
    with pytest.raises(KeyError):
        Failed(data=error).result()
    assert Failed(data=error).result(raise_on_failure=False) is error
    with pytest.raises(ValueError, match="not final"):
        Running().result()
