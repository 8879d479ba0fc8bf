"""Faults never fail a run: unhashable inputs, unpicklable results, broken entries, a deleted folder,
a full cache. Each gives (at most) one warning and the task simply runs."""

from __future__ import annotations

import shutil
import sqlite3
import sys
import threading
import types

from cache_support import CacheHarness

from nbflow import flow, task
from nbflow.cache_policies import INPUTS


def test_unhashable_input_warns_once_naming_argument_and_type_and_runs(h):
    calls = []

    @task(cache_policy=INPUTS)
    def guarded(data, lock):
        calls.append(data)
        return data

    @flow
    def pipeline():
        lock = threading.Lock()
        return [guarded(1, lock) for _ in range(3)]

    assert pipeline() == [1, 1, 1]
    assert calls == [1, 1, 1]
    (warning,) = h.warnings()
    assert "parameters['lock']" in warning and "_thread.lock" in warning and "runs uncached" in warning
    assert "INPUTS - 'lock'" in warning  # and how to fix it
    assert h.final_states("guarded") == ["Completed"] * 3


def test_leaving_the_unhashable_argument_out_makes_it_cacheable(h):
    calls = []

    @task(cache_policy=INPUTS - "lock")
    def guarded(data, lock):
        calls.append(data)
        return data

    @flow
    def pipeline():
        lock = threading.Lock()
        return guarded(1, lock), guarded(1, lock)

    pipeline()
    assert calls == [1] and h.warnings() == []


def test_unpicklable_result_is_completed_with_one_warning_naming_the_type(h):
    @task(cache_policy=INPUTS)
    def make_counter(start):
        return lambda: start

    @flow
    def pipeline():
        return [make_counter(1)() for _ in range(3)]

    assert pipeline() == [1, 1, 1]
    assert h.final_states("make_counter") == ["Completed"] * 3
    (warning,) = h.warnings()
    assert "not persisted" in warning and "a function cannot be pickled" in warning
    assert h.entries() == []


def _rows(h):
    h.cache.flush(10)
    return sqlite3.connect(h.home / "cache" / "cache.db")


def test_corrupted_entry_is_dropped_with_one_warning_and_recomputed(h):
    calls = []

    @task(cache_policy=INPUTS)
    def small(x):
        calls.append(x)
        return {"x": x}

    @flow
    def pipeline():
        return small(1)

    pipeline()
    with _rows(h) as db:
        db.execute("UPDATE Cache SET value = ?", (b"\x80\x05garbage",))
    assert pipeline() == {"x": 1}
    assert calls == [1, 1]
    (warning,) = h.warnings()
    assert "could not be loaded" in warning and "dropped it, the task runs again" in warning
    assert pipeline() == {"x": 1} and calls == [1, 1]  # the recomputed value replaced the bad one


def test_truncated_file_entry_is_recomputed(h):
    calls = []

    @task(cache_policy=INPUTS)
    def big(n):
        calls.append(n)
        return list(range(n))

    @flow
    def pipeline():
        return big(50_000)

    pipeline()
    (entry,) = h.entries()
    assert entry.in_file
    with _rows(h) as db:
        (filename,) = db.execute("SELECT filename FROM Cache").fetchone()
    path = h.home / "cache" / filename
    path.write_bytes(path.read_bytes()[:1000])
    assert pipeline() == list(range(50_000))
    assert calls == [50_000, 50_000]
    assert any("could not be loaded" in w for w in h.warnings())


