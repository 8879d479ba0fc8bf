"""nbflow: Prefect-style flows and tasks inside the Jupyter kernel, with nothing else to run."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> module that defines it. Modules load on first use, so `import nbflow` stays cheap.
_EXPORTS = {
    "Flow": "nbflow._flows",
    "State": "nbflow._states",
    "Task": "nbflow._tasks",
    "ThreadPoolTaskRunner": "nbflow.task_runners",
    "flow": "nbflow._flows",
    "get_run_logger": "nbflow._logging",
    "monitor": "nbflow.jupyter._widget",
    "task": "nbflow._tasks",
    "unmapped": "nbflow.utilities.annotations",
}

# Submodules reachable as attributes (`nbflow.runs.flow_runs()` after `import nbflow`), loaded on first use.
_SUBMODULES = frozenset({"cache", "cache_policies", "concurrency", "exceptions", "futures", "runs", "states", "tasks"})

__all__ = sorted([*_EXPORTS, "__version__", "load_ipython_extension", "unload_ipython_extension"])

if TYPE_CHECKING:
    from nbflow._flows import Flow, flow
    from nbflow._logging import get_run_logger
    from nbflow._states import State
    from nbflow._tasks import Task, task
    from nbflow.jupyter._widget import monitor
    from nbflow.task_runners import ThreadPoolTaskRunner
    from nbflow.utilities.annotations import unmapped


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"nbflow.{name}")  # the import binds it on the package too
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'nbflow' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return __all__


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext nbflow``: register the ``%%flow`` and ``%flow`` magics."""
    from nbflow.jupyter.magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from nbflow.jupyter.magics import unload_ipython_extension as unload

    unload(ipython)
