"""The package face: what ``import nbflow`` offers, and that importing it stays light."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

import nbflow

# The exact public face of each public module: a name added or dropped is an API change, made here on purpose.
PUBLIC = {
    "nbflow": ["Flow", "State", "Task", "ThreadPoolTaskRunner", "__version__", "flow", "get_run_logger",
               "load_ipython_extension", "monitor", "task", "unload_ipython_extension", "unmapped"],
    "nbflow.flows": ["Flow", "flow"],
    "nbflow.tasks": ["Task", "exponential_backoff", "task", "task_input_hash"],
    "nbflow.states": ["Cached", "Cancelled", "Completed", "Crashed", "Failed", "NotReady", "Pending", "Retrying",
                      "Running", "Scheduled", "State", "StateType", "TimedOut"],
    "nbflow.futures": ["DoneAndNotDoneFutures", "FutureList", "NbflowFuture", "PrefectFuture", "as_completed", "wait"],
    "nbflow.task_runners": ["TaskRunner", "ThreadPoolTaskRunner"],
    "nbflow.cache_policies": ["CachePolicy", "CacheKeyFnPolicy", "CompoundCachePolicy", "Inputs", "TaskSource",
                              "FlowParameters", "RunId", "NoCache", "INPUTS", "TASK_SOURCE", "FLOW_PARAMETERS",
                              "RUN_ID", "NO_CACHE", "NONE", "DEFAULT"],
    "nbflow.runs": ["flow_runs", "flow_run", "task_runs", "task_run", "logs", "graph", "load_parameters",
                    "delete_flow_run", "prune"],
    "nbflow.cache": ["CacheStats", "Entry", "clear", "entries", "parse_duration", "stats"],
    "nbflow.concurrency": [],
    "nbflow.concurrency.sync": ["concurrency", "rate_limit"],
    "nbflow.concurrency.asyncio": ["concurrency", "rate_limit"],
    "nbflow.concurrency.limits": ["ConcurrencyLimit", "SlotHolder", "Waiter", "create", "ls", "inspect", "update",
                                  "reset", "delete", "check_limit", "check_decay", "check_name"],
    "nbflow.exceptions": ["NbflowError", "ConfigurationError", "DiskFullError", "InvalidArgumentError", "ArgumentTypeError",
                          "ParameterTypeError", "MissingContextError",
                          "UnfinishedRun", "RunFailedError", "UpstreamTaskError", "CancelledRun", "RunNotFoundError",
                          "ParametersNotStoredError", "FlowRunOnImport", "UnhashableInputError", "CacheUnavailableError",
                          "RunTimeoutError", "TaskRunTimeoutError", "FlowRunTimeoutError", "ConcurrencyLimitError",
                          "ConcurrencyLimitNotFoundError", "AcquireConcurrencySlotTimeoutError", "UsageError"],
    "nbflow.utilities.annotations": ["unmapped"],
    "nbflow.dask": ["DaskTaskRunner"],
    "nbflow.jupyter": ["no_monitor"],
}


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_exact_public_names(name):
    module = importlib.import_module(name)
    names = list(module.__all__)
    assert len(names) == len(set(names)), f"{name}.__all__ lists a name twice"
    assert sorted(names) == sorted(PUBLIC[name])
    for attr in names:
        assert getattr(module, attr) is not None


def test_public_names():
    assert set(nbflow.__all__) >= {"flow", "task", "get_run_logger", "monitor", "unmapped", "Flow", "Task", "State", "ThreadPoolTaskRunner"}
    for name in nbflow.__all__:
        assert getattr(nbflow, name) is not None


def test_submodules_load_on_attribute_access():
    code = "import nbflow; print(callable(nbflow.runs.flow_runs), callable(nbflow.cache.stats))"
    assert subprocess.check_output([sys.executable, "-c", code], text=True).split() == ["True", "True"]


def test_prefect_style_import_locations():
    from nbflow.cache import clear, entries, stats  # noqa: F401
    from nbflow.cache_policies import DEFAULT, INPUTS, NO_CACHE  # noqa: F401
    from nbflow.concurrency.asyncio import concurrency as aconcurrency  # noqa: F401
    from nbflow.concurrency.sync import concurrency, rate_limit  # noqa: F401
    from nbflow.dask import DaskTaskRunner  # noqa: F401
    from nbflow.futures import as_completed, wait  # noqa: F401
    from nbflow.runs import flow_run, flow_runs, graph, logs, task_runs  # noqa: F401
    from nbflow.states import Cached, Completed, Failed  # noqa: F401
    from nbflow.tasks import exponential_backoff, task_input_hash  # noqa: F401
    from nbflow.utilities.annotations import unmapped  # noqa: F401


def test_import_nbflow_does_not_load_heavy_modules():
    code = "import sys, json, nbflow; print(json.dumps(sorted(sys.modules)))"
    loaded = set(json.loads(subprocess.check_output([sys.executable, "-c", code], text=True)))
    heavy = {"pydantic", "IPython", "ipywidgets", "graphviz", "diskcache", "sqlite3", "asyncio", "numpy", "dask"}
    assert not heavy & loaded, heavy & loaded
