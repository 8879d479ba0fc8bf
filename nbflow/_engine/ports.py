"""What the engine asks of the services, as small typed Protocols with plain values.

The services (``nbflow._services``) implement these without importing the engine; the composition
root (``nbflow._app.wiring``) attaches them to a ``Runtime``. A runtime without one (None) runs
without it.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any, Protocol

__all__ = ["LimitsPort", "RerunPort", "StorePort"]


class StorePort(Protocol):
    """The run store: it records runs from the events it subscribed to; the engine only asks where."""

    path: Path

    def flush(self, timeout: float | None = None) -> bool:
        """Block until every run event emitted so far is committed (False: not within ``timeout``)."""
        ...


class LimitsPort(Protocol):
    """Concurrency limits: named slots, taken all or none, queued first come first served."""

    def request(self, names: tuple[str, ...], occupy: int, mode: str, holder: str | None = None) -> Any:
        """A request for ``occupy`` slots of each limit in ``names`` (opaque to the engine)."""
        ...

    def steps(
        self, req: Any, timeout: float | None, strict: bool, *, tags: bool = False,
        on_wait: Callable[[str], None] | None = None,
    ) -> Generator[float, None, str | None]:
        """Tries to take the slots: yields seconds to wait between tries, returns the lease id.

        ``on_wait(message)`` is called when the request starts waiting on another limit.
        """
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or less when a slot is released in this process."""
        ...

    def release(self, lease_id: str | None) -> None:
        """Give back the slots of ``lease_id`` (None: nothing)."""
        ...


class RerunPort(Protocol):
    """``flow.rerun()``: finds the recorded run (the history sits above the engine) and runs it again."""

    def __call__(self, flow: Any, flow_run_id: str | None = None, *, return_state: bool = False) -> Any: ...
