"""The package face: what ``import nbflow`` offers, and that importing it stays light."""

from __future__ import annotations

import json
import subprocess
import sys

import nbflow


def test_public_names():
    assert set(nbflow.__all__) >= {"flow", "task", "get_run_logger", "monitor", "unmapped", "Flow", "Task", "State", "ThreadPoolTaskRunner"}
    for name in nbflow.__all__:
        assert getattr(nbflow, name) is not None


def test_submodules_load_on_attribute_access():
    code = "import nbflow; print(callable(nbflow.runs.flow_runs), callable(nbflow.cache.stats))"
    assert subprocess.check_output([sys.executable, "-c", code], text=True).split() == ["True", "True"]


def test_prefect_style_import_locations():
    from nbflow.futures import as_completed, wait  # noqa: F401
    from nbflow.states import Cached, Completed, Failed  # noqa: F401
    from nbflow.tasks import exponential_backoff, task_input_hash  # noqa: F401
    from nbflow.utilities.annotations import unmapped  # noqa: F401
    from nbflow.cache_policies import DEFAULT, INPUTS, NO_CACHE  # noqa: F401
    from nbflow.cache import clear, entries, stats  # noqa: F401
    from nbflow.concurrency.sync import concurrency, rate_limit  # noqa: F401
    from nbflow.concurrency.asyncio import concurrency as aconcurrency  # noqa: F401
    from nbflow.dask import DaskTaskRunner  # noqa: F401
    from nbflow.runs import flow_run, flow_runs, graph, logs, task_runs  # noqa: F401


def test_import_nbflow_does_not_load_heavy_modules():
    code = "import sys, json, nbflow; print(json.dumps(sorted(sys.modules)))"
    loaded = set(json.loads(subprocess.check_output([sys.executable, "-c", code], text=True)))
    heavy = {"pydantic", "IPython", "ipywidgets", "graphviz", "diskcache", "sqlite3", "asyncio", "numpy", "dask"}
    assert not heavy & loaded, heavy & loaded
