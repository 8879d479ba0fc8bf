"""Concurrency limits for ``async`` code: ``async with concurrency("name"):``, ``await rate_limit(...)``.

Waiting is done with ``await``, so other coroutines on the event loop keep running meanwhile. Each
try is one short SQLite statement run on the loop (tens of microseconds).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from nbflow._app.wiring import limits_for
from nbflow._engine.limits import current_holder
from nbflow._services.limits.service import check_names, check_occupy, check_timeout

__all__ = ["concurrency", "rate_limit"]


@asynccontextmanager
async def concurrency(
    names: str | Iterable[str],
    occupy: int = 1,
    timeout_seconds: float | None = None,
    strict: bool = False,
) -> AsyncIterator[None]:
    """``nbflow.concurrency.sync.concurrency`` for ``async with``; same arguments, same errors."""
    names = check_names(names)
    occupy, timeout = check_occupy(occupy), check_timeout(timeout_seconds)
    if not names:
        yield
        return
    service = limits_for()
    lease = await service.aacquire(names, occupy, timeout, strict, holder=current_holder())
    try:
        yield
    finally:
        service.release(lease)


async def rate_limit(
    names: str | Iterable[str],
    occupy: int = 1,
    timeout_seconds: float | None = None,
    strict: bool = False,
) -> None:
    """``nbflow.concurrency.sync.rate_limit`` for async code: ``await rate_limit("api")``."""
    names = check_names(names)
    if names:
        occupy, timeout = check_occupy(occupy), check_timeout(timeout_seconds)
        await limits_for().aacquire(names, occupy, timeout, strict, mode="rate", holder=current_holder())
