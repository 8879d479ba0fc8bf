"""Cache policies: the algebra (``+``, ``INPUTS - "arg"``, ``configure``) and which calls share a key."""

from __future__ import annotations

import linecache

import pytest

from nbflow import flow, task
from nbflow.cache_policies import (
    DEFAULT,
    FLOW_PARAMETERS,
    INPUTS,
    NO_CACHE,
    RUN_ID,
    TASK_SOURCE,
    CachePolicy,
    CompoundCachePolicy,
    Inputs,
)
from nbflow.tasks import task_input_hash


def test_policies_combine_order_free_and_flatten():
    assert DEFAULT == INPUTS + TASK_SOURCE == TASK_SOURCE + INPUTS
    combined = INPUTS + (TASK_SOURCE + FLOW_PARAMETERS)
    assert isinstance(combined, CompoundCachePolicy) and len(combined.policies) == 3
    assert repr(DEFAULT - "verbose") == "INPUTS - 'verbose' + TASK_SOURCE"
    assert NO_CACHE + INPUTS == INPUTS and INPUTS + NO_CACHE == INPUTS  # as in Prefect


def test_leaving_arguments_out_accumulates():
    policy = INPUTS - "a" - "b"
    assert policy == Inputs(exclude=("a", "b"))
    merged = (INPUTS - "a") + (INPUTS - "b") + TASK_SOURCE
    assert merged == DEFAULT - "a" - "b"


def test_bad_policy_algebra_is_a_clear_error():
    with pytest.raises(TypeError, match="only a policy that hashes inputs"):
        TASK_SOURCE - "x"
    with pytest.raises(TypeError, match="by its name"):
        INPUTS - 3
    with pytest.raises(TypeError, match="takes only lock=, lock_timeout= and isolation_level="):
        INPUTS.configure(key_storage="/tmp/keys")
    with pytest.raises(ValueError, match="isolation_level must be one of"):
        INPUTS.configure(isolation_level="SNAPSHOT")


def test_configure_lock_survives_combination():
    locked = INPUTS.configure(lock=True, lock_timeout=5)
    assert locked.lock and locked.lock_timeout == 5.0 and not INPUTS.lock
    assert (locked + TASK_SOURCE).lock and (TASK_SOURCE + locked).lock
    assert (DEFAULT.configure(lock=True) - "x").lock
    assert INPUTS.configure(isolation_level="SERIALIZABLE").lock  # Prefect's spelling
    assert "lock=True" in repr(locked + TASK_SOURCE)


def _keys(h, name):
    return [r.cache_key for r in h.recorder.runs("task") if r.task_name == name]


def test_inputs_minus_argument_ignores_it(h):
    calls = []

    @task(cache_policy=INPUTS - "verbose")
    def load(path, verbose=False):
        calls.append((path, verbose))
        return path.upper()

    @flow
    def pipeline():
        return load("a", verbose=False), load("a", verbose=True), load("b", verbose=True)

    assert pipeline() == ("A", "A", "B")
    assert calls == [("a", False), ("b", True)]
    assert h.final_states("load") == ["Completed", "Cached", "Completed"]


def test_run_id_policy_hits_only_within_one_flow_run(h):
    calls = []

    @task(cache_policy=DEFAULT + RUN_ID)
    def step(x):
        calls.append(x)
        return x

    @flow
    def pipeline():
        return step(1), step(1)

    pipeline()
    pipeline()
    assert calls == [1, 1]
    assert h.final_states("step") == ["Completed", "Cached", "Completed", "Cached"]


def test_flow_parameters_policy_keys_on_the_flow_run_parameters(h):
    calls = []

    @task(cache_policy=FLOW_PARAMETERS)
    def report():
        calls.append(1)
        return len(calls)

    @flow
    def pipeline(day: str):
        return report()

    assert [pipeline("mon"), pipeline("mon"), pipeline("tue")] == [1, 1, 2]


def test_different_tasks_never_share_an_entry(h):
    @task(cache_policy=INPUTS)
    def double(x):
        return 2 * x

    @task(cache_policy=INPUTS)
    def square(x):
        return x * x

    @flow
    def pipeline():
        return double(3), square(3)

    assert pipeline() == (6, 9)
    assert pipeline() == (6, 9)
    assert len(h.entries()) == 2


def test_task_input_hash_is_prefect_compatible_key_fn(h):
    calls = []

    @task(cache_key_fn=task_input_hash)
    def fetch(url, retries=3):
        calls.append(url)
        return f"<{url}>"

    @flow
    def pipeline():
        return fetch("a"), fetch("a", retries=3), fetch("a", 4), fetch("b")

    pipeline()
    assert calls == ["a", "a", "b"]
    assert h.final_states("fetch") == ["Completed", "Cached", "Completed", "Completed"]