def test_class_that_no_longer_unpickles_is_recomputed(h):
    module = types.ModuleType("nbflow_test_models")
    exec("class Model:\n    def __init__(self, w):\n        self.w = w\n", module.__dict__)
    sys.modules[module.__name__] = module
    current = {"cls": module.Model}
    try:
        @task(cache_policy=INPUTS)
        def train(w):
            return current["cls"](w)

        @flow
        def pipeline():
            return train(3)

        assert type(pipeline()).__name__ == "Model"
        h.cache.flush(10)
        # The notebook renames the class: the stored entry names a class that no longer exists.
        exec("class RenamedModel:\n    def __init__(self, w):\n        self.w = w\n", module.__dict__)
        del module.Model
        current["cls"] = module.RenamedModel
        result = pipeline()
        assert type(result).__name__ == "RenamedModel" and result.w == 3
        assert h.final_states("train") == ["Completed", "Completed"]
        (warning,) = h.warnings()
        assert "could not be loaded" in warning and "Model" in warning
        assert type(pipeline()).__name__ == "RenamedModel"
        assert h.final_states("train")[-1] == "Cached"
    finally:
        del sys.modules[module.__name__]


def test_cache_folder_deleted_while_running_is_recreated(h):
    calls = []

    @task(cache_policy=INPUTS)
    def step(x):
        calls.append(x)
        return x

    @flow
    def pipeline():
        return step(1)

    pipeline()
    h.cache.flush(10)
    shutil.rmtree(h.home / "cache")
    pipeline()  # misses, and writes into a new folder
    assert (h.home / "cache" / "cache.db").exists()
    pipeline()  # hits again
    assert calls == [1, 1]
    assert h.final_states("step") == ["Completed", "Completed", "Cached"]
    assert h.warnings() == []


def test_size_limit_evicts_least_recently_used_and_nothing_fails(tmp_path):
    with CacheHarness(tmp_path / "home", cache_size_limit=2 * 2**20) as h:
        @task(cache_policy=INPUTS)
        def blob(i):
            return bytes([i % 256]) * 100_000  # stored as a file of ~100 KB

        @flow
        def pipeline(ids: list):
            return [len(blob(i)) for i in ids]

        pipeline(list(range(15)))
        h.cache.flush(10)
        pipeline([0])  # a hit: entry 0 is now the most recently used of the first 15
        h.cache.flush(10)
        assert h.final_states("blob")[-1] == "Cached"
        pipeline(list(range(15, 25)))
        h.cache.flush(10)

        stats = h.cache.disk.stats(0)
        assert stats.volume <= 2 * 2**20 + 200_000  # bounded (diskcache culls in steps of 10)
        assert len(h.entries()) < 25

        pipeline([0, 1])
        assert h.final_states("blob")[-2:] == ["Cached", "Completed"]  # 0 survived, 1 was evicted


def test_an_unusable_cache_folder_warns_once_and_runs_go_on(tmp_path, capfd):
    home = tmp_path / "home"
    home.mkdir()
    (home / "cache").write_text("a file where the cache folder should be")
    with CacheHarness(home) as h:
        calls = []

        @task(cache_policy=INPUTS)
        def step(x):
            calls.append(x)
            return x

        @flow
        def pipeline():
            return step(1), step(1), step(2)

        assert pipeline() == (1, 1, 2)
        assert pipeline() == (1, 1, 2)
        assert calls.count(2) == 2  # nothing reached the disk, so the next flow run computes again
        first, second = h.warnings()  # one per flow run
        assert first == second
        assert f"Result cache at {home / 'cache'} is unavailable" in first and "running without it" in first
    assert capfd.readouterr().err.count("nbflow: could not write results to the cache") == 1


def test_a_result_larger_than_the_whole_cache_is_not_persisted_with_a_warning(tmp_path):
    with CacheHarness(tmp_path / "home", cache_size_limit=100_000) as h:
        @task(cache_policy=INPUTS)
        def huge(n):
            return b"x" * n

        @flow
        def pipeline():
            return len(huge(200_000)), len(huge(10))

        assert pipeline() == (200_000, 10)
        (warning,) = h.warnings()
        assert "is not persisted" in warning and "NBFLOW_CACHE_SIZE_LIMIT=100,000" in warning
        assert [e.size < 100 for e in h.entries()] == [True]
