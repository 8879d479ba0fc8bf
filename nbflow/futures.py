"""Futures of submitted task runs: ``result()``, ``state``, ``wait()``, and ``wait``/``as_completed``.

The public face: the names live in ``nbflow._engine.futures``.
"""

from nbflow._engine.futures import (
    DoneAndNotDoneFutures,
    FutureList,
    NbflowFuture,
    PrefectFuture,
    as_completed,
    wait,
)

__all__ = [
    "DoneAndNotDoneFutures",
    "FutureList",
    "NbflowFuture",
    "PrefectFuture",
    "as_completed",
    "wait",
]
