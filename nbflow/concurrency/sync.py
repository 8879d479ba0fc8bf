"""Blocking concurrency limits: ``with concurrency("external-api"):`` and ``rate_limit("api")``.

>>> from nbflow.concurrency.sync import concurrency
>>> with concurrency("external-api", occupy=1, timeout_seconds=60):  # doctest: +SKIP
...     call_the_api()
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from nbflow._app.wiring import limits_for
from nbflow._engine.limits import current_holder
from nbflow._services.limits.service import check_names, check_occupy, check_timeout

__all__ = ["concurrency", "rate_limit"]


@contextmanager
def concurrency(
    names: str | Iterable[str],
    occupy: int = 1,
    timeout_seconds: float | None = None,
    strict: bool = False,
) -> Iterator[None]:
    """Hold ``occupy`` slots of each named limit for the ``with`` block; all names or none.

    Blocks until the slots are free, first come first served with other waiters in any process.
    A name with no limit is not limited (one warning per name per process; ``strict=True`` raises
    ``ConcurrencyLimitNotFoundError``). Not free within ``timeout_seconds``:
    ``AcquireConcurrencySlotTimeoutError``. Occupying more slots than a limit has:
    ``ConcurrencyLimitError``. The slots are leased and renewed while held, so a process killed
    in the block frees them one lease (``NBFLOW_CONCURRENCY_LEASE_SECONDS``) later.

    Params:
        names: a limit name, or a list of them.
        occupy: slots taken of each limit.
        timeout_seconds: give up after this long (None: wait as long as it takes).
        strict: raise instead of warning when a name has no limit.
    """
    names = check_names(names)
    occupy, timeout = check_occupy(occupy), check_timeout(timeout_seconds)
    if not names:
        yield
        return
    service = limits_for()
    lease = service.acquire(names, occupy, timeout, strict, holder=current_holder())
    try:
        yield
    finally:
        service.release(lease)


def rate_limit(
    names: str | Iterable[str],
    occupy: int = 1,
    timeout_seconds: float | None = None,
    strict: bool = False,
) -> None:
    """Take ``occupy`` slots of each named rate limit and return; the slots free themselves.

    For limits created with a slot decay (``--slot-decay-per-second R``): a limit of 10 with a
    decay of 2 allows a burst of 10, then 2 per second. Blocks until the slots are there;
    errors and unknown names as for ``concurrency``.

    >>> for url in urls:  # doctest: +SKIP
    ...     rate_limit("api")  # at most 2 calls per second, on every process
    ...     fetch(url)
    """
    names = check_names(names)
    if names:
        occupy, timeout = check_occupy(occupy), check_timeout(timeout_seconds)
        limits_for().acquire(names, occupy, timeout, strict, mode="rate", holder=current_holder())
