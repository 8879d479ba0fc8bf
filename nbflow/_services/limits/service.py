"""The concurrency limits of one ``NBFLOW_HOME`` as this process uses them (``runtime.limits``).

Acquiring is written once, as a generator that yields how long to wait before trying again; the
blocking driver (``acquire``), the async driver (``aacquire``) and the engine's tag slots all run
that one generator. Waiting is cheap: a read-only probe, backed off from 5 ms to 100 ms (10 ms for
waiters near the front), and a release in this process wakes this process's waiters at once.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import warnings
import weakref
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbflow._core.clock import Clock, SystemClock
from nbflow._core.forkguard import ForkGuard, keep
from nbflow._core.records import HOST
from nbflow._core.threads import renew_after_fork
from nbflow._services.limits.leases import Renewer
from nbflow.exceptions import (
    AcquireConcurrencySlotTimeoutError,
    ConcurrencyLimitError,
    ConcurrencyLimitNotFoundError,
    ConfigurationError,
)

if TYPE_CHECKING:
    import sqlite3

    from nbflow._services.limits.storage import Request, Verdict

__all__ = ["LimitService", "attach", "check_names", "check_occupy", "check_timeout", "waiting_message"]

_FIRST_DELAY = 0.005
_HEAD_DELAY = 0.005  # cap for a waiter with nobody ahead of it (at most one per limit)
_NEAR_DELAY = 0.010  # cap for a waiter that the next release could serve
_FAR_DELAY = 0.100  # cap for everyone else

_warned: set[str] = set()  # names already warned about: one warning per name per process
_warned_lock = threading.Lock()
renew_after_fork(globals(), "_warned_lock")  # a fork while another thread holds it
_services: weakref.WeakSet[LimitService] = weakref.WeakSet()


class LimitService:
    """Acquire and release slots of the limits stored in ``path``; renews what this process holds.

    One SQLite connection per process, used under a lock: writers serialise in SQLite anyway, and a
    lock is cheaper than SQLite's busy-wait between threads of one process.
    """

    def __init__(self, path: Path, clock: Clock, lease_seconds: float) -> None:
        if not lease_seconds > 0:
            raise ConfigurationError(
                f"NBFLOW_CONCURRENCY_LEASE_SECONDS must be more than 0, got {lease_seconds!r}."
            )
        self.path = path
        self.clock = clock
        self.lease_seconds = float(lease_seconds)
        self._real_time = isinstance(clock, SystemClock)
        self._after_fork()
        _services.add(self)

    def _after_fork(self) -> None:
        """Fresh per-process state; a forked child holds none of its parent's slots. The parent's
        connection is kept, never closed (see ``_forkguard``)."""
        keep(getattr(self, "_conn", None))
        self._lock = ForkGuard()  # the connection is only used holding it: a fork waits for that
        self._conn: sqlite3.Connection | None = None
        self._wake = threading.Condition(threading.Lock())
        self.renewer = Renewer(self.lease_seconds, self._renew, self._reap)

    # --- the database ---------------------------------------------------------------------------
    def _connection(self, create: bool = True) -> sqlite3.Connection | None:
        if self._conn is None:
            if not create and not self.path.exists():
                return None  # no store yet, so no limits: tagged tasks must not create one
            from nbflow._services.limits.storage import connect

            self._conn = connect(self.path)
        return self._conn

    @contextmanager
    def db(self) -> Iterator[sqlite3.Connection]:
        """The connection, for the administration functions in ``nbflow.concurrency.limits``."""
        with self._lock:
            yield self._connection()  # type: ignore[misc]

    def release_all(self, wait: float = 1.0) -> None:
        """Hand back every slot and place in the queue this process holds (at exit): a process that
        exits cleanly must not leave others waiting for its leases to run out."""
        from nbflow._services.limits.storage import leave_queue, release

        leases, tickets = self.renewer.held()
        if not (leases or tickets) or self._conn is None or not self._lock.lock.acquire(timeout=wait):
            return  # nothing held, or a thread of ours is inside SQLite: the lease runs out instead
        try:
            self._conn.execute(f"PRAGMA busy_timeout={int(wait * 1000)}")
            for lease_id in leases:
                release(self._conn, lease_id)
            for ticket in tickets:
                leave_queue(self._conn, ticket)
        except Exception:
            pass  # locked or gone: the leases expire by themselves
        finally:
            self._lock.lock.release()

    def _renew(self, leases: list[str], tickets: list[int]) -> None:
        from nbflow._services.limits.storage import renew

        with self._lock:
            renew(self._connection(), leases, tickets, self.clock.now() + self.lease_seconds)  # type: ignore[arg-type]

    def _reap(self) -> None:
        from nbflow._services.limits.storage import reap

        with self._lock:
            reap(self._connection(), self.clock.now())  # type: ignore[arg-type]

    # --- acquiring --------------------------------------------------------------------------------
    def request(self, names: tuple[str, ...], occupy: int, mode: str, holder: str | None = None) -> Request:
        from nbflow._services.limits.storage import Request

        holder = holder or f"thread {threading.current_thread().name!r}"
        return Request(names, occupy, mode, os.urandom(16).hex(), holder, os.getpid(), HOST)

    def steps(
        self,
        req: Request,
        timeout: float | None,
        strict: bool,
        *,
        tags: bool = False,
        on_wait: Callable[[str], None] | None = None,
    ) -> Generator[float, None, str | None]:
        """Generator: yields seconds to wait; returns the lease id to release (None: nothing held).

        ``tags`` is the engine's mode: names without a limit pass silently, a limit too small for
        the request (size 0: paused) is waited on instead of raising, and no store is created.
        Closing the generator while it waits gives up its place in the queue.
        """
        from nbflow._services.limits.storage import evaluate, leave_queue, take

        clock = self.clock
        with self._lock:
            conn = self._connection(create=not tags)
            if conn is None:
                return None
            verdict = take(conn, req, clock.now(), self.lease_seconds, None, strict=strict)
        deadline = None if timeout is None else clock.monotonic() + timeout
        ticket: int | None = None
        blocked: str | None = None
        delay = _FIRST_DELAY
        granted = False
        try:
            while True:
                if ticket is None and verdict.ticket is not None:
                    ticket = verdict.ticket
                    self.renewer.add_ticket(ticket)
                self._judge(verdict, req, strict, tags)
                if verdict.unknown and not tags:
                    try:
                        _warn_unknown(verdict.unknown)
                    except BaseException:  # warnings turned into errors: hold nothing
                        if verdict.granted:
                            self.release(req.lease_id)
                        raise
                if verdict.granted:
                    granted = True
                    if req.mode == "lease" and len(verdict.unknown) < len(req.names):
                        self.renewer.add_lease(req.lease_id)
                        return req.lease_id
                    return None
                if on_wait is not None and verdict.blocked_on != blocked:
                    blocked = verdict.blocked_on
                    on_wait(waiting_message(verdict, req.occupy))
                wait = delay
                if deadline is not None:
                    left = deadline - clock.monotonic()
                    if left <= 0:
                        raise _timeout_error(verdict, req, timeout)  # type: ignore[arg-type]
                    wait = min(wait, left)
                yield wait
                delay = min(delay * 2, _cap(verdict, req.occupy))
                with self._lock:
                    conn = self._connection()
                    probe, _rows = evaluate(conn, req, clock.now(), ticket)  # type: ignore[arg-type]
                    if probe.granted or (strict and probe.unknown) or (ticket is None and not probe.too_large):
                        verdict = take(conn, req, clock.now(), self.lease_seconds, ticket, strict=strict)  # type: ignore[arg-type]
                    else:
                        verdict = probe
        finally:
            if ticket is not None:
                self.renewer.remove_ticket(ticket)
                if not granted:
                    with self._lock:
                        leave_queue(self._connection(), ticket)  # type: ignore[arg-type]

    def _judge(self, verdict: Verdict, req: Request, strict: bool, tags: bool) -> None:
        """Raise for what waiting cannot fix (the store changed nothing for such a verdict)."""
        if verdict.unknown and strict and not tags:
            name = verdict.unknown[0]
            raise ConcurrencyLimitNotFoundError(
                f"No concurrency limit named {name!r} (strict=True). "
                f"Create it with `nbflow concurrency-limit create {name} LIMIT`."
            )
        if verdict.no_decay is not None:
            name = verdict.no_decay
            raise ConcurrencyLimitError(
                f"rate_limit() needs a limit with slot decay, and {name!r} has none. Create one with "
                f"`nbflow concurrency-limit create {name} LIMIT --slot-decay-per-second RATE`, "
                "or hold slots with concurrency() instead."
            )
        if verdict.too_large and not tags:
            name = verdict.blocked_on
            raise ConcurrencyLimitError(
                f"Cannot occupy {req.occupy} slot(s) of concurrency limit {name!r}: it has only {verdict.limit}. "
                f"Occupy fewer, or raise the limit with `nbflow concurrency-limit update {name} {req.occupy}`."
            )

    def acquire(
        self, names: tuple[str, ...], occupy: int, timeout: float | None, strict: bool, mode: str = "lease",
        holder: str | None = None,
    ) -> str | None:
        """Block until the slots are taken; returns the lease id to ``release`` (None: nothing held).

        ``holder``: who holds them, shown by ``nbflow concurrency-limit inspect`` (default: the thread).
        """
        return self.drive(self.steps(self.request(names, occupy, mode, holder), timeout, strict))

    async def aacquire(
        self, names: tuple[str, ...], occupy: int, timeout: float | None, strict: bool, mode: str = "lease",
        holder: str | None = None,
    ) -> str | None:
        """``acquire`` for async code: waits with ``await``, never blocking the event loop to wait."""
        steps = self.steps(self.request(names, occupy, mode, holder), timeout, strict)
        try:
            delay = next(steps)
            while True:
                await self.clock.asleep(delay)
                delay = steps.send(None)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        finally:
            steps.close()  # cancelled while waiting: leave the queue

    def drive(self, steps: Generator[float, None, str | None]) -> str | None:
        """Run ``steps`` to its end, sleeping (or being woken by a local release) between tries."""
        try:
            delay = next(steps)
            while True:
                self.sleep(delay)
                delay = steps.send(None)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        finally:
            steps.close()

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or less if a slot is released in this process meanwhile."""
        if self._real_time:
            with self._wake:
                self._wake.wait(seconds)
        else:
            self.clock.sleep(seconds)

    def release(self, lease_id: str | None) -> None:
        """Hand back a lease's slots and wake this process's waiters."""
        if lease_id is None:
            return
        from nbflow._services.limits.storage import release

        self.renewer.remove_lease(lease_id)
        with self._lock:
            release(self._connection(), lease_id)  # type: ignore[arg-type]
        with self._wake:
            self._wake.notify_all()


