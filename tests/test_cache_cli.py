"""``nbflow cache ls / stats / clear`` and the same from Python (``nbflow.cache``)."""

from __future__ import annotations

import json

import pytest
from cache_support import CacheHarness, nbflow_cli

from nbflow import flow, task
from nbflow.cache_policies import INPUTS


def _fill(home):
    with CacheHarness(home) as h:
        @task(cache_policy=INPUTS)
        def fetch(i):
            return list(range(i))

        @task(cache_policy=INPUTS)
        def model(i):
            return b"w" * 50_000

        @flow
        def pipeline():
            [fetch(i) for i in range(3)], model(1)

        pipeline()
    return h


@pytest.mark.slow  # CLI subprocesses
def test_ls_stats_and_clear_by_task(tmp_path):
    home = tmp_path / "home"
    assert nbflow_cli("cache", "ls", home=home).stdout.strip() == "No cached results."
    _fill(home)

    listing = nbflow_cli("cache", "ls", home=home)
    assert listing.returncode == 0
    lines = listing.stdout.strip().splitlines()
    assert lines[0].split() == ["TASK", "KEY", "SIZE", "STORED", "LAST", "USED", "EXPIRES"]
    assert sorted(line.split()[0] for line in lines[1:]) == ["fetch", "fetch", "fetch", "model"]
    only = json.loads(nbflow_cli("cache", "ls", "--task", "model", "--json", home=home).stdout)
    assert [(e["task"], e["in_file"]) for e in only] == [("model", True)]

    stats = nbflow_cli("cache", "stats", home=home).stdout
    assert "Entries:    4" in stats and "of 10.0 GB" in stats
    assert json.loads(nbflow_cli("cache", "stats", "--json", home=home).stdout)["by_task"]["fetch"][0] == 3

    cleared = nbflow_cli("cache", "clear", "--task", "fetch", home=home)
    assert cleared.stdout.strip() == "Removed 3 cached results of task 'fetch'."
    assert [e["task"] for e in json.loads(nbflow_cli("cache", "ls", "--json", home=home).stdout)] == ["model"]


@pytest.mark.slow  # CLI subprocesses
def test_clear_older_than(tmp_path):
    home = tmp_path / "home"
    _fill(home)
    assert nbflow_cli("cache", "clear", "--older-than", "1d", home=home).stdout.startswith("Removed 0 cached results")
    assert nbflow_cli("cache", "clear", "--older-than", "0s", home=home).stdout.startswith("Removed 4 cached results")
    assert "No cached results" in nbflow_cli("cache", "ls", home=home).stdout


def test_bad_duration_is_one_line_with_status_2(tmp_path):
    result = nbflow_cli("cache", "clear", "--older-than", "soon", home=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        "nbflow: error: --older-than: 'soon' is not a duration: write a number and a unit, e.g. 90s, 30m, 12h, 7d or 2w"
    )


def test_python_api_matches_the_cli(tmp_path):
    import nbflow.cache

    h = _fill(tmp_path / "home")
    with h:
        assert {e.task for e in nbflow.cache.entries()} == {"fetch", "model"}
        assert nbflow.cache.stats().entries == 4
        assert nbflow.cache.clear(task="model") == 1
        assert nbflow.cache.clear(older_than="1h") == 0
        assert nbflow.cache.clear() == 3
        assert nbflow.cache.entries() == []
    assert nbflow.cache.parse_duration("36h") == 129600.0
    with pytest.raises(ValueError, match="not a duration"):
        nbflow.cache.parse_duration("3 weeks")


def test_ls_shows_when_an_entry_was_last_used(tmp_path):
    import nbflow.cache

    h = _fill(tmp_path / "home")
    with h:
        assert all(e.accessed is None for e in nbflow.cache.entries())

        @task(cache_policy=INPUTS)
        def fetch(i):
            return list(range(i))

        @flow
        def again():
            return fetch(2)

        again()
        used = {e.key: e.accessed for e in nbflow.cache.entries(task="fetch")}
        assert sum(1 for when in used.values() if when is not None) == 1
