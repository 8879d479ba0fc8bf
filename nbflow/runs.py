"""Read the run history: flow runs, task runs, logs and graphs from ``$NBFLOW_HOME/nbflow.db``.

>>> import nbflow.runs
>>> for run in nbflow.runs.flow_runs(state="failed", limit=5):   # doctest: +SKIP
...     print(run.name, run.state, run.end_time)

Every function first writes out what this process has recorded so far, so a run that just returned
is there. Flow runs can be named by id, a unique prefix of the id, or run name.

The public face: the functions live in ``nbflow._app.history``.
"""

from nbflow._app.history import (
    delete_flow_run,
    flow_run,
    flow_runs,
    graph,
    load_parameters,
    logs,
    prune,
    task_run,
    task_runs,
)

__all__ = [
    "delete_flow_run",
    "flow_run",
    "flow_runs",
    "graph",
    "load_parameters",
    "logs",
    "prune",
    "task_run",
    "task_runs",
]
