"""Create, list, inspect, update, reset and delete concurrency limits (what the CLI calls).

>>> from nbflow.concurrency import limits
>>> limits.create("external-api", 5)  # doctest: +SKIP
>>> limits.create("api-rate", 10, slot_decay_per_second=2)  # doctest: +SKIP
>>> limits.inspect("external-api").active_slots  # doctest: +SKIP
0

Every function works on the limits of ``NBFLOW_HOME`` (or of ``runtime`` when given), shared by
every process using that home. Bad input raises one ``ConcurrencyLimitError`` and stores nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from nbflow._app.wiring import limits_for
from nbflow.exceptions import ConcurrencyLimitError, ConcurrencyLimitNotFoundError

__all__ = [
    "ConcurrencyLimit", "SlotHolder", "Waiter",
    "create", "ls", "inspect", "update", "reset", "delete",
    "check_limit", "check_decay", "check_name",
]

MAX_SLOTS = 2**31 - 1


@dataclass(frozen=True)
class SlotHolder:
    """A live lease on a limit's slots: who holds how many, since when, until when unless renewed."""

    lease_id: str
    occupy: int
    holder: str
    pid: int
    host: str
    acquired: float
    expires: float


@dataclass(frozen=True)
class Waiter:
    """A place in a limit's queue (lower tickets are served first)."""

    ticket: int
    occupy: int
    holder: str
    pid: int
    host: str
    since: float


@dataclass(frozen=True)
class ConcurrencyLimit:
    """A limit as it is now: its size, the slots in use, and who holds and waits for them."""

    name: str
    limit: int
    slot_decay_per_second: float
    active_slots: float
    holders: tuple[SlotHolder, ...]
    waiters: tuple[Waiter, ...]
    created: float
    updated: float


# --- validation (shared with the CLI) -----------------------------------------------------------


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ConcurrencyLimitError(f"A concurrency limit needs a non-empty name, got {name!r}")
    if name != name.strip() or any(ord(c) < 32 for c in name) or len(name) > 200:
        raise ConcurrencyLimitError(
            f"Concurrency limit name {name!r} is not usable: use at most 200 characters, "
            "without surrounding spaces or control characters"
        )
    return name


def check_limit(limit: Any) -> int:
    """A whole number of slots >= 0 (``"5"`` from the command line too)."""
    value: Any = limit
    if isinstance(limit, str):
        try:
            value = int(limit.strip())
        except ValueError:
            value = None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SLOTS:
        raise ConcurrencyLimitError(
            f"A concurrency limit must be a whole number of slots from 0 to {MAX_SLOTS}, got {limit!r}"
        )
    return value


def check_decay(rate: Any) -> float:
    """Slots freed per second by a rate limit, a number >= 0 (0: an ordinary limit)."""
    value: Any = rate
    if isinstance(rate, str):
        try:
            value = float(rate.strip())
        except ValueError:
            value = None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConcurrencyLimitError(f"slot_decay_per_second must be a number >= 0, got {rate!r}")
    return float(value)


# --- operations ------------------------------------------------------------------------------


def create(name: str, limit: int, *, slot_decay_per_second: float = 0.0, runtime: Any = None) -> ConcurrencyLimit:
    """Create a limit of ``limit`` slots; with ``slot_decay_per_second`` it is a rate limit."""
    from nbflow._services.limits import storage as _storage

    name, slots, rate = check_name(name), check_limit(limit), check_decay(slot_decay_per_second)
    service = limits_for(runtime)
    with service.db() as conn:
        if not _storage.create(conn, name, slots, rate, service.clock.now()):
            raise ConcurrencyLimitError(
                f"A concurrency limit named {name!r} exists already; change it with "
                f"`nbflow concurrency-limit update {name} {slots}`"
            )
    return inspect(name, runtime=runtime)


def ls(*, runtime: Any = None) -> list[ConcurrencyLimit]:
    """Every limit, by name."""
    return _read(None, runtime)


def inspect(name: str, *, runtime: Any = None) -> ConcurrencyLimit:
    """One limit with its holders and waiters; ``ConcurrencyLimitNotFoundError`` if there is none."""
    found = _read(check_name(name), runtime)
    if not found:
        raise _not_found(name)
    return found[0]


def update(
    name: str, limit: int, *, slot_decay_per_second: float | None = None, runtime: Any = None
) -> ConcurrencyLimit:
    """Resize a limit. Holders keep their slots; a smaller limit makes newcomers wait until use drops."""
    from nbflow._services.limits import storage as _storage

    name, slots = check_name(name), check_limit(limit)
    rate = None if slot_decay_per_second is None else check_decay(slot_decay_per_second)
    service = limits_for(runtime)
    with service.db() as conn:
        if not _storage.update(conn, name, slots, rate, service.clock.now()):
            raise _not_found(name)
    return inspect(name, runtime=runtime)


def reset(name: str, *, runtime: Any = None) -> ConcurrencyLimit:
    """Free every slot of a limit now. Holders keep running; their slots just stop counting."""
    from nbflow._services.limits import storage as _storage

    name = check_name(name)
    service = limits_for(runtime)
    with service.db() as conn:
        if not _storage.reset(conn, name, service.clock.now()):
            raise _not_found(name)
    return inspect(name, runtime=runtime)


def delete(name: str, *, runtime: Any = None) -> None:
    """Remove a limit. Holders finish normally; waiters go ahead unlimited (``strict=True`` ones raise)."""
    from nbflow._services.limits import storage as _storage

    name = check_name(name)
    service = limits_for(runtime)
    with service.db() as conn:
        if not _storage.delete(conn, name):
            raise _not_found(name)


def _read(name: str | None, runtime: Any) -> list[ConcurrencyLimit]:
    from nbflow._services.limits import storage as _storage

    service = limits_for(runtime)
    now = service.clock.now()
    out = []
    with service.db() as conn:
        conn.execute("BEGIN")  # one snapshot: counts, holders and waiters agree
        try:
            for row in _storage.read_limits(conn, now, name):
                holders = tuple(SlotHolder(*h) for h in _storage.holders(conn, row.name, now))
                waiters = tuple(Waiter(*w) for w in _storage.waiters(conn, row.name, now))
                out.append(ConcurrencyLimit(
                    row.name, row.slots, row.slot_decay_per_second, row.active, holders, waiters,
                    row.created, row.updated,
                ))
        finally:
            conn.execute("COMMIT")
    return out


def _not_found(name: str) -> ConcurrencyLimitNotFoundError:
    return ConcurrencyLimitNotFoundError(
        f"No concurrency limit named {name!r}. See the limits with `nbflow concurrency-limit ls`, "
        f"or create it with `nbflow concurrency-limit create {name} LIMIT`."
    )
