"""Cache hits in a run: ``Cached`` without running the body, expiration, refresh, persistence switches."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from cache_support import CacheHarness

from nbflow import flow, task
from nbflow._core.clock import FakeClock
from nbflow.cache_policies import DEFAULT, INPUTS, NO_CACHE


def test_hit_is_cached_state_body_skipped_and_logged(h):
    calls = []

    @task(cache_policy=INPUTS)
    def fetch(n):
        calls.append(n)
        return {"rows": n}

    @flow
    def pipeline():
        first = fetch(3)
        state = fetch(3, return_state=True)
        return first, state

    first, state = pipeline()
    assert calls == [3]
    assert state.name == "Cached" and state.is_completed() and state.result() == first == {"rows": 3}
    assert repr(state) == "Cached(type=COMPLETED)"
    assert "Task run 'fetch-2' - Finished in state Cached(type=COMPLETED)" in h.console
    assert h.states("fetch-2") == ["Pending", "Cached"]  # never Running: the body did not run


def test_default_policy_hits_across_flow_runs(h):
    calls = []

    @task(cache_policy=DEFAULT)
    def slow_square(x):
        calls.append(x)
        return x * x

    @flow
    def pipeline(n: int):
        return [slow_square(i) for i in range(n)]

    assert pipeline(3) == [0, 1, 4]
    assert pipeline(4) == [0, 1, 4, 9]
    assert calls == [0, 1, 2, 3]


def test_without_a_policy_results_are_persisted_but_never_looked_up(h):
    calls = []

    @task
    def roll(seed):
        calls.append(seed)
        return len(calls)

    @flow
    def pipeline():
        return roll(1), roll(1)

    assert pipeline() == (1, 2)
    assert pipeline() == (3, 4)  # a normal run never reuses a result the task did not ask to cache
    assert [e.task for e in h.entries()] == ["roll"]  # ...but keeps it for a rerun


def test_submitted_mapped_and_async_tasks_hit(h):
    calls = []

    @task(cache_policy=INPUTS)
    def inc(x):
        calls.append(x)
        return x + 1

    @task(cache_policy=INPUTS)
    async def ainc(x):
        calls.append(("a", x))
        await asyncio.sleep(0)
        return x + 1

    @flow
    def pipeline():
        return inc.map([1, 2, 3]).result(), inc.submit(1).result()

    @flow
    async def apipeline():
        return await ainc(5)

    assert pipeline() == ([2, 3, 4], 2)
    assert pipeline() == ([2, 3, 4], 2)
    assert asyncio.run(apipeline()) == 6 and asyncio.run(apipeline()) == 6
    assert sorted(calls[:3]) == [1, 2, 3] and calls[3:] == [("a", 5)]  # mapped runs in any order


def test_expiration(tmp_path):
    clock = FakeClock(start=time.time())
    with CacheHarness(tmp_path / "home", clock=clock) as h:
        calls = []

        @task(cache_policy=INPUTS, cache_expiration=timedelta(hours=1))
        def quote(symbol):
            calls.append(symbol)
            return len(calls)

        @flow
        def pipeline():
            return quote("ACME")

        assert pipeline() == 1
        clock.sleep(30 * 60)
        assert pipeline() == 1  # within the hour: cached
        clock.sleep(31 * 60)
        assert pipeline() == 2  # expired: computed again, and cached again from now
        assert pipeline() == 2
        assert h.final_states("quote") == ["Completed", "Cached", "Completed", "Cached"]


def test_expiration_alone_turns_caching_on(h):
    calls = []

    @task(cache_expiration=timedelta(days=1))
    def step(x):
        calls.append(x)
        return x

    @flow
    def pipeline():
        return step(1)

    pipeline()
    pipeline()
    assert calls == [1]


def test_refresh_cache_recomputes_and_replaces_the_entry(h):
    calls = []

    @task(cache_policy=INPUTS)
    def load(x):
        calls.append(x)
        return len(calls)

    @flow
    def pipeline(refresh: bool = False):
        step = load.with_options(refresh_cache=True) if refresh else load
        return step("x")

    assert pipeline() == 1
    assert pipeline(refresh=True) == 2
    assert pipeline() == 2  # the refreshed value is the one cached now
    assert len(h.entries()) == 1


def test_persist_result_false_and_no_cache_are_never_stored(h):
    calls = []

    @task(cache_policy=INPUTS, persist_result=False)
    def secret(x):
        calls.append(x)
        return x

    @task(cache_policy=NO_CACHE)
    def send_email(to):
        calls.append(to)

    @flow
    def pipeline():
        secret(1), secret(1), send_email("a@b"), send_email("a@b")

    pipeline()
    assert calls == [1, 1, "a@b", "a@b"]
    assert h.entries() == []


def test_results_persist_setting_off_keeps_only_what_tasks_ask_for(tmp_path):
    with CacheHarness(tmp_path / "home", results_persist=False) as h:
        @task
        def plain(x):
            return x

        @task(cache_policy=INPUTS)
        def cached(x):
            return x

        @task(persist_result=True)
        def kept(x):
            return x

        @flow
        def pipeline():
            plain(1), cached(1), kept(1)

        pipeline()
        assert sorted(e.task for e in h.entries()) == ["cached", "kept"]


def test_large_result_is_a_file_and_never_printed(h):
    payload = bytes(range(256)) * 4096  # 1 MB

    @task(cache_policy=INPUTS)
    def big(n):
        return payload * n

    @flow
    def pipeline():
        return big(2), big(2)

    first, second = pipeline()
    assert first == second == payload * 2
    (entry,) = h.entries()
    assert entry.in_file and entry.size > 2 * len(payload)
    assert len(h.console) < 2000  # log lines never carry the value


def test_the_result_is_saved_as_returned_even_if_mutated_later(h):
    @task(cache_policy=INPUTS)
    def rows(n):
        return list(range(n))

    @flow
    def pipeline():
        result = rows(3)
        result.append("changed by the flow")
        return rows(3)

    assert pipeline() == [0, 1, 2]


def test_a_refreshed_entry_replaces_the_old_one_and_its_file(h):
    sizes = [200_000, 10]

    @task(cache_policy=INPUTS, refresh_cache=True)
    def blob(name):
        return b"x" * sizes.pop(0)

    @flow
    def pipeline():
        return len(blob("a"))

    assert pipeline() == 200_000
    (big,) = h.entries()
    assert big.in_file
    assert pipeline() == 10
    (small,) = h.entries()
    assert not small.in_file and small.size < 100
    files = [p for p in (h.home / "cache").rglob("*.val")]
    assert files == []  # the large value's file went with it
    assert h.cache.disk.stats(0).entries == 1


def test_entries_written_in_bulk_are_valid_diskcache_rows(h):
    import pickle
    import warnings

    from nbflow._services.cache import files

    @task(cache_policy=INPUTS)
    def value(n):
        return b"v" * n

    @flow
    def pipeline():
        return [len(value(n)) for n in (10, 20, 100_000)]

    pipeline()
    h.cache.flush(10)
    cache = h.cache.disk.cache()
    assert len(cache) == 3  # diskcache's own count (kept by its triggers) agrees
    values = set()
    for entry in h.entries():
        stored = cache.get(entry.key)  # diskcache reads each one back, a file entry's file too
        if entry.in_file:
            (filename,) = cache._sql("SELECT filename FROM Cache WHERE key = ?", (entry.key,)).fetchone()
            assert stored == (h.home / "cache" / filename).read_bytes()
            values.add(files.load(str(h.home / "cache" / filename), h.cache.signer, entry.key))
        else:
            values.add(pickle.loads(h.cache.signer.open(stored, entry.key)))
    assert values == {b"v" * 10, b"v" * 20, b"v" * 100_000}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.check() == []  # sizes, files and counts are consistent
