"""Structural hashing of task inputs (nbflow/_core/hashing/encoder.py), property-tested: equal values hash equal
(also in another process with another hash seed), dict order does not matter, and a small change
of the value changes the hash."""

from __future__ import annotations

import copy
import json
import os
import pickle
import subprocess
import sys

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nbflow._core.hashing.encoder import hash_parameters, stable_hash

QUICK = settings(max_examples=150, deadline=None, database=None)

LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20), st.binary(max_size=20),
)
VALUES = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.tuples(inner, inner),
        st.dictionaries(st.text(max_size=8), inner, max_size=5),
        st.frozensets(st.one_of(st.integers(), st.text(max_size=8)), max_size=5),
    ),
    max_leaves=20,
)


@QUICK
@given(VALUES)
def test_equal_values_hash_equal(value):
    assert stable_hash(value) == stable_hash(copy.deepcopy(value)) == stable_hash(pickle.loads(pickle.dumps(value)))


@QUICK
@given(st.dictionaries(st.text(max_size=8), VALUES, min_size=2, max_size=6), st.randoms())
def test_dict_order_does_not_matter(mapping, rnd):
    keys = list(mapping)
    rnd.shuffle(keys)
    shuffled = {k: mapping[k] for k in keys}
    assert stable_hash(mapping) == stable_hash(shuffled)
    assert hash_parameters(mapping) == hash_parameters(shuffled)


@QUICK
@given(VALUES, VALUES)
def test_a_different_value_hashes_differently(a, b):
    # Values Python calls different never share a hash (equal ones may differ: the type is part of
    # the key, so 1, 1.0 and True hash differently).
    if a != b:
        assert stable_hash(a) != stable_hash(b)


@QUICK
@given(VALUES, st.sampled_from(["append", "wrap", "int"]))
def test_a_small_change_changes_the_hash(value, change):
    if change == "append":
        changed = [value, None]
        value = [value]
    elif change == "wrap":
        changed = (value,)
    else:
        value, changed = {"x": 1, "v": value}, {"x": 2, "v": value}
    assert stable_hash(value) != stable_hash(changed)


@QUICK
@given(st.dictionaries(st.text(min_size=1, max_size=8), VALUES, min_size=1, max_size=5), st.data())
def test_an_excluded_parameter_does_not_count(parameters, data):
    name = data.draw(st.sampled_from(sorted(parameters)))
    other = {**parameters, name: data.draw(VALUES)}
    assert hash_parameters(parameters, [name]) == hash_parameters(other, [name])


# Hashes the pickled values of stdin in a fresh interpreter and prints them as JSON.
_OTHER_PROCESS = "import json, pickle, sys; from nbflow._core.hashing.encoder import stable_hash; " \
                 "print(json.dumps([stable_hash(v) for v in pickle.load(sys.stdin.buffer)]))"


@settings(max_examples=4, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(VALUES, min_size=10, max_size=30))
def test_the_same_values_hash_the_same_in_another_process(values):
    env = {**os.environ, "PYTHONHASHSEED": str(1 + os.getpid() % 1000)}  # another seed than ours, likely
    done = subprocess.run([sys.executable, "-c", _OTHER_PROCESS], input=pickle.dumps(values), env=env,
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(done.stdout) == [stable_hash(v) for v in values]
