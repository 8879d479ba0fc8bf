"""States, where Prefect users look for them."""

from nbflow._core.states import (
    Cached,
    Cancelled,
    Completed,
    Crashed,
    Failed,
    NotReady,
    Pending,
    Retrying,
    Running,
    Scheduled,
    State,
    StateType,
    TimedOut,
)

__all__ = [
    "Cached", "Cancelled", "Completed", "Crashed", "Failed", "NotReady", "Pending", "Retrying",
    "Running", "Scheduled", "State", "StateType", "TimedOut",
]
