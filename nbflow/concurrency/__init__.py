"""Concurrency limits shared by every thread, process and worker using the same ``NBFLOW_HOME``.

- ``nbflow.concurrency.sync``: ``with concurrency("name", occupy=1):`` and ``rate_limit("name")``.
- ``nbflow.concurrency.asyncio``: the same for ``async`` code (``async with concurrency(...)``).
- ``nbflow.concurrency.limits``: create, list, inspect, update, reset and delete limits.

Nothing is imported here, so ``import nbflow.concurrency`` costs nothing.
"""

__all__: list[str] = []
