"""Flow parameters are validated and coerced from type hints before a run starts."""

from __future__ import annotations

import datetime as dt

import pytest

from nbflow import flow
from nbflow.exceptions import ParameterTypeError


@flow
def typed(count: int, when: dt.date, ratio: float = 0.5, tags: list[str] | None = None):
    return count, when, ratio, tags


def test_values_are_coerced_to_their_hints(harness):
    assert typed("3", "2026-01-02", ratio="1.5") == (3, dt.date(2026, 1, 2), 1.5, None)


def test_a_bad_value_fails_before_the_run_and_names_the_parameter(harness):
    with pytest.raises(ParameterTypeError) as info:
        typed("many", "2026-01-02", tags=[1, {}])
    message = str(info.value)
    assert "Flow 'typed' received invalid parameters" in message
    assert "- count:" in message and "(got str 'many')" in message
    assert "- tags:" in message
    assert harness.recorder.events == []  # no run was created


def test_validation_can_be_turned_off(harness):
    loose = typed.with_options(validate_parameters=False)
    assert loose("3", "x") == ("3", "x", 0.5, None)


def test_wrong_arguments_name_the_flow(harness):
    with pytest.raises(TypeError, match="Flow 'typed': missing a required argument: 'when'"):
        typed(1)