def _cap(verdict: Verdict, occupy: int) -> float:
    """How long a waiter may sleep between tries: the first in line polls often, the back rarely."""
    if not verdict.reserved:
        return _HEAD_DELAY  # nobody ahead: the next release is ours, notice it soon
    if verdict.reserved + occupy <= verdict.limit:
        return _NEAR_DELAY
    return _FAR_DELAY


def waiting_message(verdict: Verdict, occupy: int) -> str:
    """``Waiting for concurrency limit 'db' (3/3 slots in use)``."""
    return f"Waiting for concurrency limit {verdict.blocked_on!r} ({_usage(verdict, occupy)})"


def _usage(verdict: Verdict, occupy: int) -> str:
    if verdict.too_large:
        return f"it has {verdict.limit} slot(s), {occupy} needed: waiting until it is raised"
    text = f"{_num(verdict.used)}/{verdict.limit} slots in use"
    if verdict.reserved:
        text += f", {_num(verdict.reserved)} wanted by earlier waiters"
    return text


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"


def _timeout_error(verdict: Verdict, req: Request, timeout: float) -> AcquireConcurrencySlotTimeoutError:
    name = verdict.blocked_on
    return AcquireConcurrencySlotTimeoutError(
        f"Could not take {req.occupy} slot(s) of concurrency limit {name!r} within {timeout:g} second(s) "
        f"({_usage(verdict, req.occupy)}). Raise timeout_seconds, or the limit with "
        f"`nbflow concurrency-limit update {name} LIMIT`."
    )


