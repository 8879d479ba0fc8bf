"""Tasks, where Prefect users look for them: ``task``, ``Task``, ``exponential_backoff``, ``task_input_hash``."""

from __future__ import annotations

import hashlib
from typing import Any

from nbflow._core.options import exponential_backoff
from nbflow._engine.task import Task, task

__all__ = ["Task", "exponential_backoff", "task", "task_input_hash"]


def task_input_hash(context: Any, parameters: dict[str, Any]) -> str | None:
    """A cache key from the task's inputs and source, for ``@task(cache_key_fn=task_input_hash)``.

    As in Prefect, editing the task's code changes the key; here editing a notebook helper it calls
    does too. Inputs are hashed by content, so the key is the same in every process and after a
    kernel restart. An input that cannot be hashed raises ``UnhashableInputError`` (naming it);
    inside a run, that means one warning and the task runs uncached.

    >>> from nbflow import flow, task
    >>> @task(cache_key_fn=task_input_hash)
    ... def double(x):
    ...     return 2 * x
    """
    from nbflow._core.hashing.encoder import hash_parameters
    from nbflow._core.hashing.source import source_hash

    digest = hashlib.sha256(b"task_input_hash\0")
    digest.update(source_hash(context.task.fn).encode())
    digest.update(hash_parameters(parameters).encode())
    return digest.hexdigest()
