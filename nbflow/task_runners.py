"""Task runners: where submitted task runs execute. ``ThreadPoolTaskRunner`` is the default.

The public face: the names live in ``nbflow._engine.task_runners``.
"""

from nbflow._engine.task_runners import (
    TaskRunner,
    ThreadPoolTaskRunner,
)

__all__ = [
    "TaskRunner",
    "ThreadPoolTaskRunner",
]
