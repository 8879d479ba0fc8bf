"""Create, list, inspect, update, reset and delete concurrency limits (what the CLI calls).

>>> from nbflow.concurrency import limits
>>> limits.create("external-api", 5)  # doctest: +SKIP
>>> limits.create("api-rate", 10, slot_decay_per_second=2)  # doctest: +SKIP
>>> limits.inspect("external-api").active_slots  # doctest: +SKIP
0

Every function works on the limits of ``NBFLOW_HOME`` (or of ``runtime`` when given), shared by
every process using that home. Bad input raises one ``ConcurrencyLimitError`` and stores nothing.

The public face: the names live in ``nbflow._app.limits``.
"""

from nbflow._app.limits import (
    ConcurrencyLimit,
    SlotHolder,
    Waiter,
    check_decay,
    check_limit,
    check_name,
    create,
    delete,
    inspect,
    ls,
    reset,
    update,
)

__all__ = [
    "ConcurrencyLimit",
    "SlotHolder",
    "Waiter",
    "create",
    "ls",
    "inspect",
    "update",
    "reset",
    "delete",
    "check_limit",
    "check_decay",
    "check_name",
]
