"""Retry delays (nbflow/_core/options.py), property-tested: one delay per retry whatever the spec (a
number, a list whose last value repeats, exponential_backoff), jitter within its documented bounds,
and one clear error for a bad spec."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbflow import task
from nbflow._core.options import TaskOptions, exponential_backoff, jittered, retry_delays

QUICK = settings(max_examples=150, deadline=None, database=None)
DELAY = st.floats(min_value=0, max_value=1e6, allow_nan=False)
RETRIES = st.integers(min_value=0, max_value=30)


@QUICK
@given(RETRIES, DELAY)
def test_a_number_is_the_delay_before_every_retry(retries, delay):
    assert retry_delays(TaskOptions(retries=retries, retry_delay_seconds=delay)) == [delay] * retries


@QUICK
@given(RETRIES, st.lists(DELAY, max_size=10))
def test_a_list_gives_its_delays_in_order_then_repeats_its_last(retries, delays):
    got = retry_delays(TaskOptions(retries=retries, retry_delay_seconds=delays))
    assert len(got) == retries and all(isinstance(d, float) for d in got)
    if not delays:
        assert got == [0.0] * retries
    else:
        assert got[: len(delays)] == delays[:retries]
        assert got[len(delays):] == [delays[-1]] * max(0, retries - len(delays))


@QUICK
@given(RETRIES, st.floats(min_value=0, max_value=1e3, allow_nan=False))
def test_exponential_backoff_doubles(retries, factor):
    got = retry_delays(TaskOptions(retries=retries, retry_delay_seconds=exponential_backoff(factor)))
    assert got == [factor * 2**n for n in range(retries)]


@QUICK
@given(DELAY, st.floats(min_value=0, max_value=5, allow_nan=False), st.integers())
def test_jitter_stays_within_its_factor_and_never_goes_below_zero(delay, factor, seed):
    moved = jittered(delay, factor, random.Random(seed))
    assert max(0.0, delay * (1 - factor)) - 1e-9 <= moved <= delay * (1 + factor) + 1e-9
    assert moved >= 0
    assert jittered(delay, None) == jittered(delay, 0.0) == delay


BAD_DELAYS = st.one_of(
    st.floats(max_value=-1e-9, allow_nan=False),
    st.sampled_from([float("nan"), float("inf"), [1.0, float("nan")]]),
    st.booleans(),
    st.text(min_size=1, max_size=5),
    st.lists(st.one_of(st.floats(max_value=-1e-9, allow_nan=False), st.booleans(), st.none()), min_size=1, max_size=3),
)


@QUICK
@given(BAD_DELAYS)
def test_a_bad_delay_is_one_clear_error(delay):
    with pytest.raises(ValueError, match="retry_delay_seconds must be a number >= 0"):
        task(retries=2, retry_delay_seconds=delay)(lambda: None)


@QUICK
@given(st.one_of(st.floats(max_value=-1e-9), st.sampled_from([float("nan"), float("inf")])))
def test_a_bad_jitter_factor_is_one_clear_error(factor):
    with pytest.raises(ValueError, match="retry_jitter_factor must be >= 0"):
        task(retries=1, retry_jitter_factor=factor)(lambda: None)