def test_cache_key_fn_none_means_uncached_and_errors_warn_once(h):
    calls = []

    @task(cache_key_fn=lambda ctx, params: None)
    def never(x):
        calls.append(x)

    def broken(ctx, params):
        raise RuntimeError("no key today")

    @task(cache_key_fn=broken)
    def flaky(x):
        calls.append(x)
        return x

    @flow
    def pipeline():
        never(1), never(1), flaky(2), flaky(2)

    pipeline()
    assert calls == [1, 1, 2, 2]
    warnings = h.warnings()
    assert len(warnings) == 1 and "no key today" in warnings[0] and "runs uncached" in warnings[0]


def test_custom_policy_subclass_with_prefect_signature(h):
    class FirstLetter(CachePolicy):
        def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs):
            return inputs["word"][0]

    calls = []

    @task(cache_policy=FirstLetter())
    def shout(word):
        calls.append(word)
        return word.upper()

    @flow
    def pipeline():
        return shout("apple"), shout("avocado"), shout("banana")

    assert pipeline() == ("APPLE", "APPLE", "BANANA")
    assert calls == ["apple", "banana"]


def test_a_policy_that_is_not_a_policy_is_refused_when_the_task_is_defined():
    with pytest.raises(TypeError, match="cache_policy must be a policy from nbflow.cache_policies"):
        @task(cache_policy="inputs")
        def step(x):
            return x


# --- source-aware keys: code as a notebook defines it, cell by cell ---------------------------------

_cell_counter = [0]


def run_cell(source: str, namespace: dict) -> None:
    """Execute ``source`` the way IPython runs a cell: its own file name, source kept in linecache."""
    _cell_counter[0] += 1
    filename = f"<ipython-input-{_cell_counter[0]}-cachetest>"
    lines = source.splitlines(keepends=True)
    linecache.cache[filename] = (len(source), None, lines, filename)
    exec(compile(source, filename, "exec"), namespace)


def test_task_source_follows_notebook_helpers_but_not_unrelated_cells(h):
    ns: dict = {"__name__": "__main__", "task": task, "flow": flow, "DEFAULT": DEFAULT, "calls": []}
    run_cell("SCALE = 10\ndef helper(x):\n    return x * SCALE\n", ns)
    run_cell("def unrelated():\n    return 1\n", ns)
    run_cell(
        "@task(cache_policy=DEFAULT)\ndef compute(x):\n    calls.append(x)\n    return helper(x)\n"
        "@flow\ndef pipeline():\n    return compute(2)\n",
        ns,
    )
    assert ns["pipeline"]() == 20
    run_cell("def unrelated():\n    return 2\n", ns)  # edit a cell the task does not use
    assert ns["pipeline"]() == 20
    assert ns["calls"] == [2]
    run_cell("def helper(x):\n    return x * SCALE + 1\n", ns)  # edit the helper it calls
    assert ns["pipeline"]() == 21
    run_cell("SCALE = 100\n", ns)  # change a constant the helper reads
    assert ns["pipeline"]() == 201
    assert ns["calls"] == [2, 2, 2]
    assert h.final_states("compute") == ["Completed", "Cached", "Completed", "Completed"]


def test_a_key_fn_can_be_locked_and_combined(h):
    calls = []
    policy = CachePolicy.from_cache_key_fn(lambda ctx, params: str(params["x"] % 2)).configure(lock=True)
    assert policy.lock and repr(policy).startswith("CacheKeyFnPolicy(")

    @task(cache_policy=policy + TASK_SOURCE)
    def parity(x):
        calls.append(x)
        return x % 2

    @flow
    def pipeline():
        return [parity(x) for x in (1, 3, 2, 4)]

    assert pipeline() == [1, 1, 0, 0]
    assert calls == [1, 2]


def test_threads_of_one_flow_asking_for_a_locked_key_compute_it_once(h):
    import time

    calls = []

    @task(cache_policy=INPUTS.configure(lock=True))
    def slow(x):
        calls.append(x)
        time.sleep(0.3)  # long enough for the other thread to arrive while this one computes
        return x * 2

    @flow
    def pipeline():
        futures = [slow.submit(7) for _ in range(3)]
        return [f.result() for f in futures]

    assert pipeline() == [14, 14, 14]
    assert calls == [7]
    assert sorted(h.final_states("slow")) == ["Cached", "Cached", "Completed"]
    assert not list((h.home / "cache-locks").glob("*.lock"))  # released, and the files cleaned up
