"""The cache-policy algebra (nbflow/cache_policies.py), property-tested against what the module
documents: ``+`` makes one key whatever the order and grouping of its parts, ``NO_CACHE + X`` is
``X``, ``INPUTS - "arg"`` leaves that argument out of the key (exclusions add up), and ``-`` on a
policy without inputs is one clear error."""

from __future__ import annotations

import functools
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbflow.cache_policies import FLOW_PARAMETERS, INPUTS, NO_CACHE, RUN_ID, TASK_SOURCE, CachePolicy

QUICK = settings(max_examples=100, deadline=None, database=None)
NAMES = st.sampled_from(["a", "b", "c"])
LEAVES = st.one_of(
    st.sampled_from([INPUTS, TASK_SOURCE, FLOW_PARAMETERS, RUN_ID, NO_CACHE]),
    NAMES.map(lambda name: INPUTS - name),
)
INPUT_VALUES = st.fixed_dictionaries({"a": st.integers(), "b": st.text(max_size=5), "c": st.lists(st.integers(), max_size=3)})


def the_task_fn(a, b, c):
    return a


# What compute_key reads of a task run's context: plain values, as the engine passes them.
CTX = SimpleNamespace(task=SimpleNamespace(fn=the_task_fn), task_run=SimpleNamespace(id="tr-1", flow_run_id="fr-1"))
FLOW_PARAMETERS_OF_RUN = {"day": "2024-06-01"}


def key(policy: CachePolicy, inputs: dict) -> str | None:
    return policy.compute_key(CTX, inputs, FLOW_PARAMETERS_OF_RUN)


def total(parts: list[CachePolicy]) -> CachePolicy:
    return functools.reduce(lambda x, y: x + y, parts)


@QUICK
@given(st.lists(LEAVES, min_size=1, max_size=5), st.randoms(), INPUT_VALUES)
def test_the_order_of_the_parts_does_not_change_the_key(parts, rnd, inputs):
    shuffled = list(parts)
    rnd.shuffle(shuffled)
    assert key(total(parts), inputs) == key(total(shuffled), inputs)


@QUICK
@given(LEAVES, LEAVES, LEAVES, INPUT_VALUES)
def test_plus_is_associative(x, y, z, inputs):
    assert key((x + y) + z, inputs) == key(x + (y + z), inputs)


@QUICK
@given(st.lists(LEAVES, min_size=1, max_size=4), INPUT_VALUES)
def test_no_cache_adds_nothing(parts, inputs):
    policy = total(parts)
    assert NO_CACHE + policy is policy
    assert key(policy + NO_CACHE, inputs) == key(policy, inputs)
    assert NO_CACHE - "a" is NO_CACHE
    assert key(NO_CACHE, inputs) is None


@QUICK
@given(st.lists(LEAVES, min_size=1, max_size=4), NAMES, INPUT_VALUES, st.integers(), st.text(max_size=5))
def test_minus_leaves_an_input_out_of_the_key(parts, name, inputs, new_a, new_b):
    policy = total(parts) + INPUTS - name
    changed = {**inputs, name: {"a": new_a, "b": new_b, "c": [new_a]}[name]}
    assert key(policy, inputs) == key(policy, changed)


@QUICK
@given(st.lists(st.sampled_from([INPUTS, TASK_SOURCE, FLOW_PARAMETERS, RUN_ID, NO_CACHE]), min_size=1, max_size=4),
       NAMES, INPUT_VALUES)
def test_an_input_that_is_not_left_out_changes_the_key(parts, name, inputs):
    policy = total(parts) + INPUTS
    for excluded in {"a", "b", "c"} - {name}:
        policy = policy - excluded
    changed = {**inputs, name: ("changed", inputs[name])}
    assert key(policy, inputs) != key(policy, changed)


@QUICK
@given(st.lists(NAMES, min_size=1, max_size=5), st.randoms())
def test_exclusions_add_up_in_any_order(names, rnd):
    shuffled = list(names)
    rnd.shuffle(shuffled)
    assert total([INPUTS, *[INPUTS - n for n in names]]) == total([INPUTS, *[INPUTS - n for n in shuffled]])
    assert functools.reduce(lambda p, n: p - n, names, INPUTS) == functools.reduce(lambda p, n: p - n, shuffled, INPUTS)


@QUICK
@given(st.lists(st.sampled_from([TASK_SOURCE, FLOW_PARAMETERS, RUN_ID]), min_size=1, max_size=3), NAMES)
def test_minus_on_a_policy_without_inputs_is_one_clear_error(parts, name):
    with pytest.raises(TypeError, match="only a policy that hashes inputs"):
        total(parts) - name
    with pytest.raises(TypeError, match="leave an argument out by its name"):
        INPUTS - 3  # type: ignore[operator]
