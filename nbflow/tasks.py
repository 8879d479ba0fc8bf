"""Tasks, where Prefect users look for them: ``task``, ``Task``, ``exponential_backoff``, ``task_input_hash``."""

from __future__ import annotations

from typing import Any

from nbflow._options import exponential_backoff
from nbflow._tasks import Task, task

__all__ = ["Task", "exponential_backoff", "task", "task_input_hash"]


def task_input_hash(context: Any, parameters: dict[str, Any]) -> str | None:
    """A cache key from the task's inputs (and its key), for ``@task(cache_key_fn=task_input_hash)``."""
    from nbflow._hashing import hash_parameters

    return f"{context.task.task_key}-{hash_parameters(parameters)}"
