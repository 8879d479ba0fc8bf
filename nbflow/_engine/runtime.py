"""The runtime: the dependencies a run uses (settings, clock, event bus, cache, store), passed in.

A process has one default runtime, built on first use from the environment by the builder the
composition root installed (``nbflow._app.wiring.build_runtime``); tests and embedders make
their own and enter it with ``use_runtime``. Nothing else in the engine reaches for globals.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

    from nbflow._engine.ports import LimitsPort, RerunPort, StorePort

from nbflow._core.clock import Clock, SystemClock
from nbflow._core.events import EventBus, Subscriber
from nbflow._core.forkguard import ForkGuard
from nbflow._core.threads import start_thread
from nbflow._engine import defaults
from nbflow._engine.context import RootContext, current
from nbflow._engine.logging import ConsoleLogger

__all__ = ["Runtime", "default_runtime", "get_runtime", "use_runtime"]


class _LoopThread:
    """A private event loop on a daemon thread, for running ``async def`` bodies from sync code.

    nbflow never calls ``asyncio.run`` on the caller's thread: in a notebook that thread already runs
    the kernel's loop.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                import asyncio

                loop = asyncio.new_event_loop()
                start_thread(threading.Thread(target=loop.run_forever, name="nbflow-async", daemon=True))
                self._loop = loop
            return self._loop

    def submit(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Schedule ``coro`` on the private loop; returns a ``concurrent.futures.Future``."""
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self.loop())


class Runtime:
    """Settings, clock, bus and the optional services a run talks to.

    ``cache``, ``store`` and ``limits`` are None until the composition root (``nbflow._app.wiring``)
    attaches them; the engine checks for None and skips what is not there.
    """

    def __init__(
        self,
        settings: Any = None,
        clock: Clock | None = None,
        subscribers: tuple[Subscriber, ...] | None = None,
        *,
        console: bool = True,
    ) -> None:
        if settings is None:
            from nbflow._core.settings import load_settings

            settings = load_settings()
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.log_level: int = logging.getLevelName(settings.logging_level)
        self.console: ConsoleLogger | None = ConsoleLogger(self.log_level) if console else None
        base = (self.console,) if self.console else ()
        self.bus = EventBus(base + tuple(subscribers or ()))
        self.loop_thread = _LoopThread()
        self.cache: Any = None
        self.store: StorePort | None = None
        self.limits: LimitsPort | None = None
        self.rerun: RerunPort | None = None


_default: Runtime | None = None
# A fork waits for a default runtime being built: building it imports modules, and a child forked
# while another thread held a module's import lock would hang on its first import of that module.
_default_lock = ForkGuard(outermost=True)


def default_runtime(create: bool = True) -> Runtime | None:
    """The process's default runtime, built from the environment on first use (``create=False``:
    None if nothing has built it yet)."""
    global _default  # built once per process from the environment, like the settings it reads
    if _default is None and create:
        with _default_lock:
            if _default is None:
                build = defaults.builder()
                _default = build() if build is not None else Runtime()
    return _default


def get_runtime() -> Runtime:
    """The runtime of the current run, else the one entered with ``use_runtime``, else the default."""
    ctx = current.get()
    if ctx is not None:
        return ctx.runtime
    return default_runtime()  # type: ignore[return-value]


@contextmanager
def use_runtime(runtime: Runtime) -> Iterator[Runtime]:
    """Run flows started in this block with ``runtime`` (a test's fake clock, a temp home...)."""
    token = current.set(RootContext(runtime))
    try:
        yield runtime
    finally:
        current.reset(token)
