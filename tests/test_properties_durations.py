"""Durations (nbflow/_core/durations.py), property-tested: what ``format_duration`` writes,
``parse_duration`` reads back (the CLI prints durations people paste into ``--older-than``), and bad
input gets one clear ``ValueError``."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbflow._core.durations import format_duration, parse_duration

QUICK = settings(max_examples=200, deadline=None, database=None)
SECONDS = st.floats(min_value=0, max_value=10 * 365 * 86400, allow_nan=False)


def resolution(seconds: float) -> float:
    """How far the printed form may be from the value: milliseconds, tenths, seconds, minutes."""
    return 0.0005 if seconds < 1 else 0.05 if seconds < 60 else 1.0 if seconds < 3600 else 60.0


@QUICK
@given(SECONDS)
def test_what_format_writes_parse_reads_back(seconds):
    text = format_duration(seconds)
    assert parse_duration(text) == pytest.approx(seconds, abs=resolution(seconds) + 1e-9), text


@QUICK
@given(SECONDS)
def test_numbers_timedeltas_and_units_agree(seconds):
    assert parse_duration(seconds) == seconds
    assert parse_duration(timedelta(seconds=seconds)) == pytest.approx(seconds, abs=1e-6)
    whole = math.floor(seconds)
    assert parse_duration(f"{whole}s") == parse_duration(f"{whole}S") == float(whole)
    assert parse_duration(f"{whole}m") == 60.0 * whole


@QUICK
@given(st.one_of(st.text(max_size=12), st.floats(), st.integers(max_value=-1)))
def test_bad_input_is_one_clear_value_error(value):
    try:
        seconds = parse_duration(value)
    except ValueError as exc:  # the message names the value, and says what a duration is
        assert repr(value) in str(exc), str(exc)
        assert any(hint in str(exc) for hint in ("e.g. 90s", "negative", "finite")), str(exc)
    else:  # whatever is accepted is a real, usable duration
        assert math.isfinite(seconds) and seconds >= 0