def _warn_unknown(names: tuple[str, ...]) -> None:
    fresh = []
    with _warned_lock:
        for name in names:
            if name not in _warned:
                _warned.add(name)
                fresh.append(name)
    for name in fresh:
        warnings.warn(
            f"No concurrency limit named {name!r}: running without limiting it. Create one with "
            f"`nbflow concurrency-limit create {name} LIMIT`, or pass strict=True to make this an error.",
            UserWarning,
            stacklevel=_user_stacklevel(),
        )


def _user_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the user's line, past nbflow's own frames."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith(("nbflow.", "contextlib", "asyncio")):
        frame, level = frame.f_back, level + 1  # type: ignore[assignment]
    return level


# --- input checks shared by sync.py and asyncio.py ---------------------------------------------


def check_names(names: str | Iterable[str]) -> tuple[str, ...]:
    """``"a"`` or ``["a", "b"]`` as a tuple of distinct names, or one clear error."""
    if isinstance(names, str):
        names = (names,)
    try:
        result = tuple(dict.fromkeys(names))
    except TypeError:
        raise ConcurrencyLimitError(
            f"names must be a limit name or a list of names, got {type(names).__name__}"
        ) from None
    for name in result:
        if not isinstance(name, str) or not name.strip():
            raise ConcurrencyLimitError(f"A concurrency limit name must be a non-empty string, got {name!r}")
    return result


def check_occupy(occupy: Any) -> int:
    if isinstance(occupy, bool) or not isinstance(occupy, int) or occupy < 1:
        raise ConcurrencyLimitError(f"occupy must be a whole number of slots >= 1, got {occupy!r}")
    return occupy


def check_timeout(timeout: Any) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0:
        raise ConcurrencyLimitError(f"timeout_seconds must be None or a number of seconds >= 0, got {timeout!r}")
    return float(timeout)


# --- wiring -----------------------------------------------------------------------------------


def attach(runtime: Any) -> LimitService:
    """Give ``runtime`` its limit service (``runtime.limits``), for ``$NBFLOW_HOME/nbflow.db``."""
    settings = runtime.settings
    runtime.limits = LimitService(Path(settings.home) / "nbflow.db", runtime.clock, settings.concurrency_lease_seconds)
    return runtime.limits  # type: ignore[no-any-return]


def _release_at_exit() -> None:
    for service in list(_services):
        service.release_all()


atexit.register(_release_at_exit)


def _reset_after_fork() -> None:
    for service in list(_services):
        service._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
