"""nbflow: Prefect-style flows and tasks inside the Jupyter kernel, with nothing else to run."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

import nbflow._app  # noqa: E402, F401  the composition root: installs the builder of the default runtime

# Public name -> module that defines it. Modules load on first use, so `import nbflow` stays cheap.
_EXPORTS = {
    "Flow": "nbflow._engine.flow",
    "State": "nbflow._core.states",
    "Task": "nbflow._engine.task",
    "ThreadPoolTaskRunner": "nbflow.task_runners",
    "flow": "nbflow._engine.flow",
    "get_run_logger": "nbflow._engine.logging",
    "task": "nbflow._engine.task",
    "unmapped": "nbflow.utilities.annotations",
}

# Submodules reachable as attributes (`nbflow.runs.flow_runs()` after `import nbflow`), loaded on first use.
_SUBMODULES = frozenset({"cache", "cache_policies", "concurrency", "exceptions", "futures", "runs", "states", "tasks"})

__all__ = sorted([*_EXPORTS, "__version__", "load_ipython_extension", "monitor", "unload_ipython_extension"])

if TYPE_CHECKING:  # what type checkers see of the lazy names (`X as X`: an explicit re-export)
    from nbflow._core.annotations import unmapped as unmapped
    from nbflow._core.records import FlowRun
    from nbflow._core.states import State as State
    from nbflow._engine.flow import Flow as Flow
    from nbflow._engine.flow import flow as flow
    from nbflow._engine.logging import get_run_logger as get_run_logger
    from nbflow._engine.task import Task as Task
    from nbflow._engine.task import task as task
    from nbflow._engine.task_runners import ThreadPoolTaskRunner as ThreadPoolTaskRunner
    from nbflow.jupyter._widget import RunMonitor


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


def monitor(run: FlowRun | str) -> RunMonitor:
    """Show a monitor of a flow run under the current cell: ``nbflow.monitor(run_or_id)``.

    ``run`` is a ``FlowRun``, or a flow run id, unique id prefix or run name. A run of this kernel
    that already has a monitor shows it again; a ``FlowRun`` still running in this process is
    followed live from now on; anything else is read from the run store, and followed while it
    runs (in a worker, or another process). Needs the Jupyter extra:
    ``pip install 'nbflow-lab[jupyter]'``.

    >>> nbflow.monitor("nimble-falcon")          # doctest: +SKIP
    """
    # Defined here rather than re-exported: `from nbflow import *` must work without the extra.
    try:
        from nbflow.jupyter._widget import monitor as show
    except ImportError as exc:
        raise ImportError(
            f"nbflow.monitor() needs the Jupyter extra ({exc}): pip install 'nbflow-lab[jupyter]'"
        ) from exc
    return show(run)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext nbflow``: register the ``%%flow`` and ``%flow`` magics."""
    from nbflow.jupyter.magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from nbflow.jupyter.magics import unload_ipython_extension as unload

    unload(ipython)
